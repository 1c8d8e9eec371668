"""Data age actually observed: `mt5-agent run` (a subprocess, SQLite store, schedule `--interval`)
against the simulated bridge (another subprocess), sampled from outside every `--sample-every`
seconds on average (jittered +-50%, so samples land at every phase of the cycle) for `--duration`
seconds, after the first cycle has finished.

Two views of the same thing: `mt5_account_data_age_seconds` from /metrics (what the alerts use) and
`freshness.age_seconds` from GET /api/v1/accounts (what the frontend shows); every account's age at
every sample goes into the percentiles. An account without an age (never synced live) counts in
`missing`. The seed's design polls every 300 s, so its data is up to ~300 s old by construction.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
import aiohttp
from _common import median, note, percentile, r


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/freshness.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--accounts", type=int, default=100, help="accounts on the bridge (default %(default)s)")
    p.add_argument("--interval", type=float, default=5.0, help="sync schedule, seconds (default %(default)s)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of sampling (default %(default)s)")
    p.add_argument("--sample-every", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--latency-ms", type=float, default=50.0, help="terminal latency per MT5 call")
    p.add_argument("--login-cost-ms", type=float, default=0.0, help="cost of an account switch")
    p.add_argument("--terminals", type=int, default=None, help="terminals (default: 1 per account)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    if args.accounts < 1 or args.interval < 0.1 or args.duration <= 0 or args.sample_every <= 0:
        p.error("--accounts >= 1, --interval >= 0.1, --duration and --sample-every > 0")
    return args


async def get_text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url, headers={"Accept": "text/plain"}) as resp:
        resp.raise_for_status()
        return await resp.text()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "freshness",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "accounts": args.accounts,
            "interval_seconds": args.interval,
            "duration_seconds": args.duration,
            "sample_every_seconds": args.sample_every,
            "latency_ms": args.latency_ms,
            "login_cost_ms": args.login_cost_ms,
            "terminals": args.terminals if args.terminals is not None else args.accounts,
        },
    }
    with (
        tempfile.TemporaryDirectory(prefix="mt5-bench-") as tmp,
        _common.bridge_process(
            args.accounts,
            terminals=args.terminals,
            latency_ms=args.latency_ms,
            login_cost_ms=args.login_cost_ms,
        ) as bridge,
        _common.agent_process(
            {
                "bridge_url": bridge.url,
                "store_url": f"sqlite:///{Path(tmp) / 'agent.db'}",
                "schedule": f"{args.interval:g}s",
                "log_level": "WARNING",
            },
            Path(tmp),
        ) as agent,
    ):
        metric_ages: list[float] = []
        api_ages: list[float] = []
        worst: list[float] = []
        missing = 0
        api_status: set[int] = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            note("waiting for the first cycle")
            deadline = time.monotonic() + max(60.0, 5 * args.interval)
            while True:
                text = await get_text(http, agent.url + "/metrics")
                if (_common.metric_value(text, 'mt5_sync_runs_total{result="success"}') or 0) >= 1:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("no successful cycle")
                await asyncio.sleep(0.2)
            runs0 = sum(
                _common.metric_value(text, f'mt5_sync_runs_total{{result="{x}"}}') or 0
                for x in ("success", "partial", "failed", "skipped")
            )
            cpu0 = _common.cpu_of(agent.pid)
            note(f"sampling for {args.duration:g}s")
            started = time.monotonic()
            samples = 0
            rng = random.Random(42)
            while time.monotonic() - started < args.duration:
                t0 = time.monotonic()
                text = await get_text(http, agent.url + "/metrics")
                ages = _common.data_ages(text)
                missing += args.accounts - len(ages)
                metric_ages.extend(ages.values())
                worst.append(max(ages.values(), default=float("nan")))
                async with http.get(agent.url + "/api/v1/accounts") as resp:
                    api_status.add(resp.status)
                    if resp.status == 200:
                        body = await resp.json()
                        api_ages.extend(
                            a["freshness"]["age_seconds"]
                            for a in body.get("accounts", [])
                            if a.get("freshness", {}).get("age_seconds") is not None
                        )
                samples += 1
                # Jittered, so the samples fall at every phase of the cycle instead of locking to one.
                pause = args.sample_every * rng.uniform(0.5, 1.5)
                await asyncio.sleep(max(0.0, pause - (time.monotonic() - t0)))
            text = await get_text(http, agent.url + "/metrics")
            cpu1 = _common.cpu_of(agent.pid)
        runs1 = sum(
            _common.metric_value(text, f'mt5_sync_runs_total{{result="{x}"}}') or 0
            for x in ("success", "partial", "failed", "skipped")
        )
        dur_sum = _common.metric_value(text, "mt5_sync_duration_seconds_sum") or 0.0
        dur_count = _common.metric_value(text, "mt5_sync_duration_seconds_count") or 0.0
        out.update(
            {
                "samples": samples,
                "data_age_p50_seconds": r(percentile(metric_ages, 50), 3),
                "data_age_p99_seconds": r(percentile(metric_ages, 99), 3),
                "data_age_max_seconds": r(max(metric_ages, default=None), 3),
                "data_age_worst_account_median_seconds": r(median(worst), 3),
                "missing_account_samples": missing,
                "api_age_p50_seconds": r(percentile(api_ages, 50), 3),
                "api_age_p99_seconds": r(percentile(api_ages, 99), 3),
                "api_status": sorted(api_status),
                "cycles_during_sampling": int(runs1 - runs0),
                "sync_duration_mean_seconds": r(dur_sum / dur_count if dur_count else None, 4),
                "agent_cpu_seconds_per_second": r(
                    (cpu1 - cpu0) / args.duration if cpu0 is not None and cpu1 is not None else None, 4
                ),
                **{f"agent_{k}": v for k, v in _common.rss_of_mb(agent.pid).items()},
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _common.emit(asyncio.run(asyncio.wait_for(run(args), args.timeout)))


if __name__ == "__main__":
    main()
