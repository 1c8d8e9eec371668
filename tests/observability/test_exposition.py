"""The agent's real /metrics output passes `promtool check metrics` and parses as OpenMetrics (what
Prometheus asks for first)."""

from __future__ import annotations

import asyncio
import os
import shutil
import warnings

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from agent.domain.runs import RunResult
from tests.observability.conftest import Harness, MakeAgent, Seed

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HAVE_PROMTOOL = os.path.exists(PROMTOOL)


async def _busy_agent(seed: Seed, make_agent: MakeAgent) -> Harness:
    """Every kind of series present: failures, stored data, margin level, histograms with data."""
    seed.bridge.behaviour[891215] = "http_500"
    seed.bridge.behaviour[886066] = "no_live_data"
    seed.bridge.margin_levels[886557] = 1234.5
    seed.bridge.accounts[886602]["name"] = 'Quote " backslash \\ newline \n label'  # escaping
    h = await make_agent(seed.url)
    assert (await h.agent.service.run_cycle()).result is RunResult.PARTIAL
    return h


async def test_promtool_check_metrics_is_clean(seed: Seed, make_agent: MakeAgent):
    if not HAVE_PROMTOOL:
        if os.environ.get("CI") == "true":
            pytest.fail(f"promtool not found at {PROMTOOL}: CI must have it")
        warnings.warn(f"promtool not found at {PROMTOOL}: metrics lint NOT checked", stacklevel=1)
        pytest.skip(f"promtool not found at {PROMTOOL} (install prometheus' promtool to run this check)")
    h = await _busy_agent(seed, make_agent)
    text = (await h.scrape()).text
    assert "mt5_account_info{" in text and "mt5_bridge_request_duration_seconds_bucket{" in text
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert (proc.returncode, out.decode()) == (0, "")


async def test_openmetrics_negotiation_parses(seed: Seed, make_agent: MakeAgent):
    h = await _busy_agent(seed, make_agent)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with h.session.get(h.url("/metrics"), headers={"Accept": accept}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await resp.text()
    families = {f.name: f for f in parse_openmetrics(text)}  # strict: raises on any format error
    assert families["mt5_account_sync_failures"].type == "counter"
    assert families["mt5_sync_duration_seconds"].type == "histogram"
    names = {s.labels.get("name") for s in families["mt5_account_info"].samples}
    assert 'Quote " backslash \\ newline \n label' in names
