"""One sync cycle: the agent against a seed-style baseline, on the same simulated bridge and store.

The bridge (bridge.api over bridge.simulated) runs in its own process on 127.0.0.1, so its CPU is not
counted as the agent's. `--latency-ms` is the simulated terminal's latency per MT5 call (login,
terminal_info, account_info: what `simulated_pool(latency=)` models); `--login-cost-ms` is the extra
cost of switching the terminal to another account.

- agent: `build_agent(settings)` with its normal settings (batch endpoint when advertised, one store
  write per cycle), timed by the cycle's own duration; CPU is this process's user+system time over
  the cycle (the bridge is elsewhere, so that is the agent: event loop, HTTP client, store thread).
- baseline: what the seed does (section 1.3): health, summary, then /info for each account one after
  another, then one single-document update per account (SQLite: one UPDATE, committed, each).
- lower bound: what the bridge cannot avoid. Each terminal serves its accounts one at a time; a read is
  terminal_info + account_info (2 calls), plus a login (1 call + login cost) when the terminal has to
  switch account, which it does for every read when it serves more than one account. Terminals work in
  parallel, so the bound is max over terminals of that serial work, plus three loopback round trips
  that cannot overlap (health, then summary, then the data request). efficiency = bound / agent cycle.

One warm-up agent cycle (it also logs each terminal in and creates the documents) is reported as
`agent_cold_*`; then `--repeat` rounds of (agent cycle, baseline cycle); medians are reported. A last
agent cycle runs under an event-loop watcher (a task sleeping 2 ms and recording its lateness):
`agent_loop_max_block_ms` is the longest the loop was held (API requests wait that long).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
import aiohttp
from _common import cpu_self, median, note, r

SEED_FIELDS = ("balance", "equity", "profit", "margin", "margin_free", "margin_level", "leverage", "currency")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/sync_cycle.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--accounts", type=int, default=100, help="accounts on the bridge (default %(default)s)")
    p.add_argument(
        "--latency-ms", type=float, default=50.0, help="terminal latency per MT5 call (default %(default)s)"
    )
    p.add_argument(
        "--login-cost-ms", type=float, default=0.0, help="cost of an account switch (default %(default)s)"
    )
    p.add_argument(
        "--terminals", type=int, default=None, help="terminals, accounts round-robin (default: 1 per account)"
    )
    p.add_argument("--store", choices=("sqlite", "mongodb"), default="sqlite")
    p.add_argument("--repeat", type=int, default=3, help="measured agent cycles (default %(default)s)")
    p.add_argument(
        "--baseline-repeat", type=int, default=None, help="measured baseline cycles (default: --repeat)"
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the seed-style baseline")
    p.add_argument(
        "--trading",
        action="store_true",
        help="simulated accounts trade (realistic values, but ~0.7 ms of bridge CPU per read)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    if args.accounts < 1 or args.repeat < 1:
        p.error("--accounts and --repeat must be >= 1")
    if args.terminals is not None and args.terminals < 1:
        p.error("--terminals must be >= 1")
    return args


# -- stores ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def store_target(kind: str, workdir: Path) -> AsyncIterator[dict[str, Any]]:
    """`{"url": MT5_AGENT_STORE_URL, ...}` for a fresh store; MongoDB is a real SecantusDB server."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        yield {"url": f"sqlite:///{path}", "path": path}
        return
    from tests.store.mongo_server import MongoServer, find_secantusd

    exe = find_secantusd()
    if exe is None:
        raise SystemExit("bench/sync_cycle.py: secantusd-py not found (pip install -e '.[dev]')")
    server = MongoServer(exe, workdir / "mongo")
    await asyncio.to_thread(server.start)
    assert server.proc is not None
    name = f"SecantusDB {importlib.metadata.version('SecantusDB')}"  # every Mongo figure names its server
    try:
        yield {"url": server.url, "database": "bench", "pid": server.proc.pid, "name": name}
    finally:
        await asyncio.to_thread(server.stop)


