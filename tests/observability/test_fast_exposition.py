"""/metrics renders the per-account families itself (agent.metrics.AgentCollector.render, cached per
state version, ages at scrape time): its bytes must be exactly what prometheus_client's own encoders
write for the same registry, in every format we serve, before and after time passes and state changes."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import choose_encoder

from agent.app import Agent, build_agent, create_app
from agent.config import load_settings
from agent.metrics import AgentCollector, render_registry
from agent.models import AccountSyncState, AccountValues, Reason, RunResult, SyncRun
from agent.sync import AccountView

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


def _fill(agent: Agent) -> None:
    """Every branch of the collector: escaping, missing values, exponent formatting, naive and
    non-UTC times, future times, stored fallback, failures, accounts with only a sync state."""
    st = agent.service.state
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
    st.accounts = {
        886557: AccountView(
            886557, "Main", "MEXAtlantic-Real", full, "VPS_LIVE_MT5", T0 - timedelta(seconds=12.5)
        ),
        886066: AccountView(
            886066,
            'Quote " backslash \\ newline \n label',
            "Server\\2",
            _values(12_345_678.9, equity=1e300, profit=1e-7, currency="EUR"),
            "VPS_STORED",
            T0 - timedelta(seconds=400, microseconds=7),
        ),
        886602: AccountView(
            886602, None, None, _values(0.0, margin_level=0.0), "VPS_LIVE_MT5", datetime(2026, 11, 22, 11, 49)
        ),  # naive: UTC
        885822: AccountView(
            885822,
            "Tz",
            "S",
            _values(5.0),
            "VPS_LIVE_MT5",
            datetime(2026, 11, 22, 13, 0, tzinfo=timezone(timedelta(hours=2))),  # 11:00 UTC: critical
        ),
        886528: AccountView(886528, "Future", "S", _values(1.5), "VPS_LIVE_MT5", T0 + timedelta(seconds=3)),
        891215: AccountView(891215, "Never", "S"),
    }
    st.sync_states = {
        886066: AccountSyncState(886066, consecutive_failures=2, last_reason=Reason.TIMEOUT),
        891215: AccountSyncState(891215, consecutive_failures=7, last_reason=Reason.NOT_FOUND),
        999999: AccountSyncState(999999, consecutive_failures=1, last_reason=Reason.CONNECTION),
    }
    st.failures = Counter(
        {(886066, Reason.TIMEOUT): 2, (891215, Reason.NOT_FOUND): 7, (999999, Reason.CONNECTION): 1}
    )
    st.runs = Counter({RunResult.SUCCESS: 3, RunResult.PARTIAL: 1})
    run = SyncRun(run_id="r", started_at=T0, finished_at=T0, duration_seconds=0.5, result=RunResult.PARTIAL)
    run.synced_live, run.synced_stored, run.failed = 4, 1, 2
    st.last_run, st.last_success_at, st.bridge_up, st.store_up = run, T0, True, None
    st.version += 1


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    for name in [n for n in os.environ if n.startswith("MT5_AGENT_")]:
        monkeypatch.delenv(name)
    settings = load_settings(store_url=f"sqlite:///{tmp_path / 'm.db'}", bridge_url="http://127.0.0.1:9")
    a = build_agent(settings)
    a.service.clock = lambda: T0
    a.metrics.observe_bridge_request("info", 0.02, True)  # a histogram with data
    _fill(a)
    return a


def _assert_same(agent: Agent) -> None:
    registry = agent.metrics.registry
    for accept in ACCEPTS:
        encoder, content_type = choose_encoder(accept)
        expected = encoder(registry)  # prometheus_client, through AgentCollector.collect_families
        body, ct = render_registry(registry, accept)
        assert ct == content_type, accept
        assert body == expected, accept


def test_fast_path_is_byte_identical(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    render = AgentCollector.render
    monkeypatch.setattr(AgentCollector, "render", lambda self, *a: calls.append(a) or render(self, *a))
    _assert_same(agent)
    assert len(calls) == len(ACCEPTS) - 1  # every format but the `dots` escaping took the fast path


def test_ages_and_states_move_with_the_clock_from_the_cache(agent: Agent) -> None:
    _assert_same(agent)  # fills the cache
    for seconds in (0.000001, 290, 301, 650, 1000, 86_400 * 400):
        agent.service.clock = lambda s=seconds: T0 + timedelta(seconds=s)
        _assert_same(agent)


def test_a_new_state_version_is_rendered_again(agent: Agent) -> None:
    _assert_same(agent)
    st = agent.service.state
    st.accounts[886557].values = _values(1.0, currency="JPY")
    st.accounts[886557].name = "Renamed"
    st.failures[(886557, Reason.STORE)] += 1
    st.sync_states[886557] = AccountSyncState(886557, consecutive_failures=1)
    st.version += 1
    _assert_same(agent)
    st.accounts[123] = AccountView(123, "New")  # a new account changes the key even without a bump
    _assert_same(agent)


def test_empty_state_is_byte_identical(tmp_path: Path) -> None:
    settings = load_settings(store_url=f"sqlite:///{tmp_path / 'm.db'}", bridge_url="http://127.0.0.1:9")
    a = build_agent(settings)
    _assert_same(a)


async def test_http_metrics_serves_the_same_bytes(agent: Agent) -> None:
    app = create_app(agent, schedule=False)
    async with TestClient(TestServer(app)) as client:
        for accept in ACCEPTS[:6]:
            encoder, content_type = choose_encoder(accept)
            resp = await client.get("/metrics", headers={"Accept": accept, "Accept-Encoding": "identity"})
            assert resp.status == 200
            assert resp.headers["Content-Type"] == content_type
            assert await resp.read() == encoder(agent.metrics.registry)
        expected = choose_encoder("")[0](agent.metrics.registry)
        for coding in ("gzip", "deflate", "gzip, deflate"):
            resp = await client.get("/metrics", headers={"Accept-Encoding": coding})
            assert resp.headers["Content-Encoding"] == coding.split(", ")[-1]  # deflate first, as aiohttp
            assert await resp.read() == expected  # the client decompressed it
        resp = await client.get("/metrics", params={"name[]": "mt5_bridge_up"})
        assert (await resp.text()).count(
            "\nmt5_bridge_up "
        ) == 1 and "mt5_account_info" not in await resp.text()


async def test_prepare_renders_in_a_thread_and_render_uses_it(agent: Agent, monkeypatch: pytest.MonkeyPatch):
    collector = agent.metrics.collector
    assert collector is not None
    await collector.prepare()  # renders the static text off the event loop
    calls: list[int] = []
    render_static = AgentCollector._render_static
    monkeypatch.setattr(
        AgentCollector, "_render_static", staticmethod(lambda *a: calls.append(1) or render_static(*a))
    )
    _assert_same(agent)
    assert calls == []  # every format used the prepared text
    agent.service.state.version += 1  # a cycle applied after the scrape prepared
    _assert_same(agent)
    assert len(calls) == 1  # rendered again, once, by the scrape itself
    await collector.prepare()
    assert len(calls) == 1  # already current: nothing to do
