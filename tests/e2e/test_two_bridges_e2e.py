"""Issue 15, must show: two bridges in one agent, one killed.

Real processes on loopback (tests/e2e/stack.py): two simulated bridges, one agent configured with two
`[[sources]]`, Prometheus with the rendered rules, Alertmanager with alerts/alertmanager.yml (receivers and
timings replaced) and the webhook receiver. Bridge vps-b is killed: the accounts of vps-a stay fresh, those
of vps-b turn critical on the freshness schedule, and exactly one page arrives, MT5BridgeDown naming vps-b
(the per-account critical alerts of vps-b's accounts are inhibited by it: they carry `source`).
"""

from __future__ import annotations

import json
import signal
import sys
import time

import pytest

from alerts import render
from tests.e2e.stack import (
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
    clean_env,
    seconds,
    wait_for,
)
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

B_LOGINS = ("9100001", "9100002")
BRIDGE_DOWN_PAGED_BOUND_S = (
    PROBE_S + SCRAPE_S + 2 * EVAL_S + seconds(TIMINGS.bridge_down) + GROUP_WAIT_S + WEBHOOK_S + MARGIN_S
)
# the last live data is at most one schedule old when the bridge dies
CRITICAL_BOUND_S = THRESHOLDS.critical_after + SCRAPE_S + 2 * EVAL_S + MARGIN_S


async def test_two_bridges_one_killed_other_fresh_one_page(e2e_stack: Stack) -> None:
    stack = e2e_stack
    stack.require_tools(alertmanager=True)
    webhook = await stack.start_webhook_receiver()
    await stack.start_alertmanager(webhook)
    await stack.start_bridge()  # vps-a: the simulator's 7 demo accounts
    a_logins = await stack.bridge_accounts()

    accounts_file = stack.tmp / "bridge-b-accounts.json"
    accounts_file.write_text(
        json.dumps(
            {"accounts": [{"login": int(a), "password": f"pw-{a}", "server": "Demo-B"} for a in B_LOGINS]}
        ),
        encoding="utf-8",
    )
    b_port = free_port()
    b_url = f"http://127.0.0.1:{b_port}"
    bridge_b = stack._proc(
        "bridge-b",
        [
            *(sys.executable, "-m", "bridge.cli", "--simulate", "--accounts", str(accounts_file)),
            *("--host", "127.0.0.1", "--port", str(b_port)),
        ],
        clean_env(),
    )
    await bridge_b.start()
    await stack._ready(bridge_b, f"{b_url}/api/mt5/bridge/health")

    config = stack.tmp / "agent.toml"
    config.write_text(
        f"""
[agent]
store_url = "sqlite:///{stack.tmp / "agent.db"}"
schedule = "{SCHEDULE_S:g}s"
probe_interval = {PROBE_S}
metrics_token_file = "{stack.metrics_token_file}"
listen = "127.0.0.1:{stack.agent_port}"
freshness = "{THRESHOLDS}"
health_backoff = 0.05
request_timeout = 2
log_format = "json"

[[sources]]
name = "vps-a"
kind = "bridge"
url = "{stack.bridge_url}"

[[sources]]
name = "vps-b"
kind = "bridge"
url = "{b_url}"
""",
        encoding="utf-8",
    )
    agent = stack._proc(
        "agent", [sys.executable, "-m", "agent.cli", "run", "--config", str(config)], clean_env()
    )
    await agent.start()
    await stack._ready(agent, f"{stack.agent_url}/healthz")
    await stack.start_prometheus(TIMINGS, with_alertmanager=True)
    await stack.wait_rules_healthy()

    async def fresh() -> set[str]:
        rows = await stack.query('mt5_account_freshness_state{state="fresh"} == 1')
        return {r["metric"]["account"] for r in rows}

    everyone = a_logins | set(B_LOGINS)

    async def all_fresh() -> bool:
        return await fresh() == everyone

    await wait_for(all_fresh, 40, "every account of both bridges fresh in Prometheus")
    held = {
        r["metric"]["account"]: r["metric"].get("source")
        for r in await stack.query(f'mt5_account_info{{job="{render.AGENT_JOB}"}}')
    }
    assert held == {**dict.fromkeys(a_logins, "vps-a"), **dict.fromkeys(B_LOGINS, "vps-b")}, held

    # --- vps-b is killed ----------------------------------------------------------------------------
    t_kill = time.monotonic()
    assert await bridge_b.stop(signal.SIGKILL) is not None

    async def bridge_down_paged() -> list[dict[str, object]] | None:
        stack.check_alive("agent", "bridge")
        pages = await stack.notifications(receiver="paging", alertname="MT5BridgeDown", status="firing")
        return [a for _, a in pages] or None

    pages, took = await wait_for(bridge_down_paged, 2 * BRIDGE_DOWN_PAGED_BOUND_S, "MT5BridgeDown paged")
    print(f"E2E TIMING MT5BridgeDown (vps-b) paged: {took:.1f}s (bound {BRIDGE_DOWN_PAGED_BOUND_S:.1f}s)")
    assert took <= BRIDGE_DOWN_PAGED_BOUND_S
    assert [p["labels"]["source"] for p in pages] == ["vps-b"], pages  # type: ignore[index]

    async def b_critical() -> bool:
        rows = await stack.query('mt5_account_freshness_state{state="critical"} == 1')
        return {r["metric"]["account"] for r in rows} == set(B_LOGINS)

    await wait_for(b_critical, 2 * CRITICAL_BOUND_S, "vps-b's accounts critical")
    took = time.monotonic() - t_kill
    print(f"E2E TIMING vps-b's accounts critical: {took:.1f}s (bound {CRITICAL_BOUND_S:.1f}s)")
    assert took <= CRITICAL_BOUND_S
    assert THRESHOLDS.critical_after - SCHEDULE_S - SCRAPE_S <= took  # not before their data is that old
    assert await fresh() == a_logins  # vps-a's accounts stayed fresh throughout the outage

    # vps-b's per-account critical alerts reach Alertmanager, muted by the one source-down page.
    async def criticals_suppressed() -> list[dict[str, object]] | None:
        alerts = [
            a
            for a in await stack.alerts()
            if a["labels"]["alertname"] == "MT5AccountDataCritical" and a["labels"]["account"] in B_LOGINS
        ]
        return alerts if {a["labels"]["account"] for a in alerts} == set(B_LOGINS) else None

    criticals, _ = await wait_for(criticals_suppressed, 2 * CRITICAL_BOUND_S, "vps-b's critical alerts")
    for alert in criticals:
        assert alert["labels"]["source"] == "vps-b" and alert["status"]["state"] == "suppressed", alert  # type: ignore[index]
    pages_now = await stack.notifications(receiver="paging", status="firing")
    assert [(a["labels"]["alertname"], a["labels"].get("source")) for _, a in pages_now] == [
        ("MT5BridgeDown", "vps-b")
    ], pages_now  # exactly one page: the source, never its accounts (nor vps-a's)
    assert await fresh() == a_logins
