"""/metrics of a running agent, fetched over HTTP after real cycles against the fake seed bridge:
exact values, counters, freshness and data source, and what happens while the bridge or the store
is down."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from agent import __version__
from agent.domain.accounts import REASONS, DataSource
from agent.domain.freshness import STATES
from agent.domain.runs import RUN_RESULTS, RunResult
from agent.store import open_store
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.observability.conftest import Harness, MakeAgent, Scrape, Seed, remove_db
from tests.ports import free_port

BAD = 891215  # answers HTTP 500
STORED = 886066  # answers with stored_data only
RICH = 886557  # also sends margin_level (percent)
VALUE_METRICS = {
    "mt5_account_balance": "balance",
    "mt5_account_equity": "equity",
    "mt5_account_profit": "profit",
    "mt5_account_margin": "margin",
    "mt5_account_margin_free": "margin_free",
}

# DESIGN.md section 7 (contract) plus the additions: family name -> (type, label names).
SPEC: dict[str, tuple[str, set[str]]] = {
    "mt5_account_info": ("gauge", {"account", "name", "server", "currency", "source"}),
    **{m: ("gauge", {"account"}) for m in VALUE_METRICS},
    "mt5_account_margin_level_ratio": ("gauge", {"account"}),
    "mt5_account_last_sync_timestamp_seconds": ("gauge", {"account"}),
    "mt5_account_data_age_seconds": ("gauge", {"account"}),
    "mt5_account_freshness_state": ("gauge", {"account", "state"}),
    "mt5_account_sync_failures": ("counter", {"account", "reason"}),
    "mt5_account_consecutive_failures": ("gauge", {"account"}),
    "mt5_sync_duration_seconds": ("histogram", set()),
    "mt5_sync_runs": ("counter", {"result"}),
    "mt5_sync_last_success_timestamp_seconds": ("gauge", set()),
    "mt5_bridge_up": ("gauge", {"source"}),
    "mt5_store_up": ("gauge", set()),
    "mt5_bridge_request_duration_seconds": ("histogram", {"endpoint", "source"}),
    # additions
    "mt5_account_data_source": ("gauge", {"account", "source"}),
    "mt5_sync_last_run_accounts": ("gauge", {"outcome"}),
    "mt5_sync_running": ("gauge", set()),
    "mt5_store_operation_duration_seconds": ("histogram", {"operation"}),
    "mt5_agent_build_info": ("gauge", {"version"}),
    # issue 10
    "mt5_bridge_terminal_up": ("gauge", {"source"}),
    "mt5_source_duplicate_accounts": ("gauge", {"source"}),
    "mt5_bridge_invalid_entries": ("counter", {"endpoint"}),
    "mt5_bridge_clock_skew": ("counter", set()),
    "mt5_bridge_clock_skew_seconds": ("gauge", set()),
    "mt5_sync_accounts_pruned": ("counter", set()),
    "mt5_freshness_threshold_seconds": ("gauge", {"state"}),
}
SAMPLE_SUFFIX = {"gauge": "", "counter": "_total", "histogram": "_count"}


def _ts(s: Scrape, account: int) -> float | None:
    return s.get("mt5_account_last_sync_timestamp_seconds", account=account)


def _age(s: Scrape, account: int) -> float:
    return s.value("mt5_account_data_age_seconds", account=account)


def _state(s: Scrape, account: int) -> str:
    current = [
        st.value for st in STATES if s.value("mt5_account_freshness_state", account=account, state=st) == 1
    ]
    zeros = [st for st in STATES if s.value("mt5_account_freshness_state", account=account, state=st) == 0]
    assert len(current) == 1 and len(zeros) == 3, (account, current)
    return current[0]


def _source(s: Scrape, account: int) -> dict[str, float]:
    return {
        src.value: s.value("mt5_account_data_source", account=account, source=src.value) for src in DataSource
    }


def _failures(s: Scrape, account: int) -> dict[str, float]:
    return {
        r.value: s.value("mt5_account_sync_failures_total", account=account, reason=r.value) for r in REASONS
    }


async def _poll_scrape(h: Harness, done: object, timeout: float = 5.0) -> Scrape:
    """Scrape until `done(scrape)` holds; a condition, not a fixed sleep."""
    async with asyncio.timeout(timeout):
        while True:
            s = await h.scrape()
            if done(s):  # type: ignore[operator]
                return s
            await asyncio.sleep(0.005)


async def test_every_metric_has_the_contract_type_and_labels(seed: Seed, make_agent: MakeAgent):
    seed.bridge.behaviour[BAD] = "http_500"
    seed.bridge.margin_levels[RICH] = 2500.0
    h = await make_agent(seed.url)
    await h.agent.service.run_cycle()
    s = await h.scrape()
    for name, (kind, labels) in SPEC.items():
        assert s.types.get(name) == kind, name
        sample = name + SAMPLE_SUFFIX[kind]
        assert s.labels.get(sample) == {frozenset(labels)}, (sample, s.labels.get(sample))
    # Bounded label values only: closed sets and account numbers.
    for name, label, allowed in [
        ("mt5_account_sync_failures_total", "reason", {r.value for r in REASONS}),
        ("mt5_sync_runs_total", "result", {r.value for r in RUN_RESULTS}),
        ("mt5_account_freshness_state", "state", {st.value for st in STATES}),
        ("mt5_account_data_source", "source", {d.value for d in DataSource}),
        (
            "mt5_bridge_request_duration_seconds_count",
            "endpoint",
            {"health", "summary", "info", "live", "balance", "positions", "trades"},
        ),
        ("mt5_bridge_invalid_entries_total", "endpoint", {"summary", "live"}),
        ("mt5_freshness_threshold_seconds", "state", {"acceptable", "degraded", "critical"}),
    ]:
        assert {dict(lbl)[label] for lbl in s.series(name)} == allowed, name
    assert {dict(lbl)["account"] for lbl in s.series("mt5_account_info")} == {str(a) for a in SEED_ACCOUNTS}


async def test_partial_cycle_exact_values(seed: Seed, make_agent: MakeAgent):
    bridge = seed.bridge
    bridge.behaviour[BAD] = "http_500"
    bridge.behaviour[STORED] = "no_live_data"
    bridge.margin_levels[RICH] = 2500.0  # percent
    h = await make_agent(seed.url)
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.PARTIAL
    fleet = h.agent.service.fleet
    s = await h.scrape()

    good = [a for a in SEED_ACCOUNTS if a not in (BAD, STORED)]
    for a in good:
        served = bridge.live_data(a)
        for metric, fld in VALUE_METRICS.items():
            assert s.value(metric, account=a) == served[fld], (a, metric)
        assert (
            s.value(
                "mt5_account_info",
                account=a,
                name=SEED_ACCOUNTS[a]["name"],
                server="",
                currency="USD",
                source="bridge",
            )
            == 1
        )
        live_at = fleet.snapshot().accounts[a].live_data_at
        assert live_at is not None
        assert _ts(s, a) == live_at.timestamp()
        assert 0 <= _age(s, a) < 60
        assert _state(s, a) == "fresh"
        assert _source(s, a) == {"VPS_LIVE_MT5": 1, "VPS_STORED": 0}
        assert set(_failures(s, a).values()) == {0}
        assert s.value("mt5_account_consecutive_failures", account=a) == 0
    # MT5's margin_level is a percent; the metric is a ratio. Not sent -> not exported (never a 0).
    assert s.value("mt5_account_margin_level_ratio", account=RICH) == 25.0
    assert s.get("mt5_account_margin_level_ratio", account=good[1]) is None

    # The failing account: counted once under its reason, nothing invented, critical.
    assert _failures(s, BAD) == {r.value: (1 if r.value == "http_status" else 0) for r in REASONS}
    assert s.value("mt5_account_consecutive_failures", account=BAD) == 1
    assert _state(s, BAD) == "critical"
    for metric in (*VALUE_METRICS, "mt5_account_last_sync_timestamp_seconds", "mt5_account_data_age_seconds"):
        assert s.get(metric, account=BAD) is None, metric
    assert _source(s, BAD) == {"VPS_LIVE_MT5": 0, "VPS_STORED": 0}

    # The stored-only account: its stored values, flagged VPS_STORED, and still never synced live.
    assert s.value("mt5_account_balance", account=STORED) == SEED_ACCOUNTS[STORED]["balance"] - 100
    assert _source(s, STORED) == {"VPS_LIVE_MT5": 0, "VPS_STORED": 1}
    assert _ts(s, STORED) is None and s.get("mt5_account_data_age_seconds", account=STORED) is None
    assert _state(s, STORED) == "critical"
    assert set(_failures(s, STORED).values()) == {0}

    # Cycle-level metrics.
    assert {r.value: s.value("mt5_sync_runs_total", result=r.value) for r in RUN_RESULTS} == {
        "success": 0,
        "partial": 1,
        "failed": 0,
        "skipped": 0,
    }
    assert {o: s.value("mt5_sync_last_run_accounts", outcome=o) for o in ("live", "stored", "failed")} == {
        "live": 5,
        "stored": 1,
        "failed": 1,
    }
    last_success_at = fleet.status.last_success_at
    assert last_success_at is not None
    assert s.value("mt5_sync_last_success_timestamp_seconds") == last_success_at.timestamp()
    assert s.value("mt5_bridge_up", source="bridge") == 1 and s.value("mt5_store_up") == 1
    assert s.value("mt5_sync_running") == 0
    assert s.value("mt5_sync_duration_seconds_count") == 1
    assert s.value("mt5_sync_duration_seconds_sum") == pytest.approx(run.duration_seconds)
    req = {
        e: s.value("mt5_bridge_request_duration_seconds_count", endpoint=e, source="bridge")
        for e in ("health", "summary", "info")
    }
    assert req == {"health": 1, "summary": 1, "info": 7}
    assert s.value("mt5_bridge_request_duration_seconds_count", endpoint="live", source="bridge") == 0
    assert s.value("mt5_store_operation_duration_seconds_count", operation="write_cycle") == 1
    assert s.value("mt5_store_operation_duration_seconds_count", operation="record_run") == 1
    assert s.value("mt5_agent_build_info", version=__version__) == 1


async def test_stored_fallback_does_not_advance_last_sync(seed: Seed, make_agent: MakeAgent):
    h = await make_agent(seed.url)
    assert (await h.agent.service.run_cycle()).result is RunResult.SUCCESS
    s1 = await h.scrape()
    assert _source(s1, STORED) == {"VPS_LIVE_MT5": 1, "VPS_STORED": 0}

    seed.bridge.behaviour[STORED] = "no_live_data"
    seed.bridge.accounts[STORED]["stored_balance"] = 12345.67
    assert (await h.agent.service.run_cycle()).result is RunResult.PARTIAL
    s2 = await h.scrape()
    assert s2.value("mt5_account_balance", account=STORED) == 12345.67
    assert _source(s2, STORED) == {"VPS_LIVE_MT5": 0, "VPS_STORED": 1}
    assert _ts(s2, STORED) == _ts(s1, STORED)  # the fallback does not make the data look fresh
    assert _age(s2, STORED) > _age(s1, STORED)
    assert _ts(s2, RICH) > _ts(s1, RICH)  # a live account's does move
    assert set(_failures(s2, STORED).values()) == {0}


@pytest.mark.parametrize(
    ("offset", "state"),
    [
        (0, "fresh"),
        (299.9, "fresh"),
        (300, "acceptable"),
        (600, "degraded"),
        (899, "degraded"),
        (900, "critical"),
    ],
)
async def test_age_and_freshness_are_computed_at_scrape_time(
    seed: Seed, make_agent: MakeAgent, offset, state
):
    h = await make_agent(seed.url)
    await h.agent.service.run_cycle()
    live_at = h.agent.service.fleet.snapshot().accounts[RICH].live_data_at
    assert live_at is not None
    h.agent.service.clock = lambda: live_at + timedelta(seconds=offset)  # no cycle runs after this
    s = await h.scrape()
    assert _age(s, RICH) == pytest.approx(offset)
    assert _state(s, RICH) == state
    assert _ts(s, RICH) == live_at.timestamp()


async def test_bridge_down_for_two_cycles(seed: Seed, make_agent: MakeAgent):
    h = await make_agent(seed.url)
    assert (await h.agent.service.run_cycle()).result is RunResult.SUCCESS
    s1 = await h.scrape()
    assert s1.value("mt5_bridge_up", source="bridge") == 1

    await seed.server.close()
    for _ in range(2):
        assert (await h.agent.service.run_cycle()).result is RunResult.SKIPPED
    s2 = await h.scrape()
    assert s2.value("mt5_bridge_up", source="bridge") == 0
    assert s2.value("mt5_sync_runs_total", result="skipped") == 2
    assert s2.value("mt5_sync_runs_total", result="success") == 1
    for a in SEED_ACCOUNTS:
        assert _ts(s2, a) == _ts(s1, a) is not None  # timestamps do not move without live data
        assert s2.value("mt5_account_balance", account=a) == s1.value("mt5_account_balance", account=a)
        assert _age(s2, a) > _age(s1, a)
    # Ages keep growing between scrapes while nothing is refreshed.
    s3 = await _poll_scrape(h, lambda s: _age(s, RICH) > _age(s2, RICH))
    assert s3.value("mt5_bridge_up", source="bridge") == 0
    assert _ts(s3, RICH) == _ts(s1, RICH)


async def test_before_anything_is_known_and_bridge_unreachable(make_agent: MakeAgent):
    h = await make_agent(f"http://127.0.0.1:{free_port()}", health_retries=3)
    s0 = await h.scrape()
    assert s0.value("mt5_bridge_up", source="bridge") == 0  # unknown yet: exported as 0 (see HELP)
    assert s0.value("mt5_store_up") == 1  # the app's start opened the store
    assert {s0.value("mt5_sync_runs_total", result=r.value) for r in RUN_RESULTS} == {0}
    assert s0.get("mt5_sync_last_success_timestamp_seconds") is None
    assert not any(name.startswith("mt5_account_") for name, _ in s0.samples)
    assert s0.value("mt5_sync_duration_seconds_count") == 0

    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.SKIPPED
    s1 = await h.scrape()
    assert s1.value("mt5_bridge_up", source="bridge") == 0
    assert s1.value("mt5_sync_runs_total", result="skipped") == 1
    assert s1.value("mt5_sync_duration_seconds_count") == 1
    assert (
        s1.value("mt5_bridge_request_duration_seconds_count", endpoint="health", source="bridge") == 3
    )  # every retry


async def test_store_file_removed(seed: Seed, make_agent: MakeAgent, tmp_path: Path):
    db = tmp_path / "gone.db"
    h = await make_agent(seed.url, store_url=f"sqlite:///{db}")
    assert (await h.agent.service.run_cycle()).result is RunResult.SUCCESS
    s1 = await h.scrape()
    assert s1.value("mt5_store_up") == 1

    remove_db(tmp_path, "gone.db")
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.FAILED and (run.error or "").startswith("store:")
    s2 = await h.scrape()
    assert s2.value("mt5_store_up") == 0
    assert s2.value("mt5_bridge_up", source="bridge") == 1
    assert s2.value("mt5_sync_runs_total", result="failed") == 1
    for a in SEED_ACCOUNTS:
        assert _failures(s2, a) == {r.value: (1 if r.value == "store" else 0) for r in REASONS}
        assert s2.value("mt5_account_consecutive_failures", account=a) == 1
        assert _ts(s2, a) == _ts(s1, a)  # nothing was written: nothing looks fresher
        assert s2.value("mt5_account_balance", account=a) == s1.value("mt5_account_balance", account=a)


async def test_mongo_store_unreachable(seed: Seed, make_agent: MakeAgent):
    store = open_store(f"mongodb://127.0.0.1:{free_port()}/", timeout_ms=200)
    h = await make_agent(seed.url, store=store)
    s0 = await h.scrape()
    assert s0.value("mt5_store_up") == 0
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.FAILED
    s1 = await h.scrape()
    assert s1.value("mt5_store_up") == 0
    assert s1.value("mt5_bridge_up", source="bridge") == 1
    assert s1.value("mt5_store_operation_duration_seconds_count", operation="write_cycle") == 1
    for a in SEED_ACCOUNTS:
        assert s1.value("mt5_account_sync_failures_total", account=a, reason="store") == 1


async def test_sync_running_while_a_cycle_runs(seed: Seed, make_agent: MakeAgent):
    seed.bridge.behaviour[RICH] = "hang"
    h = await make_agent(seed.url, request_timeout=10.0)
    task = asyncio.create_task(h.agent.service.run_cycle())
    try:
        # Scraped while the cycle waits on the hung account.
        s = await _poll_scrape(
            h, lambda s: s.value("mt5_sync_running") == 1 and f"info:{RICH}" in seed.bridge.requests
        )
        assert s.value("mt5_sync_duration_seconds_count") == 0
    finally:
        seed.bridge.release.set()
        run = await task
    assert run.result is RunResult.SUCCESS
    assert (await h.scrape()).value("mt5_sync_running") == 0


async def test_each_agent_has_its_own_registry(seed: Seed, make_agent: MakeAgent):
    a = await make_agent(seed.url)
    b = await make_agent(seed.url)
    assert a.agent.metrics is not None and b.agent.metrics is not None
    assert a.agent.metrics.registry is not b.agent.metrics.registry
    await a.agent.service.run_cycle()
    assert (await a.scrape()).value("mt5_sync_runs_total", result="success") == 1
    assert (await b.scrape()).value("mt5_sync_runs_total", result="success") == 0
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("mt5_")]


async def test_unknown_bridge_endpoint_is_bucketed_as_other(seed: Seed, make_agent: MakeAgent):
    h = await make_agent(seed.url)
    assert h.agent.metrics is not None
    h.agent.metrics.observe_bridge_request("not-an-endpoint", 0.2, True)
    s = await h.scrape()
    assert s.value("mt5_bridge_request_duration_seconds_count", endpoint="other", source="bridge") == 1
    assert (
        s.get("mt5_bridge_request_duration_seconds_count", endpoint="not-an-endpoint", source="bridge")
        is None
    )
