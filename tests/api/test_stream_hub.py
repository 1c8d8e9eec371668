"""The fan-out hub over a real SQLite store, without HTTP: id order whatever order the reports come in,
a failed read-back retried with nothing lost, bounded queues, ownership checked as events are published,
and an owner lookup that fails costs only that event's client-scoped deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.domain.trades import EventType, TradeEvent
from agent.live.hub import EventHub, Subscription
from agent.store import open_store
from agent.store.base import Store
from tests.api.stream_client import trade_event


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    await s.open()
    yield s
    await s.close()


class FlakyEvents:
    """The store's events concern, whose `list_events` fails `failures` times first."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def list_events(self, **kw: Any) -> list[TradeEvent]:
        if self.failures:
            self.failures -= 1
            raise OSError("store down")
        return list(await self.inner.list_events(**kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def drain(sub: Subscription, last_id: int, timeout: float = 5.0) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(timeout):
        while not got or got[-1] < last_id:
            got += [i for i, _ in await sub.take(1.0)]
    return got


async def started(hub: EventHub) -> EventHub:
    hub.start()
    assert await hub.wait_ready(5)
    return hub


def now() -> datetime:
    return datetime.now(UTC)


async def test_reports_out_of_order_are_published_in_id_order(store: Store) -> None:
    hub = await started(EventHub(store.events, encode=lambda e: e.id, retry=0.01))
    sub = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
    a = await store.events.append_events([trade_event(1), trade_event(1)])
    b = await store.events.append_events([trade_event(2)])
    c = await store.events.append_events([trade_event(3), trade_event(3)])
    hub.on_events_stored(c, now(), False)  # the last stored reported first, then the others
    hub.on_events_stored(a, now(), False)
    hub.on_events_stored(b, now(), False)
    hub.on_events_stored(a, now(), False)  # a duplicated report
    assert await drain(sub, 5) == [1, 2, 3, 4, 5]
    await asyncio.sleep(0.05)
    assert await sub.take(0) == []  # nothing twice
    await hub.stop()


async def test_a_failed_read_back_is_retried_and_nothing_is_lost(store: Store) -> None:
    flaky = FlakyEvents(store.events, failures=3)
    hub = await started(EventHub(flaky, encode=lambda e: e.id, retry=0.01))  # type: ignore[arg-type]
    sub = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
    a = await store.events.append_events([trade_event(1)])
    b = await store.events.append_events([trade_event(1)])
    hub.on_events_stored(b, now(), False)  # a hole (a is not reported yet): read back, fails 3 times
    assert await drain(sub, 2) == [1, 2]
    assert flaky.failures == 0
    hub.on_events_stored(a, now(), False)  # late: already published
    more = await store.events.append_events([trade_event(1)])
    hub.on_events_stored(more, now(), False)
    assert await drain(sub, 3) == [3]
    await hub.stop()


async def test_each_event_is_encoded_once_and_shared(store: Store) -> None:
    calls: list[int] = []

    def encode(e: TradeEvent) -> bytes:
        assert e.id is not None
        calls.append(e.id)
        return f"frame-{e.id}".encode()

    hub = await started(EventHub(store.events, encode=encode))
    subs = [hub.subscribe(accounts=None, types=None, client_id=None, limit=10) for _ in range(50)]
    hub.on_events_stored(await store.events.append_events([trade_event(1), trade_event(2)]), now(), False)
    frames = [await sub.take(5) for sub in subs]
    assert calls == [1, 2]
    assert all(f[0][1] is frames[0][0][1] for f in frames)  # the same object for every subscription
    await hub.stop()


async def test_a_full_queue_overflows_once_and_is_closed(store: Store) -> None:
    hub = await started(EventHub(store.events, encode=lambda e: e.id))
    overflowed: list[bool] = []
    sub = hub.subscribe(
        accounts=None, types=None, client_id=None, limit=3, on_overflow=lambda: overflowed.append(True)
    )
    other = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
    hub.on_events_stored(await store.events.append_events([trade_event(1) for _ in range(5)]), now(), False)
    assert await drain(other, 5) == [1, 2, 3, 4, 5]  # the others are not held back
    assert overflowed == [True] and sub.overflowed and sub.closed
    assert await sub.take(0) == []
    await hub.stop()


async def test_filters_and_ownership_are_checked_as_events_are_published(store: Store) -> None:
    owners = {1: "alice", 2: "bob"}

    def owner(account: int) -> str | None:
        if account == 99:
            raise LookupError("the read model is broken")
        return owners.get(account)

    hub = await started(EventHub(store.events, encode=lambda e: e.id, owner=owner))
    alice = hub.subscribe(accounts=None, types=None, client_id="alice", limit=100)
    closed_only = hub.subscribe(accounts=[2], types=[EventType.TRADE_CLOSED], client_id=None, limit=100)
    everything = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
    first = await store.events.append_events(
        [trade_event(1), trade_event(2, EventType.TRADE_CLOSED), trade_event(99)]
    )
    hub.on_events_stored(first, now(), False)
    assert await drain(everything, 3) == [1, 2, 3]  # published (the pump runs on its own)
    owners[2] = "alice"  # account 2 moves to alice
    second = await store.events.append_events([trade_event(2), trade_event(2, EventType.TRADE_CLOSED)])
    hub.on_events_stored(second, now(), False)
    assert await drain(everything, 5) == [4, 5]
    assert await drain(alice, 5) == [1, 4, 5]  # not 3: its owner could not be told
    assert await drain(closed_only, 5) == [2, 5]
    await hub.stop()
