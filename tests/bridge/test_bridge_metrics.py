"""The bridge's own /metrics, scraped from a real aiohttp server over a simulated pool: MT5 call
durations by function, lock waits, failures by reason, terminal_up per terminal, HTTP durations by route
template; bearer auth like the other endpoints; `promtool check metrics` clean on the real output."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import FAILURE_REASONS, TERMINAL_FUNCTIONS
from bridge.simulated import simulated_pool
from tests.tools import require_tool

A, B = 886557, 886066
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape_text(br: Any) -> str:
    headers = {"Authorization": f"Bearer {br.token}"} if br.token else {}
    async with br.client.get("/metrics", headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/plain"
        return await r.text()


async def scrape(br: Any) -> Samples:
    text = await _scrape_text(br)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(n for n, _ in samples if name in n)[:20]}"
    return samples[key]


def calls(samples: Samples, function: str) -> float:
    return value(samples, "mt5_bridge_terminal_call_duration_seconds_count", function=function)


def failures(samples: Samples, function: str, reason: str) -> float:
    return value(samples, "mt5_bridge_terminal_call_failures_total", function=function, reason=reason)


async def test_series_exist_from_the_start(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], static=True)
    s = await scrape(br)
    for function in TERMINAL_FUNCTIONS:
        assert calls(s, function) >= 0
        for reason in FAILURE_REASONS[function]:
            assert failures(s, function, reason) == 0, (function, reason)
    assert value(s, "mt5_bridge_build_info", version="0.1.0") == 1
    assert value(s, "mt5_bridge_terminal_lock_wait_seconds_count") >= 0
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{A}") == 1
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{B}") == 1
    assert any(name.startswith("process_") for name, _ in s), "no process_* series"
    assert any(name.startswith("python_") for name, _ in s), "no python_* series"


async def test_reads_add_call_durations_lock_waits_and_http_durations(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True)
    before = await scrape(br)
    for path in ("info", "positions", "trades"):
        status, _ = await br.get(f"/api/mt5/account/{A}/{path}")
        assert status == 200
    after = await scrape(br)
    for function, at_least in (
        ("login", 1),
        ("terminal_info", 3),
        ("account_info", 3),
        ("positions_get", 1),
        ("history_deals_get", 1),
    ):
        assert calls(after, function) - calls(before, function) >= at_least, function
    grew = value(after, "mt5_bridge_terminal_call_duration_seconds_sum", function="account_info")
    assert grew > value(before, "mt5_bridge_terminal_call_duration_seconds_sum", function="account_info")
    waits = "mt5_bridge_terminal_lock_wait_seconds_count"
    assert value(after, waits) - value(before, waits) >= 3
    route = "/api/mt5/account/{id}/info"
    assert value(after, "mt5_bridge_http_request_duration_seconds_count", route=route, code_class="2xx") == 1
    assert failures(after, "account_info", "no_data") == 0


async def test_unknown_paths_share_one_route_label(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True)
    for i in range(3):
        status, _ = await br.get(f"/no/such/path/{i}")
        assert status == 404
    status, _ = await br.get("/api/mt5/account/999/info")
    assert status == 404
    s = await scrape(br)
    http = "mt5_bridge_http_request_duration_seconds_count"
    assert value(s, http, route="unmatched", code_class="4xx") == 3
    assert value(s, http, route="/api/mt5/account/{id}/info", code_class="4xx") == 1
    assert not any("/no/such" in dict(labels).get("route", "") for _, labels in s)


async def test_hang_counts_a_timeout_and_the_lock_wait_behind_it(make_bridge, wait_until) -> None:
    pool = simulated_pool([A, B], terminals=1, faults={A: "hang"}, static=True)
    br = await make_bridge(pool, call_timeout=1.0)
    await wait_until(lambda: all(h.initialized for h in pool.handles), "the start-up probe")
    before = await scrape(br)
    hung = asyncio.create_task(br.get(f"/api/mt5/account/{A}/info"))
    await wait_until(lambda: br.sim(A).hung_calls == 1, "the call on A to hang")
    during = await scrape(br)  # /metrics never waits on a terminal
    assert failures(during, "login", "timeout") == 0 and not hung.done()
    (status_a, body_a), (status_b, _) = await asyncio.gather(hung, br.get(f"/api/mt5/account/{B}/info"))
    assert status_a == 504 and body_a["error"]["code"] == "terminal_timeout"
    assert status_b == 504  # B waited for the lock, then met the stuck terminal
    s = await scrape(br)
    assert failures(s, "login", "timeout") == 1  # the call that hung was A's login
    assert value(s, "mt5_bridge_terminal_up", terminal="sim-1") == 0
    wait_sum = value(s, "mt5_bridge_terminal_lock_wait_seconds_sum") - value(
        before, "mt5_bridge_terminal_lock_wait_seconds_sum"
    )
    assert wait_sum >= 0.5, f"B's wait behind the hung call was not observed: {wait_sum}"
    quick = value(s, "mt5_bridge_terminal_lock_wait_seconds_bucket", le="0.25")
    assert quick < value(s, "mt5_bridge_terminal_lock_wait_seconds_count")
    # the hung call is observed when it returns; then the terminal serves again and is up
    br.pool.set_fault(A, None)
    await wait_until(lambda: all(h.stuck is None or h.stuck.done() for h in pool.handles), "the hang to end")
    status, _ = await br.get(f"/api/mt5/account/{B}/info")
    assert status == 200
    s = await scrape(br)
    assert value(s, "mt5_bridge_terminal_up", terminal="sim-1") == 1
    assert value(s, "mt5_bridge_terminal_call_duration_seconds_sum", function="login") >= 1.0
    assert value(s, "mt5_bridge_terminal_call_duration_seconds_bucket", function="login", le="0.5") < calls(
        s, "login"
    )


async def test_login_failed_counts_and_leaves_the_terminal_up(make_bridge) -> None:
    br = await make_bridge(accounts=[A], faults={A: "login_failed"}, static=True)
    for _ in range(2):
        status, body = await br.get(f"/api/mt5/account/{A}/info")
        assert status == 503 and body["error"]["code"] == "login_failed"
    s = await scrape(br)
    assert failures(s, "login", "login_failed") == 2
    assert failures(s, "login", "disconnected") == 0
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{A}") == 1  # the terminal itself is fine


async def test_terminal_up_flips_with_disconnected(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], static=True)
    assert (await br.get(f"/api/mt5/account/{A}/info"))[0] == 200
    s = await scrape(br)
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{A}") == 1
    br.pool.set_fault(A, "disconnected")
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 502 and body["error"]["code"] == "terminal_unavailable"
    s = await scrape(br)
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{A}") == 0
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{B}") == 1
    assert failures(s, "terminal_info", "disconnected") + failures(s, "login", "disconnected") >= 1
    br.pool.set_fault(A, None)
    assert (await br.get(f"/api/mt5/account/{A}/info"))[0] == 200
    s = await scrape(br)
    assert value(s, "mt5_bridge_terminal_up", terminal=f"sim-{A}") == 1


async def test_no_data_and_wrong_account_are_counted(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], faults={A: "no_live_data", B: "wrong_account"}, static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 200 and body["live_data"] is None
    status, _ = await br.get(f"/api/mt5/account/{B}/info")
    assert status == 502
    s = await scrape(br)
    assert failures(s, "account_info", "no_data") >= 1
    assert failures(s, "account_info", "other") >= 1


async def test_metrics_need_the_token_when_one_is_set(make_bridge, token) -> None:
    br = await make_bridge(accounts=[A], static=True)
    async with br.client.get("/metrics") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    async with br.client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}) as r:
        assert r.status == 401
    async with br.client.get("/metrics", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    async with br.client.get("/api/mt5/bridge/health") as r:
        assert r.status == 200  # health stays open
    s = await scrape(br)
    http = "mt5_bridge_http_request_duration_seconds_count"
    assert value(s, http, route="/metrics", code_class="4xx") == 2


async def test_metrics_open_without_a_token(make_bridge) -> None:
    br = await make_bridge(accounts=[A], token=None, static=True)
    async with br.client.get("/metrics") as r:
        assert r.status == 200


async def test_openmetrics_when_asked(make_bridge, token) -> None:
    br = await make_bridge(accounts=[A], static=True)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/openmetrics-text; version=1.0.0"}
    async with br.client.get("/metrics", headers=headers) as r:
        assert r.status == 200 and r.content_type == "application/openmetrics-text"
        assert (await r.text()).endswith("# EOF\n")


async def test_openapi_describes_metrics(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True)
    _, doc = await br.get("/api/openapi.json", auth=False)
    op = doc["paths"]["/metrics"]["get"]
    assert "security" not in op  # the document's default: bearer
    assert {"200", "401"} <= set(op["responses"])


async def test_promtool_check_metrics_is_clean(make_bridge) -> None:
    promtool = require_tool("promtool")
    br = await make_bridge(accounts=[A, B], faults={B: "login_failed"}, static=True)
    await br.get(f"/api/mt5/account/{A}/info")
    await br.get(f"/api/mt5/account/{B}/info")
    await br.get("/nope")
    text = await _scrape_text(br)
    assert "mt5_bridge_terminal_call_failures_total" in text
    proc = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )
