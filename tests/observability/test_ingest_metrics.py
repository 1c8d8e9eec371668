"""Issue 10: what /metrics says about hostile or unusual input, fetched over HTTP from a running agent
against the fake seed bridge: the threshold gauges (finding 11), the idle account's margin level
(14), the new reasons (14), a terminal down behind a live bridge (13), clock skew (5), malformed
entries (3), pruned accounts (15), and no 5xx from the manual trigger whatever the bridge sends (1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.domain.accounts import REASONS
from agent.domain.runs import RunResult
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.observability.conftest import MakeAgent, Seed

BAD = 891215
IDLE = 886528
RICH = 886557
ADMIN = "admin-token-for-ingest-tests"


async def test_freshness_thresholds_are_exported_from_the_configuration(seed: Seed, make_agent: MakeAgent):
    h = await make_agent(seed.url, freshness="120,240.5,480")
    s = await h.scrape()
    assert s.types["mt5_freshness_threshold_seconds"] == "gauge"
    assert s.series("mt5_freshness_threshold_seconds") == {
        frozenset({("state", "acceptable")}): 120.0,
        frozenset({("state", "degraded")}): 240.5,
        frozenset({("state", "critical")}): 480.0,
    }


async def test_freshness_thresholds_default(seed: Seed, make_agent: MakeAgent):
    s = await (await make_agent(seed.url)).scrape()
    assert {dict(k)["state"]: v for k, v in s.series("mt5_freshness_threshold_seconds").items()} == {
        "acceptable": 300.0,
        "degraded": 600.0,
        "critical": 900.0,
    }


async def test_idle_account_has_no_margin_level_ratio(seed: Seed, make_agent: MakeAgent):
    """MT5 reports margin_level 0 while no margin is used: exporting 0 would read as a stop-out."""
    seed.bridge.margin_levels[IDLE] = 0.0  # margin is 0 (the fake's default)
    seed.bridge.margin_levels[BAD] = 0.0
    seed.bridge.accounts[BAD]["margin"] = 150.0  # margin in use and level 0: a real stop-out, shown
    seed.bridge.margin_levels[RICH] = 2500.0
    h = await make_agent(seed.url)
    assert (await h.agent.service.run_cycle()).result is RunResult.SUCCESS
    s = await h.scrape()
    assert s.get("mt5_account_margin_level_ratio", account=IDLE) is None
    assert s.value("mt5_account_margin_level_ratio", account=BAD) == 0.0
    assert s.value("mt5_account_margin_level_ratio", account=RICH) == 25.0
    # The reference path (any registry user) agrees with the fast path.
    fams = {f.name: f for f in h.agent.metrics.collector.collect()}
    ratios = {s.labels["account"]: s.value for s in fams["mt5_account_margin_level_ratio"].samples}
    assert ratios == {str(BAD): 0.0, str(RICH): 25.0}


async def test_new_reasons_are_pre_initialised_and_counted(seed: Seed, make_agent: MakeAgent):
    seed.bridge.info_patch[BAD] = {"live_data": {}, "stored_data": None}
    h = await make_agent(seed.url)
    await h.agent.service.run_cycle()
    s = await h.scrape()
    for account in SEED_ACCOUNTS:
        for reason in ("login_failed", "no_live_data"):
            want = 1 if (account, reason) == (BAD, "no_live_data") else 0
            assert s.value("mt5_account_sync_failures_total", account=account, reason=reason) == want
    assert {r.value for r in REASONS} >= {"login_failed", "no_live_data"}


async def test_terminal_down_behind_a_live_bridge(seed: Seed, make_agent: MakeAgent):
    """Finding 13: stored data for every account is a failed run; last success stays put."""
    h = await make_agent(seed.url)
    assert (await h.agent.service.run_cycle()).result is RunResult.SUCCESS
    s1 = await h.scrape()
    assert s1.value("mt5_bridge_terminal_up", source="bridge") == 1
    for account in SEED_ACCOUNTS:
        seed.bridge.behaviour[account] = "no_live_data"
    assert (await h.agent.service.run_cycle()).result is RunResult.FAILED
    s2 = await h.scrape()
    assert s2.value("mt5_bridge_terminal_up", source="bridge") == 0
    assert s2.value("mt5_bridge_up", source="bridge") == 1
    assert s2.value("mt5_sync_runs_total", result="failed") == 1
    assert s2.value("mt5_sync_runs_total", result="partial") == 0
    assert s2.value("mt5_sync_last_success_timestamp_seconds") == s1.value(
        "mt5_sync_last_success_timestamp_seconds"
    )
    assert s2.value("mt5_sync_last_run_accounts", outcome="stored") == len(SEED_ACCOUNTS)
    assert s2.value("mt5_sync_last_run_accounts", outcome="live") == 0


async def test_terminal_up_absent_before_a_fetch(make_agent: MakeAgent, seed: Seed):
    s = await (await make_agent(seed.url)).scrape()
    assert s.get("mt5_bridge_terminal_up", source="bridge") is None
    assert s.get("mt5_bridge_clock_skew_seconds") is None
    assert s.value("mt5_bridge_clock_skew_total") == 0
    assert s.value("mt5_sync_accounts_pruned_total") == 0
    assert s.value("mt5_bridge_invalid_entries_total", endpoint="summary") == 0
    assert s.value("mt5_bridge_invalid_entries_total", endpoint="live") == 0


async def test_clock_skew_is_counted(seed: Seed, make_agent: MakeAgent):
    ahead = (datetime.now(UTC) + timedelta(hours=3)).replace(tzinfo=None).isoformat()
    seed.bridge.live_patch[BAD] = {"timestamp": ahead}
    h = await make_agent(seed.url)
    await h.agent.service.run_cycle()
    s = await h.scrape()
    assert s.value("mt5_bridge_clock_skew_total") == 1
    assert s.value("mt5_bridge_clock_skew_seconds") == pytest.approx(3 * 3600, abs=30)
    assert s.value("mt5_account_sync_failures_total", account=BAD, reason="invalid_payload") == 1
    assert s.get("mt5_account_last_sync_timestamp_seconds", account=BAD) is None  # never trusted


async def test_malformed_entries_are_counted(seed: Seed, make_agent: MakeAgent):
    seed.bridge.summary_extra = [{"account": "²"}, 1.5, None]
    seed.bridge.batch = True
    seed.bridge.batch_extra = [{"account_id": "abc"}]
    h = await make_agent(seed.url)
    assert (await h.agent.service.run_cycle()).result is RunResult.SUCCESS
    s = await h.scrape()
    assert s.value("mt5_bridge_invalid_entries_total", endpoint="summary") == 3
    assert s.value("mt5_bridge_invalid_entries_total", endpoint="live") == 1


async def test_accounts_no_longer_listed_leave_the_metrics(seed: Seed, make_agent: MakeAgent):
    h = await make_agent(seed.url)
    await h.agent.service.run_cycle()
    assert (await h.scrape()).get("mt5_account_balance", account=BAD) is not None
    seed.bridge.accounts.pop(BAD)
    for _ in range(3):
        await h.agent.service.run_cycle()
    s = await h.scrape()
    assert not [k for k in s.samples if ("account", str(BAD)) in k[1]]
    assert s.value("mt5_sync_accounts_pruned_total") == 1
    assert {dict(lbl)["account"] for lbl in s.series("mt5_account_info")} == {
        str(a) for a in SEED_ACCOUNTS if a != BAD
    }


HOSTILE = {
    "balance_400_digits": {"live": {"balance": 10**400}},
    "timestamp_1e20": {"live": {"timestamp": 1e20}},
    "timestamp_year_1": {"live": {"timestamp": "0001-01-01T00:00:00+01:00"}},
    "login_superscript": {"live": {"login": "²"}},
    "leverage_2_64": {"live": {"leverage": 2**64}},
    "summary_superscript": {"summary": [{"account": "²"}]},
    "summary_beyond_int64": {"summary": [{"account": 2**63}]},
    "deep_info": {"raw_info": b'{"live_data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"},
}


@pytest.mark.parametrize("case", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_manual_trigger_never_answers_5xx(seed: Seed, make_agent: MakeAgent, case):
    """Finding 1 through the API: the manual trigger answers 200 with the run, the good accounts are
    written, and the per-account counter of the bad one moves."""
    if "live" in case:
        seed.bridge.live_patch[BAD] = case["live"]
    if "summary" in case:
        seed.bridge.summary_extra = case["summary"]
    if "raw_info" in case:
        seed.bridge.raw_info[BAD] = case["raw_info"]
    h = await make_agent(seed.url, admin_token=ADMIN, metrics_token=ADMIN)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with h.session.post(h.url("/api/admin/sync-from-vps"), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["status"] in ("success", "partial")
    assert body["accounts_synced"] >= len(SEED_ACCOUNTS) - 1
    s = await h.scrape(Authorization=f"Bearer {ADMIN}")
    if "summary" in case:
        assert s.value("mt5_bridge_invalid_entries_total", endpoint="summary") == 1
    else:
        assert s.value("mt5_account_sync_failures_total", account=BAD, reason="invalid_payload") == 1
        assert s.value("mt5_account_consecutive_failures", account=BAD) == 1
    for account in SEED_ACCOUNTS:
        if account != BAD:
            assert s.value("mt5_account_balance", account=account) == SEED_ACCOUNTS[account]["balance"]
