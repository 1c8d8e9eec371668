"""WS /api/v1/stream with real aiohttp WebSocket clients on loopback against a real agent (real SQLite
store): auth, hello/subscribe, replay then live with no gap and no duplicate, resume, slow consumers,
token expiry, bad messages, cursor expiry, shutdown, metrics. docs/stream.md is the protocol."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import jwt
import pytest

from agent.api.auth import JWT_LEEWAY_SECONDS
from agent.domain.trades import EventType
from agent.telemetry import catalog as m
from agent.telemetry.logs import make_handler
from tests.api.conftest import ADMIN, ALL_TOKENS, CLIENT_A, CLIENT_B, READ, Api, MakeApi, make_jwt
from tests.api.stream_client import (
    STREAM,
    closed_with,
    connect,
    events_until,
    ids,
    recv,
    recv_type,
    store_events,
    subscribe,
    trade_event,
)

A1, A2, B1 = 100001, 100002, 200001  # CLIENT_A, CLIENT_A, CLIENT_B (tests.api.conftest.ACCOUNTS)


def sample(metrics: Any, family: m.Family, **labels: str) -> float:
    value = metrics.events.get_sample_value(family.series, labels)
    return 0.0 if value is None else value


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait for `check()` (the server finishes a close after the client has seen it)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(**ALL_TOKENS, stream_heartbeat=30, stream_auth_timeout=0.5)


async def test_hello_replay_then_live_in_id_order(api: Api) -> None:
    before = await store_events(api, [trade_event(A1), trade_event(B1), trade_event(A2)])
    ws = await connect(api, ADMIN)
    assert ws.protocol == "bearer"  # the subprotocol echoed, never the token
    hello = await recv(ws)
    assert hello == {"type": "hello", "heartbeat_s": 30.0, "latest_id": before[-1].id, "oldest_available": 1}
    await ws.send_json({"op": "subscribe", "after": 0})
    sub = await recv_type(ws, "subscribed")
    assert sub == {"type": "subscribed", "after": 0, "accounts": None, "types": None}
    replayed = await events_until(ws, before[-1].id)
    assert ids(replayed) == [e.id for e in before]
    assert replayed[0]["account"] == A1 and replayed[0]["type"] == "TRADE_OPENED"
    assert replayed[0]["data"]["side"] == "buy" and replayed[0]["dedup_key"] == before[0].dedup_key
    live = await store_events(api, [trade_event(B1, EventType.TRADE_CLOSED), trade_event(A1)])
    got = await events_until(ws, live[-1].id)
    assert ids(got) == [e.id for e in live] and got[0]["type"] == "TRADE_CLOSED"
    await ws.close()


async def test_filters_by_account_and_type_and_live_only_without_after(api: Api) -> None:
    await store_events(api, [trade_event(A1), trade_event(A2)])
    ws = await connect(api, READ)
    sub = await subscribe(ws, accounts=[A2, B1], types=["TRADE_CLOSED"])
    assert sub["after"] == 2 and sub["accounts"] == [A2, B1] and sub["types"] == ["TRADE_CLOSED"]
    stored = await store_events(
        api,
        [
            trade_event(A2, EventType.TRADE_OPENED),
            trade_event(A1, EventType.TRADE_CLOSED),
            trade_event(B1, EventType.TRADE_CLOSED),
            trade_event(A2, EventType.TRADE_CLOSED),
        ],
    )
    got = await events_until(ws, stored[-1].id)
    assert ids(got) == [stored[2].id, stored[3].id]  # no replay: live from the `subscribed` cursor
    await ws.close()


async def test_auth_by_first_message(api: Api) -> None:
    ws = await connect(api, None)
    await ws.send_json({"op": "auth", "token": READ})
    await subscribe(ws, after=0)
    stored = await store_events(api, [trade_event(B1)])
    assert ids(await events_until(ws, stored[-1].id)) == [stored[0].id]
    await ws.close()


async def test_no_auth_is_closed_4401_after_the_auth_window(api: Api) -> None:
    ws = await connect(api, None)
    started = time.monotonic()
    code, reason = await closed_with(ws)
    waited = time.monotonic() - started
    assert code == 4401 and "authentication required" in reason
    assert 0.4 <= waited < 5, waited  # the window (0.5 s here), not at once and not forever
    await until(lambda: sample(api.agent.metrics, m.STREAM_CLIENTS_CLOSED, reason="auth_failed") == 1)


@pytest.mark.parametrize(
    "token",
    [
        "wrong-token",
        make_jwt(CLIENT_A, secret="another-secret-of-at-least-32-bytes!!"),
        make_jwt(CLIENT_A, exp_in=-(JWT_LEEWAY_SECONDS + 60)),  # expired beyond the leeway
    ],
    ids=["wrong", "forged-jwt", "expired-jwt"],
)
@pytest.mark.parametrize("how", ["subprotocol", "message"])
async def test_bad_tokens_are_closed_4401(api: Api, token: str, how: str) -> None:
    if how == "subprotocol":
        ws = await connect(api, token)
    else:
        ws = await connect(api, None)
        await ws.send_json({"op": "auth", "token": token})
    code, reason = await closed_with(ws)
    assert code == 4401
    assert reason in ("invalid token", "token expired")
    assert token not in reason


async def test_a_first_message_other_than_auth_is_closed_4401(api: Api) -> None:
    ws = await connect(api, None)
    await ws.send_json({"op": "subscribe", "after": 0})
    code, _ = await closed_with(ws)
    assert code == 4401


async def test_a_token_in_the_query_string_is_refused_and_not_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    token = make_jwt(CLIENT_A)
    formatter = make_handler("text").formatter
    assert formatter is not None
    with caplog.at_level(logging.DEBUG):
        for query in (f"?token={token}", f"?access_token={token}", f"?jwt={token}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await api.client.ws_connect(STREAM + query)
            assert err.value.status == 400
            resp = await api.client.get(STREAM + query, headers={"Authorization": f"Bearer {ADMIN}"})
            body = await resp.text()
            assert resp.status == 400 and token not in body and "query_not_allowed" in body
    # whatever the agent logged (access lines included), as its formatter writes it: never the token
    assert all(token not in formatter.format(r) for r in caplog.records)


async def test_a_plain_get_says_how_to_connect(api: Api) -> None:
    resp = await api.client.get(STREAM)
    assert resp.status == 401
    resp = await api.client.get(STREAM, headers={"Authorization": f"Bearer {READ}"})
    info = await resp.json()
    assert resp.status == 200 and info["websocket"] == STREAM and info["subprotocol"] == "bearer"
    assert info["heartbeat_s"] == 30 and info["auth_timeout_s"] == 0.5 and info["queue"] == 1000


async def test_a_client_jwt_sees_only_its_accounts(api: Api) -> None:
    await store_events(api, [trade_event(A1), trade_event(B1), trade_event(A2)])
    a = await connect(api, make_jwt(CLIENT_A))
    b = await connect(api, make_jwt(CLIENT_B))
    await subscribe(a, after=0)
    await subscribe(b, after=0)
    stored = await store_events(api, [trade_event(B1), trade_event(A2), trade_event(B1)])
    got_a = await events_until(a, stored[1].id)
    got_b = await events_until(b, stored[2].id)
    assert {e["account"] for e in got_a} == {A1, A2} and ids(got_a) == [1, 3, stored[1].id]
    assert {e["account"] for e in got_b} == {B1} and ids(got_b) == [2, stored[0].id, stored[2].id]
    # asking for another client's account is refused (the stream stays usable)
    c = await connect(api, make_jwt(CLIENT_A))
    await recv_type(c, "hello")
    await c.send_json({"op": "subscribe", "accounts": [A1, B1], "after": 0})
    err = await recv_type(c, "error")
    assert err["code"] == "forbidden"
    await c.send_json({"op": "subscribe", "accounts": [A1], "after": 0})
    await recv_type(c, "subscribed")
    assert ids(await events_until(c, 1)) == [1]
    for ws in (a, b, c):
        await ws.close()


async def test_a_jwt_stream_is_closed_when_the_token_expires(api: Api) -> None:
    # accepted within the leeway, as the REST API accepts it; refused 3 s later (wall clock, as the token)
    token = make_jwt(CLIENT_A, exp_in=-(JWT_LEEWAY_SECONDS - 3))
    due = jwt.decode(token, options={"verify_signature": False})["exp"] + JWT_LEEWAY_SECONDS
    ws = await connect(api, token)
    await subscribe(ws, after=0)
    code, reason = await closed_with(ws)
    assert code == 4401 and reason == "token expired"
    assert due - 0.1 <= time.time() < due + 5  # at the token's end, not at once
    await until(lambda: sample(api.agent.metrics, m.STREAM_CLIENTS_CLOSED, reason="token_expired") == 1)
    # the admin token's stream is not affected
    ws = await connect(api, ADMIN)
    await subscribe(ws)
    await asyncio.sleep(0)  # nothing to wait for: it is not closed
    assert not ws.closed
    await ws.close()


async def test_resume_after_a_disconnect_loses_nothing(api: Api) -> None:
    first = await store_events(api, [trade_event(A1) for _ in range(5)])
    ws = await connect(api, ADMIN)
    await subscribe(ws, after=0)
    got = await events_until(ws, first[2].id)  # read three, then drop the connection
    await ws.close()
    more = await store_events(api, [trade_event(B1) for _ in range(4)])  # stored while disconnected
    ws = await connect(api, ADMIN)
    await subscribe(ws, after=got[-1]["id"])
    rest = await events_until(ws, more[-1].id)
    assert ids(got) + ids(rest) == [e.id for e in first + more]
    await ws.close()


async def test_replay_and_live_have_no_gap_and_no_duplicate_while_events_are_produced(
    make_api: MakeApi,
) -> None:
    api = await make_api(**ALL_TOKENS, stream_heartbeat=30)
    total = 600
    accounts = [A1, A2, B1]
    produced: list[int] = []
    stop = asyncio.Event()

    async def produce() -> None:
        # like the poller's concurrent accounts: two batches stored, reported in the other order
        i = 0
        while len(produced) < total:
            x = await api.store.events.append_events([trade_event(accounts[i % 3]) for _ in range(3)])
            y = await api.store.events.append_events([trade_event(accounts[(i + 1) % 3]) for _ in range(2)])
            assert api.agent.hub is not None
            api.agent.hub.on_events_stored(y, x[0].detected_at, False)
            await asyncio.sleep(0)
            api.agent.hub.on_events_stored(x, x[0].detected_at, False)
            produced.extend(e.id for e in x + y if e.id is not None)
            i += 1
            await asyncio.sleep(0.002)
        stop.set()

    async def consume(after: int | None, delay: float) -> tuple[int, list[int]]:
        await asyncio.sleep(delay)
        ws = await connect(api, ADMIN)
        sub = await subscribe(ws, after=after) if after is not None else await subscribe(ws)
        await stop.wait()
        got = await events_until(ws, max(produced))
        await ws.close()
        return sub["after"], ids(got)

    producer = asyncio.create_task(produce())
    results = await asyncio.gather(
        *(consume(after, d) for after, d in [(0, 0.0), (0, 0.1), (None, 0.2), (0, 0.3)])
    )
    await producer
    everything = sorted(produced)
    assert len(everything) == total == len(set(everything))
    for start, got in results:
        assert got == [i for i in everything if i > start], (start, got[:5])
    assert any(start > 0 for start, _ in results)  # one joined midway (live only)


async def test_a_slow_consumer_is_closed_4008_and_resumes_losing_nothing(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS, stream_queue=20)
    ws = await connect(api, ADMIN)
    await subscribe(ws, after=0)
    stored: list[int] = []
    got: list[int] = []

    async def read_slowly() -> int | None:
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return msg.data if msg.type is aiohttp.WSMsgType.CLOSE else None
            message = json.loads(msg.data)
            if message["type"] == "event":
                got.append(message["event"]["id"])
                await asyncio.sleep(0.002)

    reader = asyncio.create_task(read_slowly())
    pad = "x" * 60_000  # big events: the socket buffers fill, then the client's queue
    first = await store_events(api, [trade_event(A1, pad=pad) for _ in range(5)])  # fewer than the queue
    stored.extend(e.id for e in first if e.id is not None)
    await until(lambda: bool(got))  # the client reads at its pace before the flood begins
    async with asyncio.timeout(60):
        while not reader.done():
            batch = await store_events(api, [trade_event(A1, pad=pad) for _ in range(10)])
            stored.extend(e.id for e in batch if e.id is not None)
            await asyncio.sleep(0.001)
    assert await reader == 4008
    await until(lambda: sample(api.agent.metrics, m.STREAM_CLIENTS_CLOSED, reason="slow_consumer") == 1)
    assert got and got == stored[: len(got)] and len(got) < len(stored)  # a prefix, in order
    ws = await connect(api, ADMIN)
    await subscribe(ws, after=got[-1])
    rest = ids(await events_until(ws, stored[-1]))
    assert got + rest == stored  # resumed: nothing lost, nothing twice
    await ws.close()


async def test_bad_messages_get_errors_not_a_crash(api: Api) -> None:
    ws = await connect(api, ADMIN)
    await recv_type(ws, "hello")
    for bad, code in [
        ("not json", "bad_message"),
        ("[1, 2]", "bad_message"),
        ('{"op": "dance"}', "unknown_op"),
        ('{"op": "subscribe", "after": -1}', "invalid_subscribe"),
        ('{"op": "subscribe", "after": true}', "invalid_subscribe"),
        ('{"op": "subscribe", "accounts": "100001"}', "invalid_subscribe"),
        ('{"op": "subscribe", "types": ["TRADE_EXPLODED"]}', "invalid_subscribe"),
        ('{"op": "subscribe", "extra": 1}', "invalid_subscribe"),
        ('{"op": "auth", "token": "x"}', "bad_message"),
    ]:
        await ws.send_str(bad)
        err = await recv_type(ws, "error")
        assert err["code"] == code, (bad, err)
    await ws.send_json({"op": "subscribe", "after": 0})
    await recv_type(ws, "subscribed")
    await ws.send_json({"op": "subscribe", "after": 0})
    assert (await recv_type(ws, "error"))["code"] == "already_subscribed"
    stored = await store_events(api, [trade_event(A1)])
    assert ids(await events_until(ws, stored[0].id)) == [stored[0].id]
    await ws.send_bytes(b"\x00\x01")
    assert (await closed_with(ws))[0] == 1003
    await until(lambda: sample(api.agent.metrics, m.STREAM_CLIENTS_CLOSED, reason="protocol_error") == 1)


async def test_a_cursor_older_than_the_history_is_closed_4410(api: Api) -> None:
    await store_events(api, [trade_event(A1) for _ in range(5)])
    assert await api.store.events.prune_events(max_events=2) == 3
    ws = await connect(api, ADMIN)
    hello = await recv_type(ws, "hello")
    assert hello["oldest_available"] == 4
    await ws.send_json({"op": "subscribe", "after": 1})
    await recv_type(ws, "subscribed")
    err = await recv_type(ws, "error")
    assert err["code"] == "cursor_expired"
    assert err["oldest_available"] == 4 and err["latest_id"] == 5  # where to resume, as the REST 410
    code, _ = await closed_with(ws)
    assert code == 4410
    ws = await connect(api, ADMIN)
    await subscribe(ws, after=3)  # the oldest retained minus one is still valid
    assert ids(await events_until(ws, 5)) == [4, 5]
    await ws.close()


async def test_heartbeats_when_idle(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS, stream_heartbeat=0.2)
    ws = await connect(api, READ)
    hello = await recv(ws)
    assert hello["heartbeat_s"] == 0.2
    started = time.monotonic()
    assert (await recv(ws, timeout=5))["type"] == "heartbeat"  # before any subscribe too
    await ws.send_json({"op": "subscribe"})
    await recv_type(ws, "subscribed")
    assert (await recv(ws, timeout=5))["type"] == "heartbeat"
    assert time.monotonic() - started < 3
    await ws.close()
    assert sample(api.agent.metrics, m.STREAM_MESSAGES_SENT, type="heartbeat") >= 2


async def test_stop_closes_every_stream_with_1001(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS)
    streams = [await connect(api, token) for token in (ADMIN, READ, make_jwt(CLIENT_A))]
    for ws in streams[:2]:
        await subscribe(ws, after=0)
    await recv_type(streams[2], "hello")  # connected, not subscribed
    metrics = api.agent.metrics
    assert metrics is not None and sample(metrics, m.STREAM_CLIENTS) == 3
    closing = asyncio.create_task(api.client.server.close())  # the server only: our sockets stay open
    codes = await asyncio.gather(*(closed_with(ws) for ws in streams))
    await closing
    assert [c for c, _ in codes] == [1001, 1001, 1001]
    await until(lambda: sample(metrics, m.STREAM_CLIENTS_CLOSED, reason="shutdown") == 3)
    assert sample(metrics, m.STREAM_CLIENTS) == 0


async def test_stream_metrics_are_exported(api: Api) -> None:
    ws = await connect(api, ADMIN)
    await subscribe(ws, after=0)
    stored = await store_events(api, [trade_event(A1), trade_event(A2)])
    await events_until(ws, stored[-1].id)
    await ws.close()
    resp = await api.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    text = await resp.text()
    for reason in m.STREAM_CLOSE_REASONS:  # every reason exported from the start
        assert f'mt5_stream_clients_closed_total{{reason="{reason}"}}' in text
    assert 'mt5_stream_messages_sent_total{type="event"} 2.0' in text
    assert 'mt5_stream_messages_sent_total{type="hello"} 1.0' in text
    assert "mt5_stream_replay_events_count 1.0" in text
    assert "mt5_stream_clients " in text


async def test_each_event_is_encoded_once_whatever_the_number_of_clients(api: Api) -> None:
    hub = api.agent.hub
    assert hub is not None
    encoded: list[Any] = []
    encode = hub.encode

    def counting(event: Any) -> Any:
        frame = encode(event)
        encoded.append(frame)
        return frame

    hub.encode = counting
    streams = [await connect(api, token) for token in (ADMIN, READ, ADMIN, make_jwt(CLIENT_A), READ)]
    for ws in streams:
        await subscribe(ws)
    stored = await store_events(api, [trade_event(A1), trade_event(A2), trade_event(A1)])
    for ws in streams:
        assert ids(await events_until(ws, stored[-1].id)) == [e.id for e in stored]
        await ws.close()
    assert len(encoded) == 3  # three events, five clients: three encodings, shared


async def test_authorization_header_and_oversized_messages(api: Api) -> None:
    ws = await api.client.ws_connect(STREAM, headers={"Authorization": f"Bearer {READ}"})
    await subscribe(ws, after=0)
    await ws.send_str('{"op": "subscribe", "accounts": [' + "1," * 40_000 + "1]}")  # > 64 KiB
    code, _ = await closed_with(ws)
    assert code == 1009
    await until(lambda: sample(api.agent.metrics, m.STREAM_CLIENTS_CLOSED, reason="protocol_error") == 1)


async def test_a_store_that_does_not_answer_closes_1013(api: Api) -> None:
    await api.store.close()
    ws = await connect(api, ADMIN)
    code, reason = await closed_with(ws)
    assert code == 1013 and reason == "store unavailable"
    await until(lambda: sample(api.agent.metrics, m.STREAM_CLIENTS_CLOSED, reason="store_unavailable") == 1)


async def test_without_any_credential_configured_loopback_streams_are_open(make_api: MakeApi) -> None:
    api = await make_api()  # nothing configured, listening on 127.0.0.1: reads are open
    ws = await api.client.ws_connect(STREAM)
    await subscribe(ws, after=0)
    stored = await store_events(api, [trade_event(B1)])
    assert ids(await events_until(ws, stored[0].id)) == [stored[0].id]
    await ws.close()
