"""Helpers of the stream tests: trade events appended to the real store and reported to the hub the way
the positions poller does (`on_events_stored`), and a WebSocket client's reads with timeouts."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp

from agent.domain.trades import EventType, TradeEvent
from tests.api.conftest import Api

STREAM = "/api/v1/stream"
_keys = itertools.count(1)


def trade_event(account: int, kind: EventType = EventType.TRADE_OPENED, **data: Any) -> TradeEvent:
    n = next(_keys)
    now = datetime.now(UTC)
    return TradeEvent(
        account=account,
        identifier=n,
        type=kind,
        dedup_key=f"test:{account}:{n}",
        time=now,
        detected_at=now,
        symbol="EURUSD",
        data={"side": "buy", "volume": 0.1, **data},
    )


async def store_events(api: Api, events: list[TradeEvent], *, notify: bool = True) -> list[TradeEvent]:
    """Append to the store, then report them as the poller does (unless `notify` is False)."""
    stored = await api.store.events.append_events(events)
    if notify:
        assert api.agent.hub is not None
        api.agent.hub.on_events_stored(stored, datetime.now(UTC), False)
    return stored


async def connect(api: Api, token: str | None, **kw: Any) -> aiohttp.ClientWebSocketResponse:
    protocols = ("bearer", token) if token is not None else ()
    return await api.client.ws_connect(STREAM, protocols=protocols, autoping=True, **kw)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    out = json.loads(msg.data)
    assert isinstance(out, dict)
    return out


async def recv_type(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next message of `kind`, skipping heartbeats only."""
    while True:
        m = await recv(ws, timeout)
        if m["type"] == kind:
            return m
        assert m["type"] == "heartbeat", m


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> tuple[int | None, str]:
    """Read to the server's close frame (other messages skipped): (its close code, its reason); None when
    the connection ended without one. (The frame's code, not `ws.close_code`: the server may drop the
    connection before the client's close reply, which the client then records as 1006.)"""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data), str(msg.extra or "")
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return None, ""


async def subscribe(ws: aiohttp.ClientWebSocketResponse, **fields: Any) -> dict[str, Any]:
    """hello, then subscribe; returns the `subscribed` answer."""
    hello = await recv_type(ws, "hello")
    assert {"heartbeat_s", "latest_id", "oldest_available"} <= set(hello)
    await ws.send_json({"op": "subscribe", **fields})
    return await recv_type(ws, "subscribed")


async def events_until(
    ws: aiohttp.ClientWebSocketResponse, last_id: int | None, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Events received until one with id >= last_id (heartbeats skipped)."""
    assert last_id is not None
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not out or out[-1]["id"] < last_id:
            out.append((await recv_type(ws, "event", timeout))["event"])
    return out


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["id"] for e in events]
