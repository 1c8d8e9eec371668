"""The benchmarks (bench/*.py) keep working: each runs as a subprocess at a tiny size (seconds) and
prints one JSON object with the keys BENCHMARKS.md reads. Figures are not checked here; the benches
themselves never run in the test suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.store.mongo_server import require_secantusd

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCRIPTS = ("sync_cycle", "scrape", "api", "freshness")


def run_bench(name: str, *args: str, timeout: float = 180.0) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MT5_AGENT_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"{name} must print exactly one JSON line, got:\n{proc.stdout[-2000:]}"
    result = json.loads(lines[0])
    assert result["bench"] == name
    assert {"date", "machine", "params"} <= set(result)
    assert {"nproc", "cpu_model"} <= set(result["machine"])
    return result


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_the_knobs(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage:"), proc.stderr
    assert "--timeout" in proc.stdout


SYNC_KEYS = {
    "agent_cycle_seconds",
    "agent_cpu_seconds",
    "agent_cold_cycle_seconds",
    "agent_loop_max_block_ms",
    "agent_used_batch",
    "baseline_cycle_seconds",
    "speedup",
    "lower_bound_seconds",
    "efficiency",
}


def test_sync_cycle_sqlite() -> None:
    r = run_bench("sync_cycle", "--accounts", "4", "--latency-ms", "2", "--repeat", "1")
    assert SYNC_KEYS <= set(r)
    assert r["agent_used_batch"] is True and r["agent_cycle_seconds"] > 0 and r["speedup"] > 0


def test_sync_cycle_mongodb() -> None:
    require_secantusd()
    r = run_bench(
        "sync_cycle", "--accounts", "3", "--latency-ms", "1", "--terminals", "2", "--repeat", "1",
        "--store", "mongodb",
    )  # fmt: skip
    assert SYNC_KEYS <= set(r) and r["params"]["store"] == "mongodb"


def test_scrape() -> None:
    r = run_bench("scrape", "--accounts", "10,40", "--samples", "2")
    assert set(r["sizes"]) == {"10", "40"}
    for entry in r["sizes"].values():
        for kind in ("text", "prometheus"):
            assert {"median_ms", "p99_ms", "bytes", "wire_bytes"} <= set(entry[kind])
        assert {"handler_text", "handler_openmetrics", "handler_openmetrics_first_after_cycle"} <= set(entry)
        assert entry["series"] > 0


def test_api() -> None:
    r = run_bench(
        "api", "--accounts", "20", "--terminals", "2", "--latency-ms", "1", "--interval", "0.5",
        "--duration", "1", "--concurrency", "4", "--client", "python", "--scrape-every", "0.5",
    )  # fmt: skip
    assert set(r["endpoints"]) == {"single", "list"}
    for res in r["endpoints"].values():
        assert {"requests_per_second", "p50_ms", "p99_ms", "statuses", "cycles_during_load"} <= set(res)
        assert res["requests"] > 0 and set(res["statuses"]) == {"200"}
    assert r["agent_peak_rss_mb"] > 0


def test_freshness() -> None:
    r = run_bench(
        "freshness", "--accounts", "3", "--interval", "0.5", "--duration", "2", "--sample-every", "0.2",
        "--latency-ms", "1",
    )  # fmt: skip
    assert {"data_age_p50_seconds", "data_age_p99_seconds", "api_age_p99_seconds", "samples"} <= set(r)
    assert r["samples"] > 0 and r["data_age_p99_seconds"] is not None


def test_events() -> None:
    r = run_bench(
        "events", "--accounts", "3", "--intervals", "0.5", "--modes", "batch,single", "--duration", "2",
        "--warmup", "1", "--time-scale", "60", "--pool", "1,0.01", "--pool-interval", "0.1",
    )  # fmt: skip
    assert [(c["interval_s"], c["mode"]) for c in r["cases"]] == [(0.5, "batch"), (0.5, "single")]
    for case in r["cases"]:
        assert {
            "rounds", "agent_cpu_ms_per_round", "agent_cpu_percent_of_core", "events",
            "delay_from_visible_p50_s", "delay_from_visible_p99_s", "delay_from_change_p99_s",
            "truth_changes", "truth_changes_without_event",
        } <= set(case)  # fmt: skip
        assert case["rounds"] > 0
    assert {"predicted_period_s", "achieved_period_p50_s", "polls"} <= set(r["pool"])
    assert r["pool"]["polls"] > 0


def test_stream() -> None:
    r = run_bench("stream", "--clients", "6", "--client-procs", "2", "--events", "3", "--interval", "0.05")
    assert {"fanout_p50_ms", "fanout_p99_ms", "server_fanout_p99_ms", "agent_cpu_ms_per_event"} <= set(r)
    assert r["deliveries"] == r["deliveries_expected"] == 18 and r["events_not_fully_written"] == 0
    assert r["agent_rss_connected_mb"] > 0


def test_analytics() -> None:
    r = run_bench("analytics", "--deals", "2000", "--repeat", "2")
    assert {
        "ledger_build_ms", "cold_answer_ms", "compute_ms", "warm_answer_ms", "incremental_answer_ms",
        "incremental_add_us_per_closed_trade", "store_read_ms", "target_ms",
    } <= set(r)  # fmt: skip
    assert r["deals"] == 2000 and r["trades"] > 0 and r["scores_in_answer"] == 100
