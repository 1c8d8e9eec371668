"""Every Grafana panel query runs in a real Prometheus that has scraped a real agent (DESIGN.md 7), with
the metrics token, as compose does."""

from __future__ import annotations

import math

import pytest

from alerts import render
from dashboards.render import annotation_queries, panel_queries
from tests.e2e.stack import SCRAPE_S, THRESHOLDS, Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

JOB = render.JOB_SELECTOR
# The job selector narrowed by the job and instance variables, set to All.
SEL = f'{JOB}, job=~".*", instance=~".*"'

# Queries that are legitimately empty while every sync succeeds: failures filtered with `> 0`, the
# failed-sync and firing-alert annotations.
EMPTY_WHEN_HEALTHY = ("mt5_account_sync_failures_total", 'result=~"failed|skipped"', "ALERTS{")
# The `[1m]` rate panels need two samples of each series in the window.
MIN_SCRAPES = 3


async def test_every_panel_query_runs_and_key_panels_have_data(e2e_stack: Stack) -> None:
    stack = e2e_stack
    stack.require_tools(alertmanager=False)
    await stack.start_bridge()
    accounts = await stack.bridge_accounts()
    assert len(accounts) == 7, accounts
    await stack.start_agent()
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

    queries = panel_queries(THRESHOLDS)
    assert len(queries) >= 20, queries
    annotations = annotation_queries(THRESHOLDS)
    assert len(annotations) == 2 and annotations[0].startswith("ALERTS{"), annotations
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
        f'max by (account, name, server, currency) (mt5_account_info{{{SEL}, account=~".*", currency=~".*"}})'
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
    with_data = sum(1 for r in results.values() if r)
    print(f"E2E dashboards: {len(queries)} panel queries ran without error, {with_data} returned data")
