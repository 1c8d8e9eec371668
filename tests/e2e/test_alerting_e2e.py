"""The alerting path end to end, on loopback with the real binaries (DESIGN.md sections 6, 7 and 9).

simulated bridge (one account's login fails) <- agent (5 s schedule, bridge probed every 0.25 s, /metrics
behind a token; freshness 8/16/24 s) <- Prometheus (rendered rules, scrapes with the token, 1 s scrape and
evaluation) -> Alertmanager (alerts/alertmanager.yml, receiver URLs and timings replaced) -> the stack's
webhook receiver (deploy/webhook_receiver.py).

1. One account fails, the others are fine: that account is paged (MT5AccountDataCritical, never synced)
   and ticketed (MT5AccountSyncFailing) through the receiver, nothing else alerts.
2. Stop the bridge: MT5BridgeDown fires before any healthy account's freshness alert even goes pending
   (issue 10 finding 9: the agent's probe, not the sync schedule, drives mt5_bridge_up); every per-account
   alert then arrives in Alertmanager already inhibited, and the receiver never gets one of them.
3. Start the bridge again on the same port: the accounts' alerts resolve at their next sync while
   MT5BridgeDown is still held (keep_firing_for), so none of them is ever notified; then BridgeDown
   resolves and its resolved notification is delivered.
4. Stop the agent: MT5AgentDown fires after its `for:` and pages; MT5AgentMetricsAbsent is inhibited by it.

The measured times are printed (`pytest -rP` or `-s` shows them) next to the bounds they are checked
against.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts import render
from tests.e2e.stack import (
    ALERTMANAGER_YML,
    EVAL_S,
    GROUP_WAIT_S,
    MARGIN_S,
    PROBE_S,
    SCHEDULE_S,
    SCRAPE_S,
    THRESHOLDS,
    TIMINGS,
    WEBHOOK_S,
    Stack,
    Webhook,
    alertmanager_config,
    seconds,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FAULTY = "891234"  # one of the simulator's 7 demo accounts: its terminal login fails
DEGRADED = "MT5AccountDataDegraded"
CRITICAL = "MT5AccountDataCritical"
SYNC_FAILING = "MT5AccountSyncFailing"
BRIDGE_DOWN = "MT5BridgeDown"
AGENT_DOWN = "MT5AgentDown"
METRICS_ABSENT = "MT5AgentMetricsAbsent"
PER_ACCOUNT = (DEGRADED, CRITICAL, SYNC_FAILING)

# From the bridge's SIGTERM: the agent's next probe sees it, the next scrape carries it, the rule turns
# pending at the next evaluation and fires `for:` later (one more evaluation), Prometheus sends it.
BRIDGE_DOWN_BOUND_S = PROBE_S + SCRAPE_S + 2 * EVAL_S + seconds(TIMINGS.bridge_down) + MARGIN_S
# The earliest a healthy account can go pending degraded: its last live data is at most one schedule
# older than the stop (the bridge died just before a sync).
DEGRADED_EARLIEST_S = THRESHOLDS.degraded_after - SCHEDULE_S
# Every healthy account critical (in Alertmanager): its last live data is no later than the stop.
CRITICAL_BOUND_S = THRESHOLDS.critical_after + seconds(TIMINGS.data) + SCRAPE_S + 2 * EVAL_S + MARGIN_S
# From the restarted bridge answering: the next cycle, scrape and evaluation resolve the accounts' alerts;
# BridgeDown resolves after its next probe, scrape and evaluation plus its hold (keep_firing_for).
RESOLVE_BOUND_S = SCHEDULE_S + SCRAPE_S + 2 * EVAL_S + MARGIN_S
BRIDGE_RESOLVE_BOUND_S = PROBE_S + SCRAPE_S + 2 * EVAL_S + seconds(TIMINGS.bridge_down_keep_firing) + MARGIN_S
RESOLVED_PAGED_BOUND_S = BRIDGE_RESOLVE_BOUND_S + GROUP_WAIT_S + WEBHOOK_S
# The failing account: tracked critical_after (the rendered offset), `for:`, group_wait, delivery.
NEVER_SYNCED_PAGED_BOUND_S = THRESHOLDS.critical_after + seconds(TIMINGS.data) + 3 * EVAL_S + SCRAPE_S
NEVER_SYNCED_PAGED_BOUND_S += GROUP_WAIT_S + WEBHOOK_S + MARGIN_S + SCHEDULE_S
# From the agent's SIGTERM: the next scrape fails (up == 0), pending, `for:`, fire.
AGENT_DOWN_BOUND_S = SCRAPE_S + seconds(TIMINGS.agent_down) + 2 * EVAL_S + MARGIN_S
AGENT_DOWN_PAGED_BOUND_S = AGENT_DOWN_BOUND_S + GROUP_WAIT_S + WEBHOOK_S


def _named(alerts: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] in names]


def _report(label: str, measured: float, bound: float) -> None:
    print(f"E2E TIMING {label}: {measured:.1f}s (bound {bound:.1f}s)", flush=True)
    assert measured <= bound, f"{label} took {measured:.1f}s, over the bound of {bound:.1f}s"


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


async def _prometheus_alerts(stack: Stack, *names: str) -> list[dict[str, Any]]:
    """Prometheus' own alerts (pending and firing) with those names."""
    body = await stack.get_json(f"{stack.prometheus_url}/api/v1/alerts")
    return _named(body["data"]["alerts"], *names)


async def _check_for(stack: Stack, name: str, seen_wall: float, not_before: float) -> list[dict[str, Any]]:
    """Prometheus fired `name` only after its `for:`: it went pending no earlier than `not_before` (when
    its condition could first hold) and reached Alertmanager no earlier than pending + `for:`."""
    firing = [a for a in await _prometheus_alerts(stack, name) if a["state"] == "firing"]
    assert firing, f"{name} is in Alertmanager but not firing in Prometheus"
    hold = seconds(_for(stack, name))
    for alert in firing:
        active_at = _epoch(alert["activeAt"])
        assert active_at >= not_before - 0.01, (name, alert["activeAt"], not_before)
        assert seen_wall >= active_at + hold, f"{name} reached Alertmanager before its for: ({hold}s)"
    return firing


def _for(stack: Stack, name: str) -> str:
    [rule] = [r for g in stack.rules_doc["groups"] for r in g["rules"] if r.get("alert") == name]
    return str(rule["for"])


def test_alertmanager_config_is_the_committed_one_with_receivers_and_timings_replaced(
    tmp_path: Path,
) -> None:
    committed = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    webhook = Webhook(url="http://127.0.0.1:1", tokens={"paging": "p", "tickets": "t"})
    derived = alertmanager_config(webhook, tmp_path)
    assert derived["inhibit_rules"] == committed["inhibit_rules"]
    assert derived["route"]["group_by"] == committed["route"]["group_by"]
    assert [(r["receiver"], r["matchers"]) for r in derived["route"]["routes"]] == [
        (r["receiver"], r["matchers"]) for r in committed["route"]["routes"]
    ]
    for receiver in derived["receivers"]:
        [hook] = receiver["webhook_configs"]
        assert hook["url"] == f"http://127.0.0.1:1/{receiver['name']}"
        assert hook["send_resolved"] is True
        token_file = Path(hook["http_config"]["authorization"]["credentials_file"])
        assert token_file.read_text(encoding="utf-8").strip() == webhook.tokens[receiver["name"]]


def test_timings_put_bridge_down_before_any_freshness_alert() -> None:
    """The e2e settings keep the seed's order: BridgeDown fires before a healthy account can even go
    pending degraded, whatever the moment the bridge dies in the sync schedule."""
    assert BRIDGE_DOWN_BOUND_S < DEGRADED_EARLIEST_S, (BRIDGE_DOWN_BOUND_S, DEGRADED_EARLIEST_S)
    assert PROBE_S * 10 < SCHEDULE_S, "the probe must be much shorter than the sync interval"
    # and holds it after recovery until the accounts' next sync was scraped and evaluated
    hold = seconds(TIMINGS.bridge_down_keep_firing)
    assert hold + PROBE_S > SCHEDULE_S + SCRAPE_S + 2 * EVAL_S + GROUP_WAIT_S


