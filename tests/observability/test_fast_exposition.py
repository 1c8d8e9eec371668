"""/metrics renders the per-account families itself (agent.telemetry.collector.FleetCollector.render,
cached per fleet version, ages at scrape time): its bytes must be exactly what prometheus_client's own
encoders write for the same registry, in every format we serve, before and after time passes and the
fleet changes. The collector reads a stub fleet here (the fleet's own snapshot types); test_metrics.py scrapes
a real agent."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import choose_encoder

from agent.domain.accounts import AccountValues, Reason
from agent.domain.freshness import Thresholds
from agent.domain.runs import RunResult, SyncRun
from agent.sync.fleet import AccountState, FleetSnapshot, SyncStatus
from agent.telemetry.collector import FleetCollector
from agent.telemetry.exposition import add_metrics_route, render
from agent.telemetry.registry import AgentMetrics

T0 = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)
ACCEPTS = [
    "",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",  # what Prometheus sends
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=dots",  # falls back to prometheus_client
    "application/openmetrics-text;version=2.0.0",
]


def _values(balance: float, **kw: object) -> AccountValues:
    return AccountValues(balance=balance, **kw)  # type: ignore[arg-type]


def account_state(  # the fields the collector reads; the rest keep their defaults
    account: int,
    name: str | None = None,
    server: str | None = None,
    values: AccountValues | None = None,
    data_source: str | None = None,
    live_data_at: datetime | None = None,
    consecutive_failures: int = 0,
) -> AccountState:
    return AccountState(
        account=account,
        name=name,
        server=server,
        values=values,
        data_source=data_source,
        live_data_at=live_data_at,
        consecutive_failures=consecutive_failures,
        has_sync_state=consecutive_failures > 0,
    )


class StubFleet:
    """The fleet's read side (FleetReader) with snapshots the test publishes, each a new version as
    `agent.sync.fleet.Fleet` publishes them: every branch is reachable without running cycles."""

    def __init__(self) -> None:
        self.snap = FleetSnapshot(0, MappingProxyType({}), MappingProxyType({}))
        self.status = SyncStatus()

    def snapshot(self) -> FleetSnapshot:
        return self.snap

    def publish(
        self, accounts: Mapping[int, AccountState], failures: Mapping[tuple[int, Reason], int]
    ) -> None:
        self.snap = FleetSnapshot(
            self.snap.version + 1,
            MappingProxyType(dict(sorted(accounts.items()))),
            MappingProxyType(dict(failures)),
        )


@dataclass
class Scrapes:
    metrics: AgentMetrics
    fleet: StubFleet
    now: datetime = T0

    @property
    def collector(self) -> FleetCollector:
        assert self.metrics.collector is not None
        return self.metrics.collector


def _fill(fleet: StubFleet) -> None:
    """Every branch of the collector: escaping, missing values, exponent formatting, naive and
    non-UTC times, future times, stored fallback, failures, accounts with only a sync state."""
    full = _values(
        80_000.0,
        equity=80_012.5,
        profit=-12.25,
        margin=1_234.5,
        margin_free=78_778.0,
        margin_level=6_481.29,
        leverage=100,
        currency="USD",
        trade_allowed=True,
    )
    accounts = {
        886557: account_state(
            886557, "Main", "MEXAtlantic-Real", full, "VPS_LIVE_MT5", T0 - timedelta(seconds=12.5)
        ),
        886066: account_state(
            886066,
            'Quote " backslash \\ newline \n label',
            "Server\\2",
            _values(12_345_678.9, equity=1e300, profit=1e-7, currency="EUR"),
            "VPS_STORED",
            T0 - timedelta(seconds=400, microseconds=7),
            consecutive_failures=2,
        ),
        886602: account_state(
            886602, None, None, _values(0.0, margin_level=0.0), "VPS_LIVE_MT5", datetime(2026, 11, 22, 11, 49)
        ),  # naive: UTC
        885822: account_state(
            885822,
            "Tz",
            "S",
            _values(5.0),
            "VPS_LIVE_MT5",
            datetime(2026, 11, 22, 13, 0, tzinfo=timezone(timedelta(hours=2))),  # 11:00 UTC: critical
        ),
        886528: account_state(886528, "Future", "S", _values(1.5), "VPS_LIVE_MT5", T0 + timedelta(seconds=3)),
        891215: account_state(891215, "Never", "S", consecutive_failures=7),
        999999: account_state(999999, consecutive_failures=1),  # a sync state only
    }
    failures = {(886066, Reason.TIMEOUT): 2, (891215, Reason.NOT_FOUND): 7, (999999, Reason.CONNECTION): 1}
    fleet.publish(accounts, failures)
    run = SyncRun(run_id="r", started_at=T0, finished_at=T0, duration_seconds=0.5, result=RunResult.PARTIAL)
    run.synced_live, run.synced_stored, run.failed = 4, 1, 2
    fleet.status = SyncStatus(
        runs=MappingProxyType({RunResult.SUCCESS: 3, RunResult.PARTIAL: 1}),
        last_run=run,
        last_success_at=T0,
        bridge_up=True,
        store_up=None,
    )


@pytest.fixture
def scrapes() -> Scrapes:
    metrics = AgentMetrics(runtime=False)  # process CPU time would move between the two encodings
    fleet = StubFleet()
    s = Scrapes(metrics, fleet)
    metrics.attach_fleet(fleet, Thresholds(), lambda: s.now)
    metrics.observe_bridge_request("info", 0.02, True)  # a histogram with data
    _fill(fleet)
    return s


def _assert_same(s: Scrapes) -> None:
    registry = s.metrics.registry
    for accept in ACCEPTS:
        encoder, content_type = choose_encoder(accept)
        expected = encoder(registry)  # prometheus_client, through FleetCollector.collect
        body, ct = render(s.metrics, accept)
        assert ct == content_type, accept
        assert body == expected, accept


def test_fast_path_is_byte_identical(scrapes: Scrapes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fast = FleetCollector.render
    monkeypatch.setattr(FleetCollector, "render", lambda self, *a: calls.append(a) or fast(self, *a))
    _assert_same(scrapes)
    assert len(calls) == len(ACCEPTS) - 1  # every format but the `dots` escaping took the fast path


def test_ages_and_states_move_with_the_clock_from_the_cache(scrapes: Scrapes) -> None:
    _assert_same(scrapes)  # fills the cache
    for seconds in (0.000001, 290, 301, 650, 1000, 86_400 * 400):
        scrapes.now = T0 + timedelta(seconds=seconds)
        _assert_same(scrapes)


def test_a_new_fleet_version_is_rendered_again(scrapes: Scrapes) -> None:
    _assert_same(scrapes)
    fleet = scrapes.fleet
    accounts: dict[int, Any] = dict(fleet.snap.accounts)
    accounts[886557] = dataclasses.replace(
        accounts[886557], values=_values(1.0, currency="JPY"), name="Renamed", consecutive_failures=1
    )
    failures = {**fleet.snap.failures, (886557, Reason.STORE): 1}
    fleet.publish(accounts, failures)
    _assert_same(scrapes)
    fleet.publish({**accounts, 123: account_state(123, "New")}, failures)
    _assert_same(scrapes)


def test_empty_fleet_is_byte_identical() -> None:
    metrics = AgentMetrics(runtime=False)  # byte-for-byte: no moving process series
    metrics.attach_fleet(StubFleet(), Thresholds(), lambda: T0)
    _assert_same(Scrapes(metrics, StubFleet()))


async def test_http_metrics_serves_the_same_bytes(scrapes: Scrapes) -> None:
    app = web.Application()
    add_metrics_route(app, scrapes.metrics)
    registry = scrapes.metrics.registry
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for accept in ACCEPTS[:6]:
            encoder, content_type = choose_encoder(accept)
            resp = await client.get("/metrics", headers={"Accept": accept, "Accept-Encoding": "identity"})
            assert resp.status == 200
            assert resp.headers["Content-Type"] == content_type
            assert await resp.read() == encoder(registry)
        expected = choose_encoder("")[0](registry)
        for coding in ("gzip", "deflate", "gzip, deflate"):
            resp = await client.get("/metrics", headers={"Accept-Encoding": coding})
            assert resp.headers["Content-Encoding"] == coding.split(", ")[-1]  # deflate first, as aiohttp
            assert await resp.read() == expected  # the client decompressed it
        resp = await client.get("/metrics", params={"name[]": "mt5_bridge_up"})
        assert (await resp.text()).count(
            "\nmt5_bridge_up{"
        ) == 1 and "mt5_account_info" not in await resp.text()


async def test_prepare_renders_in_a_thread_and_render_uses_it(
    scrapes: Scrapes, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = scrapes.collector
    await collector.prepare()  # renders the static text off the event loop
    calls: list[int] = []
    render_static = FleetCollector._render_static
    monkeypatch.setattr(
        FleetCollector, "_render_static", staticmethod(lambda *a: calls.append(1) or render_static(*a))
    )
    _assert_same(scrapes)
    assert calls == []  # every format used the prepared text
    fleet = scrapes.fleet
    fleet.publish(fleet.snap.accounts, fleet.snap.failures)  # a cycle applied after the scrape prepared
    _assert_same(scrapes)
    assert len(calls) == 1  # rendered again, once, by the scrape itself
    await collector.prepare()
    assert len(calls) == 1  # already current: nothing to do
