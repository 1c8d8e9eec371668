"""GET /metrics of a real agent app (build_agent + create_app, served on 127.0.0.1) at several account
counts: median and p99 time, size, series; and the time the handler holds the event loop.

State (`--populate`):
- `state` (default): the fleet (Fleet.replace) is filled directly with a realistic mix per 100 accounts:
  90 live (ages spread over 0-290 s, all values including margin level), 5 on the VPS_STORED fallback
  (ages in the acceptable/degraded bands), 3 failing (ages past critical, failure counts on 2 reasons,
  2-5 consecutive failures), 2 never synced (no values). Every code path of the collector is used. The
  98 with values have broker margin levels (percent mode: the risk collector's two level series).
- `cycle`: one real sync cycle against the simulated bridge (in a subprocess): every account live
  and fresh.

The client is a separate process (bench/_fetch.py, one kept-alive connection), so its CPU is not the
agent's. Two request kinds: `text` (text/plain 0.0.4, no compression) and `prometheus` (the Accept
header Prometheus sends, OpenMetrics first, and Accept-Encoding: gzip, as a real scrape). The first
scrape of each kind follows the state fill, so it is also the first after a "cycle" (p99 shows it).
`handler_*` time the handler called in-process without compression (what it holds the event loop);
`handler_openmetrics_first_after_cycle` is the scrape right after a cycle changed the state (the
per-account text that only a cycle changes is rendered again then, and cached until the next one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common
from _common import median, note, percentile, r
from aiohttp import web

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
KINDS: dict[str, list[str]] = {
    "text": ["Accept:text/plain;version=0.0.4", "Accept-Encoding:identity"],
    "prometheus": [f"Accept:{PROMETHEUS_ACCEPT}", "Accept-Encoding:gzip"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/scrape.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--accounts",
        default="1000,10000",
        help="comma-separated account counts to measure (default %(default)s)",
    )
    p.add_argument("--samples", type=int, default=30, help="scrapes per size and kind (default %(default)s)")
    p.add_argument("--populate", choices=("state", "cycle"), default="state")
    p.add_argument(
        "--no-broker-levels",
        dest="broker_levels",
        action="store_false",
        help="state: no broker margin levels (to measure what their two series per account cost)",
    )
    p.add_argument("--timeout", type=float, default=1200.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    args.sizes = [int(x) for x in str(args.accounts).split(",") if x.strip()]
    if not args.sizes or min(args.sizes) < 1 or args.samples < 1:
        p.error("--accounts needs positive counts and --samples >= 1")
    return args


def fill_state(service: Any, n: int, now: datetime) -> None:
    """The `state` mix (see the module doc), deterministic, published as one fleet version."""
    from types import MappingProxyType

    from agent.domain.accounts import AccountValues, DataSource, Reason
    from agent.domain.runs import RunResult, SyncRun
    from agent.sync.fleet import AccountState

    fleet = service.fleet
    failures: Counter[tuple[int, Reason]] = Counter()
    states = []
    for i in range(n):
        account = _common.FIRST_LOGIN + i
        kind = i % 100
        balance = 10_000.0 + 37.25 * i
        values = AccountValues(
            balance=balance,
            equity=balance + 12.5,
            profit=12.5,
            margin=120.0 + i % 7,
            margin_free=balance - 107.5,
            margin_level=round((balance + 12.5) / 120.0 * 100, 2),
            leverage=100,
            currency="USD",
            trade_allowed=True,
        )
        a: dict[str, Any] = dict(
            account=account, name=f"Bench account {i + 1}", server="MEXAtlantic-Real", last_attempt_at=now
        )
        if kind < 90:
            live_at = now - timedelta(seconds=(i * 7.3) % 290)
            a.update(values=values, data_source=DataSource.LIVE.value, live_data_at=live_at)
            a.update(updated_at=live_at, last_live_at=live_at)
        elif kind < 95:
            live_at = now - timedelta(seconds=300 + (i * 11) % 590)
            a.update(values=values, data_source=DataSource.STORED.value, live_data_at=live_at)
            a.update(updated_at=now, last_live_at=live_at)
        elif kind < 98:
            live_at = now - timedelta(seconds=900 + i % 3600)
            a.update(values=values, data_source=DataSource.LIVE.value, live_data_at=live_at)
            a.update(updated_at=live_at, last_live_at=live_at)
            a.update(consecutive_failures=2 + i % 4, last_reason=Reason.TIMEOUT, last_failure_at=now)
            failures[(account, Reason.TIMEOUT)] += 1 + i % 5
            failures[(account, Reason.CONNECTION)] += 1
        else:
            a.update(consecutive_failures=1, last_reason=Reason.NOT_FOUND, name=None)
            failures[(account, Reason.NOT_FOUND)] += 1
        states.append(AccountState(**a, has_sync_state=True))
    fleet.replace(states, failures)
    run = SyncRun(run_id="bench", started_at=now, finished_at=now, duration_seconds=1.0)
    run.result, run.accounts_total, run.synced_live = RunResult.PARTIAL, n, n * 90 // 100
    fleet.update_status(
        runs=MappingProxyType(Counter({RunResult.PARTIAL: 1})),
        last_run=run,
        last_success_at=now,
        bridge_up=True,
        store_up=True,
    )
    fleet.loaded = True


def broker_levels(n: int) -> dict[int, Any]:
    """The broker's margin levels as a bridge source would hold them: every account with values, in
    percent mode (what costs most: two series each), from four broker configurations."""
    from agent.domain.accounts import BrokerLevels, StopOutMode

    configs = [
        BrokerLevels(StopOutMode.PERCENT, c, s) for c, s in ((100.0, 50.0), (120.0, 60.0), (100.0, 30.0))
    ]
    return {_common.FIRST_LOGIN + i: configs[i % 3] for i in range(n) if i % 100 < 98}


async def fetch(url: str, count: int, headers: list[str], budget: float) -> dict[str, Any]:
    cmd = [sys.executable, str(_common.BENCH_DIR / "_fetch.py"), url, "--count", str(count)]
    cmd += ["--budget", str(budget)]
    for h in headers:
        cmd += ["--header", h]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), budget + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"_fetch.py exited {proc.returncode}")
    return json.loads(out)


async def handler_time(
    app: web.Application, headers: dict[str, str], n: int, *, bump: Any = None
) -> dict[str, float | None]:
    """The /metrics handler called directly: how long it holds the event loop (wall and CPU; with
    `headers` asking for no compression, the whole handler is on the loop). `bump` is called before
    each call (e.g. to make it the first scrape after a cycle)."""
    from aiohttp.test_utils import make_mocked_request

    handler = next(
        route.handler
        for resource in app.router.resources()
        if resource.canonical == "/metrics"
        for route in resource
        if route.method == "GET"
    )
    walls, cpus = [], []
    for _ in range(n):
        if bump is not None:
            bump()
        req = make_mocked_request("GET", "/metrics", headers=headers, app=app)
        c0, t0 = time.thread_time(), time.perf_counter()
        await handler(req)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
    return {"median_ms": r(median(walls) * 1000, 2), "cpu_median_ms": r(median(cpus) * 1000, 2)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.app import build_agent, close_agent
    from agent.config import load_settings

    for name in [n for n in os.environ if n.startswith(("MT5_AGENT_", "OTEL_"))]:
        del os.environ[name]
    out: dict[str, Any] = {
        "bench": "scrape",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "accounts": args.sizes,
            "samples": args.samples,
            "populate": args.populate,
            "broker_levels": args.broker_levels,
        },
        "sizes": {},
    }
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mt5-bench-") as tmp:
            bridge_ctx = (
                _common.bridge_process(n, terminals=max(1, n // 100)) if args.populate == "cycle" else None
            )
            bridge = bridge_ctx.__enter__() if bridge_ctx else None
            try:
                settings = load_settings(
                    bridge_url=bridge.url if bridge else "http://127.0.0.1:9",
                    store_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
                    log_level="WARNING",
                )
                agent = build_agent(settings)
                from agent.app import create_app

                app = create_app(agent, schedule=False)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                try:
                    if bridge is not None:
                        note(f"{n} accounts: one real sync cycle")
                        run_ = await agent.service.run_cycle(trigger="bench")
                        if run_.synced_live != n:
                            raise RuntimeError(run_.summary_line())
                    else:
                        if agent.risk is not None and args.broker_levels:
                            agent.risk.levels_from(broker_levels(n))
                        fill_state(agent.service, n, datetime.now(UTC))
                    entry: dict[str, Any] = {}
                    for kind, headers in KINDS.items():
                        note(f"{n} accounts: {args.samples} x GET /metrics ({kind})")
                        res = await fetch(f"http://127.0.0.1:{port}/metrics", args.samples, headers, 600)
                        if set(res["statuses"]) != {200}:
                            raise RuntimeError(f"/metrics answered {set(res['statuses'])}")
                        t = res["times"]
                        entry[kind] = {
                            "median_ms": r(median(t) * 1000, 1),
                            "p99_ms": r(percentile(t, 99) * 1000, 1),  # type: ignore[operator]
                            "samples": len(t),
                            "bytes": res["bytes"][-1],
                            "wire_bytes": res["wire_bytes"][-1],
                        }
                    hdrs = dict(h.split(":", 1) for h in KINDS["text"])
                    entry["handler_text"] = await handler_time(app, hdrs, min(args.samples, 10))
                    hdrs = {"Accept": PROMETHEUS_ACCEPT}
                    entry["handler_openmetrics"] = await handler_time(app, hdrs, min(args.samples, 10))

                    def new_version(fleet: Any = agent.fleet) -> None:
                        snap = fleet.snapshot()  # a new version with the same accounts, as a cycle gives
                        fleet.replace(snap.accounts.values(), snap.failures)

                    entry["handler_openmetrics_first_after_cycle"] = await handler_time(
                        app, hdrs, min(args.samples, 5), bump=new_version
                    )
                    entry["series"] = await count_series(port)
                    out["sizes"][str(n)] = entry
                finally:
                    await runner.cleanup()
                    await close_agent(agent)
            finally:
                if bridge_ctx is not None:
                    bridge_ctx.__exit__(None, None, None)
    out["agent_process_peak_rss_mb"] = round(_common.peak_rss_self_mb(), 1)
    return out


async def count_series(port: int) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": "text/plain"}) as resp,
    ):
        text = await resp.text()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _common.emit(asyncio.run(asyncio.wait_for(run(args), args.timeout)))


if __name__ == "__main__":
    main()
