"""Every Grafana panel query runs in a real Prometheus that has scraped a real agent (DESIGN.md 7), with
the metrics token, and the bridge's own /metrics (job mt5-bridge), as compose does.

The positions panels need a trade event detected live (not caught up at the agent's start): the simulator's
ground truth (same seed and accounts as the bridge) says when its next change happens, so the test waits for
that change's event, not for luck."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from agent.telemetry.alerting import POSITIONS_STALE_SECONDS
from alerts import render
from bridge.simulated import SimulatedTerminal, demo_accounts
from dashboards import bridge as bridge_dashboard
from dashboards.render import annotation_queries, bridge_panel_queries, panel_queries
from tests.e2e import stack as stack_module
from tests.e2e.stack import SCRAPE_S, THRESHOLDS, Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

JOB = render.JOB_SELECTOR
# The job selector narrowed by the job and instance variables, set to All.
SEL = f'{JOB}, job=~".*", instance=~".*"'

# The bridge's series as its dashboard selects them (the bridge job narrowed by its variables, set to All).
BRIDGE_SEL = f'{bridge_dashboard.BRIDGE_JOB_SELECTOR}, job=~".*", instance=~".*"'

# Queries that are legitimately empty while every sync and poll succeeds: failures filtered with `> 0`,
# the failed-sync and firing-alert annotations.
EMPTY_WHEN_HEALTHY = (
    "mt5_account_sync_failures_total",
    'result=~"failed|skipped"',
    "ALERTS{",
    "mt5_positions_poll_failures_total",
    "mt5_bridge_terminal_call_failures_total",
)
# Seconds from a simulated change to its event seen by Prometheus: poll (1 s), detection, scrape (1 s).
DETECTED_WITHIN_S = 20.0
# The simulator's ground truth is asked this far ahead for the next change (its longest gap is ~3.5 min).
TRUTH_HORIZON_MS = 600_000


def _scrape_the_bridge_too(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> None:
    """Prometheus' config as the stack writes it, plus the bridge's /metrics as deploy/prometheus.yml
    scrapes it (job mt5-bridge; no token: the e2e bridge runs without one, on loopback)."""
    original = stack_module.prometheus_config

    def with_bridge(
        agent_port: int, rules: Path, alertmanager_port: int | None, metrics_token_file: Path
    ) -> dict[str, Any]:
        config = original(agent_port, rules, alertmanager_port, metrics_token_file)
        config["scrape_configs"].append(
            {
                "job_name": bridge_dashboard.BRIDGE_JOB,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{stack.bridge_port}"]}],
            }
        )
        return config

    monkeypatch.setattr(stack_module, "prometheus_config", with_bridge)


def _next_change_ms(after_ms: int) -> int:
    """When the bridge's simulator next changes a position (ground truth, seed 42, the 7 demo accounts)."""
    truth = SimulatedTerminal(demo_accounts())
    changes = [
        c.time_ms
        for login in truth.logins
        for c in truth.ground_truth(login, after_ms, after_ms + TRUTH_HORIZON_MS)
        if c.kind != "balance"
    ]
    assert changes, f"no simulated change within {TRUTH_HORIZON_MS / 1000:.0f} s of {after_ms}"
    return min(changes)


# The `[1m]` rate panels need two samples of each series in the window.
MIN_SCRAPES = 3


