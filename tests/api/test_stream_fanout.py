"""The stream under many clients, and fed by the real positions poller: 200 concurrent WebSocket clients
(client JWTs of 20 clients, some filtering by type) each receive exactly their own accounts' events,
replayed then live, in id order; a round of the real poller over the in-memory source reaches a client
through the app's own listener wiring."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from agent.app import poll_listener
from agent.domain.trades import DealEntry, DealType, EventType
from agent.events.poller import PositionsPoller
from agent.sources.memory import MemorySource, deal, position
from agent.store import open_store
from tests.api.conftest import ADMIN, ALL_TOKENS, MakeApi, make_jwt
from tests.api.stream_client import STREAM, events_until, ids, store_events, subscribe, trade_event

CLIENTS = 20
ACCOUNTS_PER_CLIENT = 2
STREAMS = 200
KINDS = (EventType.TRADE_OPENED, EventType.TRADE_UPDATED, EventType.TRADE_CLOSED)


def client_of(account: int) -> str:
    return f"client-{(account - 500_000) // ACCOUNTS_PER_CLIENT:02d}"


async def test_200_concurrent_clients_each_receive_exactly_their_own_accounts_events(
    make_api: MakeApi, tmp_path: Path
) -> None:
    accounts = [500_000 + i for i in range(CLIENTS * ACCOUNTS_PER_CLIENT)]
    store = open_store(f"sqlite:///{tmp_path / 'fanout.db'}")
    await store.open()
    await store.accounts.put_account_documents(
        [{"account": a, "name": f"A{a}", "server": "Demo", "client_id": client_of(a)} for a in accounts]
    )
    api = await make_api(store=store, **ALL_TOKENS, stream_heartbeat=60)
    before = await store_events(
        api, [trade_event(accounts[i % len(accounts)], KINDS[i % 3]) for i in range(120)]
    )
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{api.base_url}{STREAM}"

        async def open_stream(i: int) -> tuple[aiohttp.ClientWebSocketResponse, str, set[str] | None]:
            client = f"client-{i % CLIENTS:02d}"
            ws = await session.ws_connect(url, protocols=("bearer", make_jwt(client)))
            types = ["TRADE_CLOSED"] if i % 4 == 0 else None  # a quarter filter by type
            await subscribe(ws, after=0, **({"types": types} if types else {}))
            return ws, client, set(types) if types else None

        streams = await asyncio.gather(*(open_stream(i) for i in range(STREAMS)))
        assert api.agent.hub is not None and api.agent.hub.subscriptions == STREAMS
        live: list[Any] = []
        for n in range(6):  # live, in batches, while the replays may still be running
            live += await store_events(
                api,
                [trade_event(accounts[(7 * i + n) % len(accounts)], KINDS[(i + n) % 3]) for i in range(40)],
            )
            await asyncio.sleep(0.01)
        everything = before + live
        last = everything[-1].id
        assert last is not None

        async def check(ws: aiohttp.ClientWebSocketResponse, client: str, types: set[str] | None) -> int:
            expected = [
                e.id
                for e in everything
                if client_of(e.account) == client and (types is None or e.type.value in types)
            ]
            got = await events_until(ws, expected[-1], timeout=60)
            assert ids(got) == expected, client
            assert {client_of(e["account"]) for e in got} == {client}
            await ws.close()
            return len(got)

        counts = await asyncio.gather(*(check(*s) for s in streams))
    assert sum(counts) > 0 and min(counts) > 0


async def test_the_real_poller_feeds_the_stream_through_the_app_wiring(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS)
    account = 100001
    now = datetime.now(UTC).replace(microsecond=0)
    src = MemorySource()
    listener = poll_listener(api.agent)
    poller = PositionsPoller(api.store, src, lambda: [account], interval=1.0, listener=listener)
    ws = await api.client.ws_connect(STREAM, protocols=("bearer", ADMIN))
    await subscribe(ws)
    src.set_positions(account, [position(account, 77, time=now - timedelta(seconds=2), volume=0.3)])
    src.add_deals(account, deal(account, 7001, 77, order=77, time=now - timedelta(seconds=2), volume=0.3))
    result = await poller.run_round()
    assert [e.type for e in result.events] == [EventType.TRADE_OPENED]
    (event,) = await events_until(ws, result.events[0].id or 0)
    assert event["type"] == "TRADE_OPENED" and event["account"] == account and event["identifier"] == 77
    metrics = api.agent.metrics
    assert metrics is not None
    assert metrics.events.get_sample_value("mt5_trade_events_total", {"type": "TRADE_OPENED"}) == 1
    src.set_positions(account, [])  # closed: the OUT deal and the snapshot without it
    src.add_deals(
        account,
        deal(
            account,
            7002,
            77,
            time=now - timedelta(seconds=1),
            type=DealType.SELL,
            entry=DealEntry.OUT,
            volume=0.3,
            profit=5,
        ),
    )
    result = await poller.run_round()
    assert [e.type for e in result.events] == [EventType.TRADE_CLOSED]
    (closed,) = await events_until(ws, result.events[0].id or 0)
    assert closed["type"] == "TRADE_CLOSED"
    await ws.close()
