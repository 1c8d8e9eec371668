"""Shards on one machine (issue 16): sync cycle time and agent CPU per shard at N = 1, 2, 4 shards over one
simulated bridge of `--accounts` accounts and one shared store.

For each N, N worker processes (this script with `--worker`) each build the real agent with
`MT5_AGENT_SHARD=i/N` (positions polling off: the sync cycle is what is measured), open the shared store
and run a warm-up cycle (documents created, terminals logged in); then, all started together, `--cycles`
cycles each. Per shard: its accounts, the median cycle wall time, the median CPU of the worker process
per cycle (user + system: the event loop, the HTTP client and the store thread; the bridge is its own
process), and the CPU of one re-read of the account documents (how a shard mirrors the accounts the
others sync, every MT5_AGENT_STORE_REFRESH seconds). The shards run concurrently, as they would on one
machine, so their wall times include waiting for each other (2 cores, one bridge, one store file).

The store is one SQLite file the shards share (WAL; each cycle's write is one transaction) unless
`--store mongodb` (SecantusDB, a Python wire-protocol server: its own CPU bounds the cycle, not the agent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
from _common import note, r


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/shards.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--accounts", type=int, default=10_000, help="accounts on the bridge (default %(default)s)"
    )
    p.add_argument("--terminals", type=int, default=100, help="simulated terminals (default %(default)s)")
    p.add_argument("--shards", default="1,2,4", help="shard counts to run (default %(default)s)")
    p.add_argument("--cycles", type=int, default=3, help="measured cycles per shard (default %(default)s)")
    p.add_argument("--store", choices=("sqlite", "mongodb"), default="sqlite")
    p.add_argument("--timeout", type=float, default=900.0, help="whole run, seconds (default %(default)s)")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shard", help=argparse.SUPPRESS)
    p.add_argument("--bridge", help=argparse.SUPPRESS)
    p.add_argument("--store-url", help=argparse.SUPPRESS)
    p.add_argument("--database", default="mt5_bench_shards", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- one shard (a worker process) ---------------------------------------------------------------------


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    from agent.app import build_agent, close_agent
    from agent.config import load_settings
    from agent.domain.runs import RunResult

    settings = load_settings(
        bridge_url=args.bridge,
        store_url=args.store_url,
        mongo_database=args.database,
        shard=args.shard,
        positions_interval="off",
        store_refresh=3600,  # measured apart below
        cycle_deadline=600,
        request_timeout=120,
        log_level="WARNING",
    )
    agent = build_agent(settings)
    try:
        assert await agent.service.ensure_ready(), "store did not open"
        warm = await agent.service.run_cycle(trigger="bench")
        if warm.result is not RunResult.SUCCESS:
            raise RuntimeError(f"warm-up cycle: {warm.summary_line()}")
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the parent starts every shard together
        walls, cpus = [], []
        for _ in range(args.cycles):
            cpu = time.process_time()
            run = await agent.service.run_cycle(trigger="bench")
            cpus.append(time.process_time() - cpu)
            if run.result is not RunResult.SUCCESS:
                raise RuntimeError(f"cycle: {run.summary_line()}")
            walls.append(run.duration_seconds or 0.0)
        cpu = time.process_time()
        records = await agent.store.accounts.get_accounts()
        sources = await agent.store.accounts.get_sources()
        agent.fleet.refresh(records, sources)
        mirror_cpu = time.process_time() - cpu
        return {
            "shard": args.shard,
            "accounts": run.accounts_total,
            "fleet_accounts": len(agent.fleet.snapshot().accounts),
            "cycle_seconds": [r(x, 3) for x in walls],
            "cycle_seconds_median": r(statistics.median(walls), 3),
            "cpu_seconds_per_cycle": [r(x, 3) for x in cpus],
            "cpu_seconds_per_cycle_median": r(statistics.median(cpus), 3),
            "mirror_refresh_cpu_seconds": r(mirror_cpu, 3),
        }
    finally:
        await close_agent(agent)


# -- the parent ---------------------------------------------------------------------------------------


def run_shards(args: argparse.Namespace, n: int, bridge_url: str, store_url: str) -> dict[str, Any]:
    env = _common.env_without_agent_settings()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                f"--shard={i}/{n}",
                f"--bridge={bridge_url}",
                f"--store-url={store_url}",
                f"--cycles={args.cycles}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=_common.ROOT,
            env=env,
        )
        for i in range(n)
    ]
    try:
        for p in procs:
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "READY":
                raise RuntimeError(f"a shard worker did not get ready: {line!r} (exit {p.poll()})")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.flush()
        shards = []
        for p in procs:
            out, _ = p.communicate(timeout=args.timeout)
            if p.returncode != 0:
                raise RuntimeError(f"a shard worker failed (exit {p.returncode})")
            shards.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    cpu = [s["cpu_seconds_per_cycle_median"] for s in shards]
    return {
        "shards": n,
        "per_shard": shards,
        "accounts_synced": sum(s["accounts"] for s in shards),
        "cpu_seconds_per_cycle_per_shard_max": max(cpu),
        "cpu_seconds_per_cycle_all_shards": r(sum(cpu), 3),
        "cycle_seconds_max": max(s["cycle_seconds_median"] for s in shards),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker(args))), flush=True)
        return
    counts = [int(x) for x in args.shards.split(",") if x.strip()]
    out: dict[str, Any] = {
        "bench": "shards",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "accounts": args.accounts,
            "terminals": args.terminals,
            "shards": counts,
            "cycles": args.cycles,
            "store": args.store,
        },
        "results": [],
    }
    started = time.monotonic()
    note(f"starting bridge with {args.accounts} accounts on {args.terminals} terminals")
    with (
        tempfile.TemporaryDirectory(prefix="mt5-bench-shards-") as tmp,
        _common.bridge_process(args.accounts, terminals=args.terminals) as bridge,
    ):
        mongo = None
        if args.store == "mongodb":
            from tests.store.mongo_server import MongoServer, find_secantusd

            exe = find_secantusd()
            if exe is None:
                raise SystemExit("secantusd-py not found (pip install -e '.[dev]')")
            (Path(tmp) / "db").mkdir()
            mongo = MongoServer(exe, Path(tmp) / "db")
            mongo.start()
        try:
            for n in counts:
                store_url = mongo.url if mongo is not None else f"sqlite:///{Path(tmp) / f'shards-{n}.db'}"
                note(f"N = {n}: {n} shard(s) over {store_url.split('://')[0]}")
                out["results"].append(run_shards(args, n, bridge.url, store_url))
        finally:
            if mongo is not None:
                mongo.stop()
    base = out["results"][0]["cpu_seconds_per_cycle_per_shard_max"] if out["results"] else None
    for res in out["results"]:
        if base:
            res["cpu_per_shard_vs_first"] = r(res["cpu_seconds_per_cycle_per_shard_max"] / base, 3)
    out["elapsed_seconds"] = r(time.monotonic() - started, 1)
    _common.emit(out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