async def test_every_panel_query_runs_and_key_panels_have_data(
    e2e_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = e2e_stack
    stack.require_tools(alertmanager=False)
    _scrape_the_bridge_too(monkeypatch, stack)
    await stack.start_bridge()
    accounts = await stack.bridge_accounts()
    assert len(accounts) == 7, accounts
    await stack.start_agent()
    # Changes before the poller's first round are caught up (no detection delay); give it 3 s.
    live_from_ms = int(time.time() * 1000) + 3000
    await stack.start_prometheus(render.AlertTimings(), with_alertmanager=False)
    await stack.wait_rules_healthy()

    async def scraped_enough() -> bool:
        fresh = await stack.query('count(mt5_account_freshness_state{state="fresh"} == 1)')
        scrapes = await stack.query(f'count_over_time(up{{job="{render.AGENT_JOB}"}}[1m])')
        # a sync seen by two scrapes: the rate and success-ratio panels have an increase to show
        synced = await stack.query(f'sum(increase(mt5_sync_runs_total{{{JOB}, result="success"}}[1m])) > 0')
        return (
            bool(fresh and scrapes and synced)
            and int(fresh[0]["value"][1]) == len(accounts)
            and int(scrapes[0]["value"][1]) >= MIN_SCRAPES
        )

    _, took = await wait_for(
        scraped_enough, 30, f"{MIN_SCRAPES} scrapes and a sync between two of them, every account fresh"
    )
    print(f"\nE2E dashboards: every account fresh after {MIN_SCRAPES}+ scrapes and a sync in {took:.1f}s")
    stack.check_alive()

    # A trade event detected live, within the last minute the [1m] rate panels look at.
    change_ms = _next_change_ms(live_from_ms)
    wait_s = max(0.0, change_ms / 1000 - time.time()) + DETECTED_WITHIN_S
    detected = f"sum(increase(mt5_trade_event_detection_delay_seconds_count{{{JOB}}}[1m])) > 0"

    async def detected_live() -> list[dict[str, Any]] | None:
        return await stack.query(detected) or None  # empty: not yet

    _, took = await wait_for(
        detected_live,
        wait_s,
        f"the event of the simulated change at {change_ms} (ms) in the detection delay histogram",
    )
    print(
        f"E2E dashboards: a live trade event in the detection delay histogram after {took:.1f}s "
        f"(the simulated change was due in {wait_s - DETECTED_WITHIN_S:.1f}s)"
    )
    stack.check_alive()
    # The bridge scraped twice at least (its [1m] rates), every terminal up.
    bridge_scrapes = f'count_over_time(up{{job="{bridge_dashboard.BRIDGE_JOB}"}}[1m]) >= {MIN_SCRAPES}'

    async def bridge_scraped() -> list[dict[str, Any]] | None:
        return await stack.query(bridge_scrapes) or None

    await wait_for(bridge_scraped, 10, f"{MIN_SCRAPES} scrapes of the bridge")

    queries = panel_queries(THRESHOLDS)
    assert len(queries) >= 20, queries
    bridge_queries = bridge_panel_queries()
    assert len(bridge_queries) >= 10 and not set(bridge_queries) & set(queries), bridge_queries
    queries += bridge_queries
    annotations = annotation_queries(THRESHOLDS)
    # the agent's dashboards' firing alerts and failed syncs, the bridge dashboard's firing bridge alerts
    assert len(annotations) == 3 and annotations[0].startswith("ALERTS{"), annotations
    assert 'alertname=~"MT5Bridge.*"' in annotations[2], annotations
    queries += annotations
    results = {q: await stack.query(q) for q in queries}  # each asserts status success
    empty = [q for q, r in results.items() if not r and not any(m in q for m in EMPTY_WHEN_HEALTHY)]
    assert not empty, f"panel queries with no data on a healthy stack: {empty}"

    def by_account(q: str) -> dict[str, float]:
        return {r["metric"]["account"]: float(r["value"][1]) for r in results[q]}

    def scalar(q: str) -> float:
        [sample] = results[q]
        return float(sample["value"][1])

    # The freshness stat panels (one count per state) agree with the agent: every account fresh.
    counts = {
        state: scalar(q)
        for q in queries
        for state in ("fresh", "acceptable", "degraded", "critical")
        if q.startswith(f'sum(max by (account) (mt5_account_freshness_state{{state="{state}", {SEL}')
    }
    assert counts == {"fresh": 7, "acceptable": 0, "degraded": 0, "critical": 0}

    # Money panels: every account, each with its currency joined from mt5_account_info.
    [balance_q] = [q for q in queries if q.startswith("max by (account, currency) (mt5_account_balance{")]
    balance = by_account(balance_q)
    assert set(balance) == accounts
    assert all(math.isfinite(v) for v in balance.values()) and any(v > 0 for v in balance.values())
    assert all(r["metric"]["currency"] for r in results[balance_q])
    info_q = (
        "max by (account, name, server, currency, source) "
        f'(mt5_account_info{{{SEL}, account=~".*", currency=~".*"}})'
    )
    info = results[info_q]
    assert {r["metric"]["account"] for r in info} == accounts
    assert all(r["metric"]["name"] and r["metric"]["currency"] for r in info), info
    currencies = {r["metric"]["account"]: r["metric"]["currency"] for r in info}
    assert {r["metric"]["account"]: r["metric"]["currency"] for r in results[balance_q]} == currencies
    # The freshness state timeline: state index 0 (fresh) for every account.
    [timeline_q] = [q for q in queries if q.startswith("max by (account) (\n  mt5_account_freshness_state{")]
    assert by_account(timeline_q) == dict.fromkeys(accounts, 0.0)
    age = by_account(f'max by (account) (mt5_account_data_age_seconds{{{SEL}, account=~".*"}})')
    assert set(age) == accounts
    assert all(v < THRESHOLDS.acceptable_after + SCRAPE_S for v in age.values()), age
    assert scalar(f"min(up{{{SEL}}})") == 1
    assert scalar(f"min(mt5_bridge_up{{{SEL}}})") == 1
    assert scalar(f"min(mt5_store_up{{{SEL}}})") == 1
    assert scalar(render.success_ratio_expr(job_selector=SEL)) == 1.0
    # The table's state column (kept to the accounts of the selected currencies: all of them here).
    [states_q] = [
        q for q in queries if q.startswith("(max by (account, state) (mt5_account_freshness_state{")
    ]
    assert states_q.endswith("and on(account) mt5_account_info{" + SEL + ', account=~".*", currency=~".*"}')
    states = results[states_q]
    thresholds = {
        r["metric"]["state"]: float(r["value"][1])
        for r in results[f"max by (state) (mt5_freshness_threshold_seconds{{{SEL}}})"]
    }
    assert thresholds == {
        "acceptable": THRESHOLDS.acceptable_after,
        "degraded": THRESHOLDS.degraded_after,
        "critical": THRESHOLDS.critical_after,
    }
    assert {(r["metric"]["account"], r["metric"]["state"]) for r in states} == {
        (a, "fresh") for a in accounts
    }
    # Positions and trade events (issue 12), evaluated at one instant so the total equals the accounts' sum.
    positions_sel = f'{SEL}, account=~".*"'
    per_account_q = f"max by (account) (mt5_account_open_positions{{{positions_sel}}})"
    total_q = f"sum(max by (account) (mt5_account_open_positions{{{positions_sel}}}))"
    assert per_account_q in queries and total_q in queries
    at = str(time.time())
    per_account = await stack.get_json(f"{stack.prometheus_url}/api/v1/query", query=per_account_q, time=at)
    total = await stack.get_json(f"{stack.prometheus_url}/api/v1/query", query=total_q, time=at)
    open_by_account = {r["metric"]["account"]: float(r["value"][1]) for r in per_account["data"]["result"]}
    assert set(open_by_account) == accounts
    assert all(v >= 0 and v == int(v) for v in open_by_account.values()), open_by_account
    [total_sample] = total["data"]["result"]
    assert float(total_sample["value"][1]) == sum(open_by_account.values())
    poll_age = by_account(
        f"max by (account) (time() - mt5_account_positions_last_poll_timestamp_seconds{{{positions_sel}}})"
    )
    assert set(poll_age) == accounts
    assert all(0 <= v < POSITIONS_STALE_SECONDS / 10 for v in poll_age.values()), poll_age  # polled at 1 s
    per_minute_q = f"60 * sum by (type) (rate(mt5_trade_events_total{{{SEL}}}[1m]))"
    per_minute = {r["metric"]["type"]: float(r["value"][1]) for r in results[per_minute_q]}
    assert set(per_minute) == {"TRADE_OPENED", "TRADE_UPDATED", "TRADE_CLOSED"}
    assert all(math.isfinite(v) and v >= 0 for v in per_minute.values()) and sum(per_minute.values()) > 0
    delays = {
        q: scalar(
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(mt5_trade_event_detection_delay_seconds_bucket{{{SEL}}}[1m])))"
        )
        for q in ("0.5", "0.95", "0.99")
    }
    assert all(math.isfinite(v) for v in delays.values()), delays
    assert 0 <= delays["0.5"] <= delays["0.95"] <= delays["0.99"] <= 5, delays  # seed anchor: < 2 s at 1 s
    poll_buckets = f"mt5_positions_poll_duration_seconds_bucket{{{SEL}}}"
    poll_p99 = scalar(f"histogram_quantile(0.99, sum by (le) (rate({poll_buckets}[1m])))")
    assert 0 < poll_p99 < 1, poll_p99  # a round of 7 accounts on loopback, well inside the 1 s period
    assert scalar(f"min(mt5_trade_events_available{{{SEL}}})") == 1

    # The bridge dashboard (issue 18): every terminal up, calls and HTTP requests timed, no 5xx.
    terminals = {
        r["metric"]["terminal"]: float(r["value"][1])
        for r in results[f"max by (terminal) (mt5_bridge_terminal_up{{{BRIDGE_SEL}}})"]
    }
    assert terminals == {f"sim-{a}": 1.0 for a in accounts}, terminals
    assert scalar(f"count(max by (terminal) (mt5_bridge_terminal_up{{{BRIDGE_SEL}}}) == 0) or vector(0)") == 0
    assert scalar(f"min(up{{{BRIDGE_SEL}}})") == 1

    def p95(family: str, by: str) -> dict[str, float]:
        q = f"histogram_quantile(0.95, sum by (le{by}) (rate({family}_bucket{{{BRIDGE_SEL}}}[1m])))"
        label = by.removeprefix(", ")
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in results[q]}

    calls = p95("mt5_bridge_terminal_call_duration_seconds", ", function")
    assert {"account_info", "positions_get", "history_deals_get"} <= {
        f for f, v in calls.items() if math.isfinite(v) and v > 0
    }, calls
    assert math.isfinite(p95("mt5_bridge_terminal_lock_wait_seconds", "")[""])
    routes = {
        r for r, v in p95("mt5_bridge_http_request_duration_seconds", ", route").items() if math.isfinite(v)
    }
    assert "/api/mt5/bridge/health" in routes, routes
    count = "mt5_bridge_http_request_duration_seconds_count"
    ratio_q = (
        f'(sum(rate({count}{{{BRIDGE_SEL}, code_class="5xx"}}[1m])) or vector(0))\n/\n'
        f"sum(rate({count}{{{BRIDGE_SEL}}}[1m]))"
    )
    assert scalar(ratio_q) == 0
    with_data = sum(1 for r in results.values() if r)
    print(f"E2E dashboards: {len(queries)} panel queries ran without error, {with_data} returned data")