async def test_one_failing_account_is_paged_bridge_outage_pages_once_agent_down_pages(
    e2e_stack: Stack,
) -> None:
    stack = e2e_stack
    stack.require_tools(alertmanager=True)
    webhook = await stack.start_webhook_receiver()
    await stack.start_alertmanager(webhook)
    bridge = await stack.start_bridge(f"{FAULTY}=login_failed")
    accounts = await stack.bridge_accounts()
    assert len(accounts) == 7 and FAULTY in accounts, accounts
    healthy = accounts - {FAULTY}
    agent = await stack.start_agent()
    instance = f"127.0.0.1:{stack.agent_port}"

    # /metrics is closed without the token; Prometheus scrapes it with the token from a file.
    async with stack.http.get(f"{stack.agent_url}/metrics") as response:
        assert response.status == 401, await response.text()
    await stack.start_prometheus(TIMINGS, with_alertmanager=True)
    await stack.wait_rules_healthy()

    async def prometheus_knows_alertmanager() -> bool:
        body = await stack.get_json(f"{stack.prometheus_url}/api/v1/alertmanagers")
        urls = [a["url"] for a in body["data"]["activeAlertmanagers"]]
        return any(u.startswith(stack.alertmanager_url) for u in urls)

    await wait_for(prometheus_knows_alertmanager, 15, "Prometheus to discover Alertmanager")

    async def healthy_fresh() -> bool:
        fresh = await stack.query('mt5_account_freshness_state{state="fresh"} == 1')
        return {r["metric"]["account"] for r in fresh} == healthy

    _, took = await wait_for(healthy_fresh, 30, "every healthy account fresh in Prometheus")
    print(
        f"\nE2E {len(healthy)} healthy accounts fresh in Prometheus {took:.1f}s after its rules were healthy"
    )
    [up] = await stack.query(f'up{{job="{render.AGENT_JOB}"}}')
    assert up["value"][1] == "1", "Prometheus does not scrape the agent with its metrics token"
    exported = {
        r["metric"]["state"]: float(r["value"][1]) for r in await stack.query(render.THRESHOLD_METRIC)
    }
    assert exported == {
        "acceptable": THRESHOLDS.acceptable_after,
        "degraded": THRESHOLDS.degraded_after,
        "critical": THRESHOLDS.critical_after,
    }

    # --- 1. one account failing: paged and ticketed, the others untouched ------------------------------
    t_start = time.monotonic()

    async def faulty_paged_and_ticketed() -> bool:
        stack.check_alive()
        pages = await stack.notifications(receiver="paging", alertname=CRITICAL, status="firing")
        tickets = await stack.notifications(receiver="tickets", alertname=SYNC_FAILING, status="firing")
        return any(a["labels"]["account"] == FAULTY for _, a in pages) and any(
            a["labels"]["account"] == FAULTY for _, a in tickets
        )

    await wait_for(faulty_paged_and_ticketed, 2 * NEVER_SYNCED_PAGED_BOUND_S, f"{FAULTY} paged and ticketed")
    _report(
        f"{CRITICAL} (never synced) paged and {SYNC_FAILING} ticketed for {FAULTY}",
        time.monotonic() - t_start,
        NEVER_SYNCED_PAGED_BOUND_S,
    )
    [(_, never)] = [
        (n, a)
        for n, a in await stack.notifications(receiver="paging", alertname=CRITICAL)
        if a["labels"]["account"] == FAULTY
    ]
    assert never["labels"]["live_data"] == "never" and never["labels"]["instance"] == instance
    current = await stack.alerts()
    assert {a["labels"].get("account") for a in current if a["labels"]["alertname"].startswith("MT5")} == {
        FAULTY
    }
    assert await healthy_fresh(), "one failing account made the others stale"

    # --- 2. the bridge goes away: BridgeDown first, every per-account alert inhibited -------------------
    t_stop, t_stop_wall = time.monotonic(), time.time()
    assert await bridge.stop(signal.SIGTERM) == 0, bridge.tail()

    async def bridge_down_active() -> dict[str, Any] | None:
        stack.check_alive("agent", "prometheus", "alertmanager", "webhook-receiver")
        active = [a for a in _named(await stack.alerts(), BRIDGE_DOWN) if a["status"]["state"] == "active"]
        return active[0] if active else None

    bridge_down, _ = await wait_for(bridge_down_active, 2 * BRIDGE_DOWN_BOUND_S, f"{BRIDGE_DOWN} active")
    seen_wall = time.time()
    _report(
        f"{BRIDGE_DOWN} active in Alertmanager after bridge stop",
        time.monotonic() - t_stop,
        BRIDGE_DOWN_BOUND_S,
    )
    [bridge_firing] = await _check_for(stack, BRIDGE_DOWN, seen_wall, t_stop_wall)
    assert bridge_down["labels"] == {
        "alertname": BRIDGE_DOWN,
        "severity": "critical",
        "job": render.AGENT_JOB,
        "instance": instance,
        "source": "bridge",  # the one source MT5_AGENT_BRIDGE_URL means
    }
    early = [a for a in _named(await stack.alerts(), *PER_ACCOUNT) if a["labels"]["account"] in healthy]
    assert early == [], f"freshness alerts reached Alertmanager before {BRIDGE_DOWN}: {early}"

    async def criticals_inhibited() -> list[dict[str, Any]] | None:
        stack.check_alive("agent", "prometheus", "alertmanager", "webhook-receiver")
        current = [a for a in _named(await stack.alerts(), CRITICAL) if a["labels"]["account"] in healthy]
        if {a["labels"]["account"] for a in current} != healthy:
            return None
        return current

    criticals, _ = await wait_for(
        criticals_inhibited, 2 * CRITICAL_BOUND_S, f"{CRITICAL} for every healthy account"
    )
    _report(
        f"{CRITICAL} in Alertmanager for every healthy account", time.monotonic() - t_stop, CRITICAL_BOUND_S
    )
    per_account = _named(await stack.alerts(), *PER_ACCOUNT)
    assert {a["labels"]["account"] for a in per_account if a["labels"]["alertname"] == DEGRADED} >= healthy
    for alert in per_account:
        assert alert["status"]["state"] == "suppressed", alert
        assert bridge_down["fingerprint"] in alert["status"]["inhibitedBy"], alert
    for alert in criticals:
        labels = alert["labels"]
        assert labels["severity"] == "critical" and labels["instance"] == instance
        assert labels["name"] and "live_data" not in labels, labels
        assert alert["annotations"]["summary"] == (
            f"MT5 account {labels['account']} has had no live data for 24s or more"
        )
    # Prometheus' view: BridgeDown was firing before the first healthy account even went pending degraded.
    degraded = [a for a in await _prometheus_alerts(stack, DEGRADED) if a["labels"]["account"] in healthy]
    first_degraded = min(_epoch(a["activeAt"]) for a in degraded)
    bridge_fired = _epoch(bridge_firing["activeAt"]) + seconds(TIMINGS.bridge_down)
    margin = first_degraded - bridge_fired
    print(
        f"E2E {BRIDGE_DOWN} firing {bridge_fired - t_stop_wall:.1f}s after the stop, the first healthy "
        f"{DEGRADED} pending {first_degraded - t_stop_wall:.1f}s after it: {margin:.1f}s of margin"
    )
    assert bridge_fired < first_degraded

    await wait_for(
        lambda: _found(stack.notifications(receiver="paging", alertname=BRIDGE_DOWN, status="firing")),
        GROUP_WAIT_S + WEBHOOK_S + MARGIN_S,
        f"{BRIDGE_DOWN} paged",
    )

    # --- 3. the bridge comes back on the same port ------------------------------------------------
    t_restart = time.monotonic()
    await stack.start_bridge()
    t_bridge_up, t_bridge_up_wall = time.monotonic(), time.time()
    print(f"E2E bridge restarted on port {stack.bridge_port} in {t_bridge_up - t_restart:.1f}s")

    async def accounts_resolved() -> bool:
        stack.check_alive()
        current = await stack.alerts()
        return not [a for a in _named(current, *PER_ACCOUNT) if a["labels"]["account"] in healthy]

    await wait_for(accounts_resolved, 2 * RESOLVE_BOUND_S, "the healthy accounts' alerts to resolve")
    _report(
        "every healthy account's alerts resolved after the bridge answered",
        time.monotonic() - t_bridge_up,
        RESOLVE_BOUND_S,
    )
    assert await healthy_fresh(), "alerts resolved but the healthy accounts are not fresh in Prometheus"
    # ... while BridgeDown is still held, so none of them was ever un-inhibited
    assert _named(await stack.alerts(), BRIDGE_DOWN), f"{BRIDGE_DOWN} resolved before the accounts synced"

    async def bridge_resolved() -> bool:
        stack.check_alive()
        return not _named(await stack.alerts(), BRIDGE_DOWN)

    await wait_for(bridge_resolved, 2 * BRIDGE_RESOLVE_BOUND_S, f"{BRIDGE_DOWN} to resolve")
    _report(f"{BRIDGE_DOWN} resolved after its hold", time.monotonic() - t_bridge_up, BRIDGE_RESOLVE_BOUND_S)

    async def bridge_down_resolved_paged() -> float | None:
        pages = await stack.notifications(receiver="paging", alertname=BRIDGE_DOWN, status="resolved")
        return pages[0][0]["at"] - t_bridge_up_wall if pages else None

    took_resolved, _ = await wait_for(
        bridge_down_resolved_paged, 2 * RESOLVED_PAGED_BOUND_S, f"{BRIDGE_DOWN} resolved notification"
    )
    _report(f"{BRIDGE_DOWN} resolved notification (webhook)", took_resolved, RESOLVED_PAGED_BOUND_S)
    # The outage was paged once, as its cause: no healthy account's alert ever reached a receiver.
    leaked = [
        (n["receiver"], a["labels"]["alertname"], a["labels"]["account"], a["status"])
        for n, a in await stack.notifications()
        if a["labels"].get("account") in healthy
    ]
    assert leaked == [], f"per-account notifications of the bridge outage: {leaked}"
    print(f"E2E {len(webhook.received)} notifications in all, none for the {len(healthy)} healthy accounts")

    # --- 4. the agent goes away ---------------------------------------------------------------------
    t_agent, t_agent_wall = time.monotonic(), time.time()
    assert await agent.stop(signal.SIGTERM) == 0, agent.tail()

    async def agent_down_active() -> dict[str, Any] | None:
        stack.check_alive("prometheus", "alertmanager", "bridge", "webhook-receiver")
        active = [a for a in _named(await stack.alerts(), AGENT_DOWN) if a["status"]["state"] == "active"]
        return active[0] if active else None

    agent_down, _ = await wait_for(agent_down_active, 2 * AGENT_DOWN_BOUND_S, f"{AGENT_DOWN} active")
    seen_wall = time.time()
    _report(
        f"{AGENT_DOWN} active in Alertmanager after agent stop",
        time.monotonic() - t_agent,
        AGENT_DOWN_BOUND_S,
    )
    await _check_for(stack, AGENT_DOWN, seen_wall, t_agent_wall)
    assert agent_down["labels"] == {
        "alertname": AGENT_DOWN,
        "severity": "critical",
        "job": render.AGENT_JOB,
        "instance": instance,
    }

    async def agent_down_paged() -> float | None:
        pages = await stack.notifications(receiver="paging", alertname=AGENT_DOWN, status="firing")
        return pages[0][0]["at"] - t_agent_wall if pages else None

    took_paged, _ = await wait_for(agent_down_paged, 2 * AGENT_DOWN_PAGED_BOUND_S, f"{AGENT_DOWN} paged")
    _report(f"{AGENT_DOWN} paged (webhook)", took_paged, AGENT_DOWN_PAGED_BOUND_S)

    async def metrics_absent_inhibited() -> bool:
        absent = _named(await stack.alerts(), METRICS_ABSENT)
        return len(absent) == 1 and absent[0]["status"]["inhibitedBy"] == [agent_down["fingerprint"]]

    await wait_for(metrics_absent_inhibited, 2 * AGENT_DOWN_BOUND_S, f"{METRICS_ABSENT} inhibited")


async def _found(items: Any) -> bool:
    return bool(await items)
