"""Shards, agent side (issue 16): `MT5_AGENT_SHARD=i/N` validated at start; two agents over one store
(a real SQLite file both open, a real simulated bridge on loopback) each sync, poll and export metrics only
for their own logins while each one's fleet (what the API reads) holds every account; the lease documents
tell two live shards with one index, or disagreeing N, apart from a crashed predecessor; /readyz says so;
the event hub tails the store for the other shard's events and waits a short while for a hole in the ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from agent.app import Agent, build_agent, build_poller, close_agent, create_app
from agent.config import ENV_PREFIX, ConfigError, ShardSpec, load_settings
from agent.domain.trades import TradeEvent
from agent.live import hub as hub_module
from agent.live.hub import EventHub, NullObserver
from agent.sources.bridge import client as client_module
from agent.store import open_store
from agent.store.base import Store
from agent.store.shard_lease import ShardLease
from agent.sync.shards import ShardMonitor
from bridge.api import create_app as create_bridge_app
from bridge.simulated import simulated_pool
from tests.api.stream_client import trade_event

LOGINS = list(range(7001, 7011))  # 7001..7010: five odd, five even


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


# --- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2/2", "invalid setting MT5_AGENT_SHARD: '2/2': i must be 0 to N-1 (1)"),
        ("0/0", "invalid setting MT5_AGENT_SHARD: '0/0': N must be 1 to 4096"),
        ("1", "invalid setting MT5_AGENT_SHARD: '1' is not i/N (e.g. 0/2)"),
        ("-1/3", "invalid setting MT5_AGENT_SHARD: '-1/3' is not i/N (e.g. 0/2)"),
    ],
)
def test_a_bad_shard_is_one_line_naming_the_setting(
    text: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MT5_AGENT_SHARD", text)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == message


def test_shard_and_store_url_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().shard_spec is None
    monkeypatch.setenv("MT5_AGENT_SHARD", "1/3")
    spec = load_settings().shard_spec
    assert spec == ShardSpec(1, 3) and [n for n in range(1, 8) if spec.owns(n)] == [1, 4, 7]
    secret = tmp_path / "url"
    secret.write_text("mongodb://user:s3cret-pw@127.0.0.1:27017/?replicaSet=rs0\n", encoding="utf-8")
    monkeypatch.setenv("MT5_AGENT_STORE_URL_FILE", str(secret))
    assert load_settings().store_url == "mongodb://user:s3cret-pw@127.0.0.1:27017/?replicaSet=rs0"
    monkeypatch.setenv("MT5_AGENT_STORE_URL", "sqlite:///x.db")
    with pytest.raises(ConfigError, match=r"^invalid setting MT5_AGENT_STORE_URL_FILE: both it and"):
        load_settings()
    monkeypatch.delenv("MT5_AGENT_STORE_URL")
    secret.write_text("postgres://user:s3cret-pw@host/db", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "s3cret-pw" not in str(err.value) and "MT5_AGENT_STORE_URL_FILE" in str(err.value)


# --- two agents over one store ---------------------------------------------------------------------


@pytest.fixture
async def bridge_url() -> AsyncIterator[str]:
    pool = simulated_pool(LOGINS, seed=11)
    server = TestServer(create_bridge_app(pool, call_timeout=0.5), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        pool.close()


ADMIN_TOKEN = "admin-token-for-shard-health"


def _shard_agent(tmp_path: Path, bridge_url: str, shard: str) -> Agent:
    return build_agent(
        load_settings(
            bridge_url=bridge_url,
            admin_token=ADMIN_TOKEN,
            store_url=f"sqlite:///{tmp_path / 'shared.db'}",
            shard=shard,
            store_refresh=0.2,
            shard_heartbeat=0.2,
            positions_interval="1",
        )
    )


def _exported_accounts(agent: Agent) -> set[int]:
    assert agent.metrics is not None
    text = generate_latest(agent.metrics.registry).decode()
    return {int(a) for a in re.findall(r'^mt5_account_info\{account="(\d+)"', text, re.M)}


async def test_two_shards_sync_and_export_their_own_and_show_all(tmp_path: Path, bridge_url: str) -> None:
    a, b = _shard_agent(tmp_path, bridge_url, "0/2"), _shard_agent(tmp_path, bridge_url, "1/2")
    try:
        run_a = await a.service.run_cycle()
        run_b = await b.service.run_cycle()
        assert (run_a.accounts_total, run_b.accounts_total) == (5, 5)
        even = {n for n in LOGINS if n % 2 == 0}
        assert _exported_accounts(a) == even and _exported_accounts(b) == set(LOGINS) - even
        # Each fleet (the API's read model) holds every account once the store is re-read; the other
        # shard's values are the store's.
        a.service.gate.refreshed_at = b.service.gate.refreshed_at = 0.0
        await a.service.ensure_ready()
        await b.service.ensure_ready()
        for agent in (a, b):
            snap = agent.fleet.snapshot()
            assert set(snap.accounts) == set(LOGINS)
            assert all(s.values is not None and s.live_data_at is not None for s in snap.accounts.values())
        assert _exported_accounts(a) == even  # still only its own on /metrics
        # Three more cycles each: nobody prunes the other's accounts (they are not in its listing).
        for _ in range(3):
            await a.service.run_cycle()
            await b.service.run_cycle()
        assert set(a.fleet.snapshot().accounts) == set(LOGINS) == set(b.fleet.snapshot().accounts)
        # The positions poller of a shard polls its own accounts only.
        poller = build_poller(a)
        assert poller is not None and set(poller.accounts()) == even
    finally:
        await close_agent(a)
        await close_agent(b)


async def test_a_shard_asks_the_bridge_for_its_own_accounts_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch read carries the shard's logins (`?accounts=`), split so each request line stays short;
    an unsharded agent asks for everything in one request, as before."""
    asked: list[str | None] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/api/mt5/accounts/live":
            asked.append(request.query.get("accounts"))
        return await handler(request)

    pool = simulated_pool(LOGINS, seed=11)
    app = create_bridge_app(pool, call_timeout=0.5)
    app.middlewares.append(record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    even = {n for n in LOGINS if n % 2 == 0}
    shard = _shard_agent(tmp_path, url, "0/2")
    whole = build_agent(load_settings(bridge_url=url, store_url=f"sqlite:///{tmp_path / 'whole.db'}"))
    try:
        run = await shard.service.run_cycle()
        assert run.fetch_mode == "batch" and run.synced_live == 5, run
        assert len(asked) == 1 and asked[0] is not None
        assert {int(a) for a in asked[0].split(",")} == even
        asked.clear()
        monkeypatch.setattr(client_module, "QUERY_BUDGET", 10)  # two 4-digit logins per request
        run = await shard.service.run_cycle()
        assert run.fetch_mode == "batch" and run.synced_live == 5, run
        assert len(asked) == 3 and sorted(int(a) for q in asked if q for a in q.split(",")) == sorted(even)
        asked.clear()
        run = await whole.service.run_cycle()
        assert run.fetch_mode == "batch" and run.synced_live == len(LOGINS) and asked == [None]
    finally:
        await close_agent(shard)
        await close_agent(whole)
        await server.close()
        pool.close()


def test_query_chunks_keep_every_login_once_within_the_budget() -> None:
    logins = [10**18 + i for i in range(2_000)]  # 19 digits: the longest logins
    chunks = client_module._query_chunks(logins)
    assert [a for c in chunks for a in c] == logins
    assert all(c and len(",".join(map(str, c))) <= client_module.QUERY_BUDGET for c in chunks)
    assert len(chunks) == -(-2_000 * 20 // client_module.QUERY_BUDGET)


# --- leases ----------------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'leases.db'}")
    await s.open()
    yield s
    await s.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_leases_tell_duplicates_and_disagreeing_counts_from_a_crashed_predecessor(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    crashed = ShardLease(
        "pod-0:1:dead", 0, 2, clock.now - timedelta(minutes=5), clock.now - timedelta(seconds=1)
    )
    await store.shards.beat(crashed)  # the pod's previous process: it beat 1 s before this one started
    first = ShardMonitor(store.shards, ShardSpec(0, 2), heartbeat=5, instance="pod-0:2:new", clock=clock)
    caplog.set_level(logging.INFO, logger="mt5_agent.shards")
    await first.beat_once()
    assert first.problem() is None and first.conflicts == {"duplicate_index": [], "count_mismatch": []}
    clock.now += timedelta(seconds=1)
    twin = ShardMonitor(store.shards, ShardSpec(0, 2), heartbeat=5, instance="other:7:twin", clock=clock)
    await twin.beat_once()
    # Not yet: `first` has not beaten since the twin started (it might be the twin's crashed predecessor).
    assert twin.conflicts["duplicate_index"] == []
    clock.now += timedelta(seconds=1)
    await first.beat_once()
    assert [x.instance for x in first.conflicts["duplicate_index"]] == ["other:7:twin"]
    await twin.beat_once()
    assert [x.instance for x in twin.conflicts["duplicate_index"]] == ["pod-0:2:new"]
    assert first.problem() == "shard 0/2: another live instance holds the same index (1)"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("other live shard(s) hold the same index (other:7:twin)" in line for line in lines), lines
    clock.now += timedelta(seconds=1)
    three = ShardMonitor(store.shards, ShardSpec(2, 3), heartbeat=5, instance="new-n:1:x", clock=clock)
    await three.beat_once()
    # Another N: any unexpired lease counts (the crashed one too, for its last 3 heartbeats' worth).
    mismatch = {x.instance for x in three.conflicts["count_mismatch"]}
    assert mismatch == {"pod-0:2:new", "other:7:twin", "pod-0:1:dead"}
    await first.beat_once()
    assert [x.instance for x in first.conflicts["count_mismatch"]] == ["new-n:1:x"]
    # The twin stops cleanly (its lease goes), the other N stops beating: both conflicts clear.
    await store.shards.release(twin.instance)
    clock.now += timedelta(seconds=16)  # past 3 heartbeats
    await first.beat_once()
    assert first.problem() is None and first.conflicts["count_mismatch"] == []
    assert "shard 0/2: no conflicting shard any more" in [r.getMessage() for r in caplog.records]
    assert {x.instance for x in await store.shards.list_leases()} == {
        "pod-0:1:dead",
        "pod-0:2:new",
        "new-n:1:x",
    }
    clock.now += timedelta(hours=2)
    first._pruned_at = None
    await first.beat_once()  # prunes leases not renewed for an hour
    assert [x.instance for x in await store.shards.list_leases()] == ["pod-0:2:new"]


async def test_readyz_and_metrics_say_a_duplicate_index(tmp_path: Path, bridge_url: str) -> None:
    agent = _shard_agent(tmp_path, bridge_url, "1/2")
    app = create_app(agent, schedule=False)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await agent.service.run_cycle()
        monitor = agent.shard_monitor
        assert monitor is not None
        await monitor.beat_once()
        resp = await client.get("/readyz")
        assert resp.status == 200, await resp.text()
        text = generate_latest(agent.metrics.registry).decode()  # type: ignore[union-attr]
        assert "mt5_agent_shard_index 1.0" in text and "mt5_agent_shard_count 2.0" in text
        assert "mt5_agent_shard_lease_up 1.0" in text
        assert 'mt5_agent_shard_conflicts{kind="duplicate_index"} 0.0' in text
        now = datetime.now(UTC)
        await agent.store.shards.beat(ShardLease("elsewhere:1:dup", 1, 2, now, now + timedelta(seconds=1)))
        await monitor.beat_once()
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and body["ready"] is False
        assert body["problems"] == ["shard 1/2: another live instance holds the same index (1)"]
        text = generate_latest(agent.metrics.registry).decode()  # type: ignore[union-attr]
        assert 'mt5_agent_shard_conflicts{kind="duplicate_index"} 1.0' in text
        resp = await client.get("/api/admin/mt5-health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        health = await resp.json()
        assert resp.status == 200, health
        shard = health["shard"]
        assert (shard["index"], shard["count"], shard["lease_up"], shard["live_shards"]) == (1, 2, True, 2)
        assert shard["owned_accounts"] == sum(1 for a in agent.fleet.snapshot().accounts if a % 2 == 1) > 0
        assert shard["conflicts"] == [
            {"kind": "duplicate_index", "instance": "elsewhere:1:dup", "index": 1, "count": 2}
        ]
        assert "shard 1/2: another live instance holds the same index (1)" in health["issues"]
        assert health["status"] in ("degraded", "unhealthy")
    finally:
        await client.close()


# --- the hub tails the store -----------------------------------------------------------------------


async def test_the_hub_streams_the_other_writers_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    mine, theirs = open_store(url), open_store(url)
    await mine.open()
    await theirs.open()
    hub = EventHub(mine.events, encode=lambda e: e.account, tail=0.05)
    hub.start()
    try:
        assert await hub.wait_ready(5)
        sub = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
        stored = await theirs.events.append_events([trade_event(7001), trade_event(7003)])
        own = await mine.events.append_events([trade_event(7002)])
        hub.on_events_stored(own, datetime.now(UTC), False)
        got: list[tuple[int, Any]] = []
        async with asyncio.timeout(5):
            while len(got) < 3:
                got += await sub.take(1.0)
        assert [i for i, _ in got] == [e.id for e in [*stored, *own]]
        assert [acc for _, acc in got] == [7001, 7003, 7002]
    finally:
        await hub.stop()
        await mine.close()
        await theirs.close()


class HoleyEvents:
    """An events concern whose ids 3 arrives late (another shard's slower commit) or never."""

    def __init__(self, events: Sequence[TradeEvent]) -> None:
        self.events = list(events)

    async def latest_id(self) -> int:
        return 0

    async def list_events(self, *, after: int, limit: int, **kw: Any) -> list[TradeEvent]:
        return [e for e in sorted(self.events, key=lambda e: e.id or 0) if (e.id or 0) > after][:limit]


def _with_id(event: TradeEvent, n: int) -> TradeEvent:
    return dataclasses.replace(event, id=n)


async def test_a_hole_is_waited_for_then_passed() -> None:
    events = HoleyEvents([_with_id(trade_event(7001), n) for n in (1, 2, 4)])
    hub = EventHub(events, encode=lambda e: e.id, tail=0.02, settle=0.5)  # type: ignore[arg-type]
    hub.start()
    try:
        assert await hub.wait_ready(5)
        sub = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
        got = [i for i, _ in await sub.take(1.0)]
        await asyncio.sleep(0.2)  # inside the settle time: 4 is held back while 3 may still come
        got += [i for i, _ in await sub.take(0.01)]
        assert got == [1, 2]
        events.events.append(_with_id(trade_event(7001), 3))  # the slower writer commits
        async with asyncio.timeout(5):
            while len(got) < 4:
                got += [i for i, _ in await sub.take(1.0)]
        assert got == [1, 2, 3, 4]
        events.events.append(_with_id(trade_event(7001), 6))  # 5 never comes (a failed write)
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            while len(got) < 5:
                got += [i for i, _ in await sub.take(1.0)]
        assert got == [1, 2, 3, 4, 6] and asyncio.get_running_loop().time() - started >= 0.45
    finally:
        await hub.stop()


class LateObserver(NullObserver):
    def __init__(self) -> None:
        self.late = 0

    def on_stream_late(self, events: int) -> None:
        self.late += events


async def test_an_event_landing_in_a_passed_hole_is_told_not_silent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """5 is passed after the settle time; when it lands later it cannot go out live (the streams are past
    it), so the hub says so once: a warning naming it and the late-events counter, never a second time."""
    monkeypatch.setattr(hub_module, "LATE_CHECK_SECONDS", 0.0)
    events = HoleyEvents([_with_id(trade_event(7001), n) for n in (1, 2, 3, 4, 6)])
    observer = LateObserver()
    hub = EventHub(events, encode=lambda e: e.id, tail=0.02, settle=0.2, observer=observer)  # type: ignore[arg-type]
    hub.start()
    try:
        assert await hub.wait_ready(5)
        sub = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
        got: list[int] = []
        async with asyncio.timeout(5):
            while len(got) < 5:
                got += [i for i, _ in await sub.take(1.0)]
        assert got == [1, 2, 3, 4, 6] and observer.late == 0
        with caplog.at_level(logging.WARNING, logger="mt5_agent"):
            events.events.append(_with_id(trade_event(7001), 5))  # the slow writer commits, too late
            async with asyncio.timeout(5):
                while observer.late == 0:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # ~15 more tail rounds (every 0.02 s): told once, not again
        assert observer.late == 1
        assert [i for i, _ in await sub.take(0.1)] == []  # not sent live out of order
        assert any("5 landed" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        await hub.stop()


async def test_on_mongodb_the_change_stream_rings_the_bell(tmp_path: Path) -> None:
    """SecantusDB (tests/store's MongoDB wire-protocol server) has change streams: the other writer's
    events arrive long before the polling period (here 30 s) would have read them."""
    from tests.store.mongo_server import MongoServer, require_secantusd

    (tmp_path / "db").mkdir()
    server = MongoServer(require_secantusd(), tmp_path / "db")
    await asyncio.to_thread(server.start)
    mine = open_store(server.url, mongo_database="hub_watch")
    theirs = open_store(server.url, mongo_database="hub_watch")
    try:
        await mine.open()
        await theirs.open()
        hub = EventHub(mine.events, encode=lambda e: e.account, tail=30.0)
        hub.start()
        try:
            assert await hub.wait_ready(10)
            async with asyncio.timeout(10):
                while not hub.watching:
                    await asyncio.sleep(0.02)
            sub = hub.subscribe(accounts=None, types=None, client_id=None, limit=100)
            loop = asyncio.get_running_loop()
            stored = await theirs.events.append_events([trade_event(7001), trade_event(7003)])
            at = loop.time()
            got: list[tuple[int, Any]] = []
            async with asyncio.timeout(10):
                while len(got) < 2:
                    got += await sub.take(1.0)
            assert [i for i, _ in got] == [e.id for e in stored]
            assert loop.time() - at < 5.0  # not the 30 s poll
        finally:
            await hub.stop()
    finally:
        await mine.close()
        await theirs.close()
        await asyncio.to_thread(server.stop)