def seed_set(live: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The fields the seed's sync writes from one live_data (DESIGN.md section 5)."""
    doc = {f: live[f] for f in SEED_FIELDS if live.get(f) is not None}
    if isinstance(live.get("trade_allowed"), bool):
        doc["trade_allowed"] = live["trade_allowed"]
    doc.update(
        updated_at=now,
        synced_from_vps=True,
        vps_sync_timestamp=now,
        data_source="VPS_LIVE_MT5",
        live_data_at=datetime.fromisoformat(live["timestamp"].replace("Z", "+00:00")),
    )
    return doc


class SeedWriter:
    """One single-document update per account, awaited one after another (the seed's Motor calls)."""

    def __init__(self, kind: str, target: dict[str, Any]) -> None:
        self.kind = kind
        self.target = target
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._client: Any = None

    async def open(self) -> None:
        if self.kind == "sqlite":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="seed-sqlite")

            def connect() -> None:
                conn = sqlite3.connect(self.target["path"], isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # as the agent's store
                self._conn = conn

            await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        else:
            from pymongo import AsyncMongoClient

            self._client = AsyncMongoClient(self.target["url"], tz_aware=True, tzinfo=UTC)

    async def update(self, account: int, fields: dict[str, Any]) -> None:
        if self.kind == "sqlite":
            from agent.store.sqlite.encoding import dumps as _dumps

            patch = _dumps(fields)

            def one() -> None:
                assert self._conn is not None
                # Autocommit connection: the statement is its own committed transaction.
                self._conn.execute(
                    "UPDATE mt5_accounts SET doc = json_patch(doc, ?) WHERE account = ?", (patch, account)
                )

            await asyncio.get_running_loop().run_in_executor(self._executor, one)
        else:
            coll = self._client[self.target["database"]]["mt5_accounts"]
            await coll.update_one({"account": account}, {"$set": fields}, upsert=True)

    async def close(self) -> None:
        if self._executor is not None:
            conn = self._conn
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._executor.shutdown(wait=True)
        if self._client is not None:
            await self._client.close()


async def seed_cycle(url: str, writer: SeedWriter) -> dict[str, Any]:
    """The seed's cycle, sequential from end to end."""
    timeout = aiohttp.ClientTimeout(total=30)
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def get(path: str) -> Any:
            async with http.get(url + path) as resp:
                resp.raise_for_status()
                return await resp.json()

        health = await get("/api/mt5/bridge/health")
        assert health["status"] in ("healthy", "degraded"), health
        summary = await get("/api/mt5/accounts/summary")
        lives: list[tuple[int, dict[str, Any]]] = []
        for item in summary["accounts"]:
            body = await get(f"/api/mt5/account/{item['account']}/info")
            if body.get("live_data"):
                lives.append((int(item["account"]), body["live_data"]))
    now = datetime.now(UTC)
    for account, live in lives:
        await writer.update(account, seed_set(live, now))
    return {"seconds": time.perf_counter() - started, "synced": len(lives), "total": len(summary["accounts"])}


# -- measuring ---------------------------------------------------------------------------------------


async def timed(fn: Callable[[], Awaitable[Any]], bridge_pid: int) -> tuple[Any, float, float, float]:
    """(result, wall seconds, this process's CPU seconds, the bridge's CPU seconds)."""
    b0, c0, t0 = _common.cpu_of(bridge_pid), cpu_self(), time.perf_counter()
    out = await fn()
    t1, c1, b1 = time.perf_counter(), cpu_self(), _common.cpu_of(bridge_pid)
    return out, t1 - t0, c1 - c0, (b1 - b0) if b0 is not None and b1 is not None else float("nan")


async def round_trip(url: str, n: int = 30) -> float:
    """Median time of GET health on a kept-alive connection: one loopback request through the bridge."""
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            t0 = time.perf_counter()
            async with http.get(url + "/api/mt5/bridge/health") as resp:
                await resp.read()
            times.append(time.perf_counter() - t0)
    return median(times[5:]) or 0.0


def lower_bound(args: argparse.Namespace, rtt: float) -> dict[str, Any]:
    per_terminal = _common.accounts_per_terminal(args.accounts, args.terminals)
    latency, login = args.latency_ms / 1000, args.login_cost_ms / 1000
    switches = per_terminal > 1  # a single-account terminal stays logged in between cycles
    per_read = 2 * latency + ((latency + login) if switches else 0.0)
    terminal_work = per_terminal * per_read
    return {
        "seconds": terminal_work + 3 * rtt,
        "accounts_per_terminal_max": per_terminal,
        "terminal_calls_per_read": 3 if switches else 2,
        "serial_terminal_seconds": terminal_work,
        "round_trip_seconds": rtt,
        "round_trips": 3,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.app import build_agent, close_agent
    from agent.config import load_settings
    from agent.domain.runs import RunResult

    for name in [n for n in os.environ if n.startswith(("MT5_AGENT_", "OTEL_"))]:
        del os.environ[name]
    out: dict[str, Any] = {
        "bench": "sync_cycle",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "accounts": args.accounts,
            "latency_ms": args.latency_ms,
            "login_cost_ms": args.login_cost_ms,
            "terminals": args.terminals if args.terminals is not None else args.accounts,
            "store": args.store,
            "repeat": args.repeat,
            "trading": args.trading,
        },
    }
    note(f"starting bridge with {args.accounts} accounts")
    with (
        tempfile.TemporaryDirectory(prefix="mt5-bench-") as tmp,
        _common.bridge_process(
            args.accounts,
            terminals=args.terminals,
            latency_ms=args.latency_ms,
            login_cost_ms=args.login_cost_ms,
            trading=args.trading,
        ) as bridge,
    ):
        async with store_target(args.store, Path(tmp)) as target:
            target_name = target.get("name", f"SQLite {sqlite3.sqlite_version}")
            settings = load_settings(
                bridge_url=bridge.url,
                store_url=target["url"],
                mongo_database=target.get("database", "fidus_production"),
                log_level="WARNING",
            )
            agent = build_agent(settings)
            try:
                assert await agent.service.ensure_ready(), "store did not open"
                rtt = await round_trip(bridge.url)
                monitor = _common.LoopMonitor()

                async def agent_cycle() -> Any:
                    run = await agent.service.run_cycle(trigger="bench")
                    if run.result is not RunResult.SUCCESS or run.synced_live != args.accounts:
                        raise RuntimeError(f"agent cycle did not sync every account: {run.summary_line()}")
                    return run

                note("agent warm-up cycle")
                cold, _, cold_cpu, _ = await timed(agent_cycle, bridge.pid)
                out["agent_cold_cycle_seconds"] = r(cold.duration_seconds)
                out["agent_cold_cpu_seconds"] = r(cold_cpu)

                writer = SeedWriter(args.store, target)
                await writer.open()
                walls, cpus, bridge_cpus, runs = [], [], [], []
                store_cpus: list[float] = []  # the store server's own process (MongoDB only)
                base_walls, base_cpus = [], []
                n_base = 0 if args.no_baseline else (args.baseline_repeat or args.repeat)
                try:
                    for i in range(max(args.repeat, n_base)):
                        if i < args.repeat:
                            s0 = _common.cpu_of(target["pid"]) if "pid" in target else None
                            run, _, cpu, bcpu = await timed(agent_cycle, bridge.pid)
                            if s0 is not None and (s1 := _common.cpu_of(target["pid"])) is not None:
                                store_cpus.append(s1 - s0)
                            runs.append(run)
                            walls.append(run.duration_seconds)
                            cpus.append(cpu)
                            bridge_cpus.append(bcpu)
                            note(
                                f"agent cycle {i + 1}: {run.duration_seconds:.3f}s, cpu {cpu:.3f}s, "
                                f"bridge cpu {bcpu:.2f}s"
                            )
                        if i < n_base:
                            res, _, bcpu_, _ = await timed(lambda: seed_cycle(bridge.url, writer), bridge.pid)
                            if res["synced"] != args.accounts:
                                raise RuntimeError(f"baseline synced {res['synced']}/{args.accounts}")
                            base_walls.append(res["seconds"])
                            base_cpus.append(bcpu_)
                            note(f"baseline cycle {i + 1}: {res['seconds']:.3f}s")
                finally:
                    await writer.close()
                # One more warm cycle, watched: how long the event loop was held at a time. Apart from
                # the measured ones, since the watcher's own wake-ups (every 2 ms) cost CPU.
                monitor.start()
                await agent_cycle()
                await monitor.stop()
            finally:
                await close_agent(agent)

    bound = lower_bound(args, rtt)
    agent_s = median(walls)
    out.update(
        {
            "agent_cycle_seconds": r(agent_s),
            "agent_cycle_seconds_all": [r(x) for x in walls],
            "agent_cpu_seconds": r(median(cpus)),
            "agent_cpu_seconds_all": [r(x) for x in cpus],
            "agent_loop_max_block_ms": r(monitor.max_lag * 1000, 1),
            "agent_used_batch": all(x.bridge_batch for x in runs),
            "bridge_cpu_seconds_per_agent_cycle": r(median(bridge_cpus)),
            "bridge_cpu_seconds_all": [r(x) for x in bridge_cpus],
            "store": target_name,
            "store_server_cpu_seconds_per_agent_cycle": r(median(store_cpus)) if store_cpus else None,
            "baseline_cycle_seconds": r(median(base_walls)),
            "baseline_cycle_seconds_all": [r(x) for x in base_walls],
            "baseline_cpu_seconds": r(median(base_cpus)),
            "speedup": r(median(base_walls) / agent_s, 1) if base_walls and agent_s else None,
            "lower_bound_seconds": r(bound["seconds"]),
            "lower_bound": {k: r(v) if isinstance(v, float) else v for k, v in bound.items()},
            "efficiency": r(bound["seconds"] / agent_s, 3) if agent_s else None,
            "agent_process_peak_rss_mb": round(_common.peak_rss_self_mb(), 1),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],  # the machine is shared
        }
    )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _common.emit(asyncio.run(asyncio.wait_for(run(args), args.timeout)))


if __name__ == "__main__":
    main()
