"""Trade-event detection delay and the agent's CPU per positions round (issue 12), one JSON object on
stdout.

A real bridge (`mt5-bridge --simulate`, its own process) serves `--accounts` trading accounts, each on
its own terminal unless `--terminals` says otherwise, on a simulated clock started `--behind-hours` in
the past and running `--time-scale` times the wall clock (more changes per wall second; the agent
refuses times from its future, hence the start in the past). For each poll interval and mode, a real
agent (`mt5-agent run`, its own process, a fresh SQLite store) polls positions; after `--warmup` wall
seconds (its first rounds catch up with the open trades) it runs `--duration` wall seconds measured:

- detection delay of every event whose change falls in the measured window: the event's `detected_at`
  (the agent's clock, stored) minus the wall time at which the simulated clock showed the change
  (`event.time`, the terminal's time of the change; `SimClock.wall_for`). `from_visible` counts from
  when the terminal let the change be seen (a closing deal the desk shows late, `deal_visible_ms` of the
  ground truth, recomputed here from the same seed); `from_change` from the change itself;
- the agent's CPU per round: its process CPU time (/proc) over the window / rounds in the window
  (`mt5_positions_poll_duration_seconds_count` from its /metrics), and as % of one core;
- ground truth coverage: changes the desk made in the window (bridge.simulated ground_truth, same seed
  and accounts) against events stored for them (missing ones are listed by kind).

Modes: `batch` (one positions request per round, feature positions_batch) and `single`
(MT5_AGENT_USE_BATCH=false: one positions request per account).

`--pool T,S` adds a terminal-pool case: the accounts on T terminals, each login costing S seconds; an
in-process poller (real BridgeSource, real SQLite store) counts each account's polls to give the period
actually achieved against the one docs/positions-polling.md predicts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
from _common import note, percentile, r

SEED = 42
SERVER = "Bench-Events-Sim"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--terminals", type=int, default=None, help="default: one terminal per account")
    p.add_argument("--login-cost", type=float, default=0.0, help="simulated seconds per login")
    p.add_argument("--intervals", default="1,0.25", help="positions poll intervals, seconds")
    p.add_argument("--modes", default="batch,single", help="batch and/or single")
    p.add_argument("--duration", type=float, default=45.0, help="measured wall seconds per case")
    p.add_argument("--warmup", type=float, default=12.0, help="wall seconds before measuring")
    p.add_argument("--time-scale", type=float, default=20.0, help="simulated seconds per wall second")
    p.add_argument("--behind-hours", type=float, default=8.0, help="simulated clock start, hours ago")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--pool", default=None, metavar="T,S", help="also a terminal-pool case (T terminals)")
    p.add_argument("--pool-interval", type=float, default=0.25)
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    return p.parse_args(argv)


def accounts_doc(n: int) -> dict[str, Any]:
    return {
        "utc_offset_hours": 2,  # broker time, converted back by the bridge
        "accounts": [
            {
                "login": _common.FIRST_LOGIN + i,
                "password": f"bench-{i}",
                "name": f"Bench trader {i + 1}",
                "server": SERVER,
                "balance": 10_000.0 + 37 * i,
            }
            for i in range(n)
        ],
    }


def bridge_command(
    accounts_file: Path, port: int, clock: Any, args: argparse.Namespace, terminals: int | None, login: float
) -> list[str]:
    exe = Path(sys.executable).parent / "mt5-bridge"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "bridge.cli"]
    cmd += [
        "--simulate",
        "--accounts",
        str(accounts_file),
        "--seed",
        str(args.seed),
        "--port",
        str(port),
        f"--clock-start={clock.start!r}",
        f"--clock-anchor={clock.anchor!r}",
        "--time-scale",
        f"{clock.scale:g}",
        "--log-level",
        "WARNING",
        "--login-cost",
        f"{login:g}",
    ]
    if terminals is not None:
        cmd += ["--terminals", str(terminals)]
    return cmd


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g}s")
        time.sleep(0.1)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return resp.read().decode()


def rounds_of(metrics_text: str) -> float:
    return _common.metric_value(metrics_text, "mt5_positions_poll_duration_seconds_count") or 0.0


def wait_rounds(url: str, at_least: float, timeout: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout
    while rounds_of(scrape(url)) < at_least:
        if proc.poll() is not None:
            raise RuntimeError(f"mt5-agent exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {at_least:g} positions rounds within {timeout:g}s")
        time.sleep(0.2)


def truth_index(entries: list[dict[str, Any]], seed: int, since_ms: int, until_ms: int) -> dict[str, Any]:
    """The desk's changes in [since, until] (simulated ms), from the same seed and accounts, and each
    closed trade's deal visibility (a closing deal the desk shows late)."""
    from bridge.simulated import SimulatedTerminal, simulated_pool

    pool = simulated_pool(entries, seed=seed, utc_offset_hours=2.0, static=True)
    try:
        changes = []
        visible: dict[tuple[int, int], int] = {}
        for login in pool.accounts:
            term = pool.terminal(login)
            assert isinstance(term, SimulatedTerminal)
            for c in term.ground_truth(login, since_ms, until_ms):
                changes.append(c)
                if c.kind == "closed":
                    visible[(login, c.identifier)] = int(c.data.get("deal_visible_ms", c.time_ms))
        return {"changes": changes, "visible": visible}
    finally:
        pool.close()


async def stored_events(db: Path) -> list[Any]:
    from agent.store import open_store

    store = open_store(f"sqlite:///{db}")
    await store.open()
    try:
        return await store.events.list_events(limit=1_000_000)
    finally:
        await store.close()


def _change_kind(event: Any) -> str:
    t = event.type.value
    if t == "TRADE_OPENED":
        return "opened"
    if t == "TRADE_CLOSED":
        return "closed"
    return str(event.data.get("change"))


def delays(
    events: list[Any], clock: Any, truth: dict[str, Any], w0: float, w1: float, settle: float
) -> dict[str, Any]:
    """Detection delays of the events whose change (wall time) lies in [w0, w1 - settle]."""
    from_change: list[float] = []
    from_visible: list[float] = []
    by_kind: Counter[str] = Counter()
    seen: set[tuple[int, int, str, int]] = set()
    for e in events:
        changed = clock.wall_for(e.time.timestamp())
        if not w0 <= changed <= w1 - settle:
            continue
        detected = e.detected_at.timestamp()
        shown = changed
        if e.type.value == "TRADE_CLOSED":
            ms = truth["visible"].get((e.account, e.identifier))
            if ms is not None:
                shown = max(changed, clock.wall_for(ms / 1000))
        from_change.append(detected - changed)
        from_visible.append(detected - shown)
        by_kind[_change_kind(e)] += 1
        seen.add((e.account, e.identifier, _change_kind(e), int(e.time.timestamp() * 1000)))
    # coverage: every change the desk made in the window has its event (sl_tp moves that change nothing
    # and changes of a kind the desk records but the events do not carry are left out)
    expected: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    have = {(a, i, k) for a, i, k, _ in seen}
    for c in truth["changes"]:
        if c.kind not in ("opened", "closed", "sl_tp", "volume_added", "partial_close", "reversal"):
            continue
        when = clock.wall_for(c.time_ms / 1000)
        if not w0 <= when <= w1 - settle:
            continue
        if c.kind == "sl_tp" and (c.data.get("old_sl"), c.data.get("old_tp")) == (
            c.data.get("sl"),
            c.data.get("tp"),
        ):
            continue
        expected[c.kind] += 1
        if (c.login, c.identifier, c.kind) not in have:
            missing[c.kind] += 1
    return {
        "events": len(from_change),
        "events_by_kind": dict(sorted(by_kind.items())),
        "delay_from_visible_p50_s": r(percentile(from_visible, 50), 3),
        "delay_from_visible_p99_s": r(percentile(from_visible, 99), 3),
        "delay_from_visible_max_s": r(max(from_visible), 3) if from_visible else None,
        "delay_from_change_p50_s": r(percentile(from_change, 50), 3),
        "delay_from_change_p99_s": r(percentile(from_change, 99), 3),
        "truth_changes": sum(expected.values()),
        "truth_changes_without_event": dict(sorted(missing.items())),
    }


def run_case(
    args: argparse.Namespace,
    bridge_url: str,
    clock: Any,
    entries: list[dict[str, Any]],
    interval: float,
    mode: str,
    workdir: Path,
) -> dict[str, Any]:
    db = workdir / f"agent-{mode}-{interval:g}.db"
    settings = {
        "bridge_url": bridge_url,
        "store_url": f"sqlite:///{db}",
        "schedule": "1h",  # the balance sync stays out of the measured window (one cycle at start)
        "positions_interval": f"{interval:g}",
        "request_timeout": "5",
        "log_level": "WARNING",
        "use_batch": "true" if mode == "batch" else "false",
    }
    note(f"case interval={interval:g}s mode={mode}: agent starting")
    agent_dir = workdir / f"{mode}-{interval:g}"
    agent_dir.mkdir()
    with _common.agent_process(settings, agent_dir) as agent:
        wait_rounds(agent.url, 2, 120.0, agent.proc)
        time.sleep(args.warmup)
        text0 = scrape(agent.url)
        cpu0, rounds0, w0 = _common.cpu_of(agent.pid), rounds_of(text0), time.time()
        time.sleep(args.duration)
        text1 = scrape(agent.url)
        cpu1, rounds1, w1 = _common.cpu_of(agent.pid), rounds_of(text1), time.time()
        time.sleep(min(5.0, 4 * interval + 2))  # the window's last changes are stored before the stop
    events = asyncio.run(stored_events(db))
    truth = truth_index(entries, args.seed, int(clock.at(w0 - 5) * 1000), int(clock.at(w1 + 5) * 1000))
    rounds = rounds1 - rounds0
    cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
    out = {
        "interval_s": interval,
        "mode": mode,
        "window_s": r(w1 - w0, 2),
        "rounds": int(rounds),
        "round_period_s": r((w1 - w0) / rounds, 3) if rounds else None,
        "agent_cpu_seconds": r(cpu, 3),
        "agent_cpu_ms_per_round": r(cpu / rounds * 1000, 2) if rounds else None,
        "agent_cpu_percent_of_core": r(cpu / (w1 - w0) * 100, 1),
        # a change in the last interval plus a second may not be stored yet when the window closes
        **delays(events, clock, truth, w0, w1, settle=interval + 1.0),
    }
    note(
        f"  {out['events']} events, p50 {out['delay_from_visible_p50_s']}s p99 "
        f"{out['delay_from_visible_p99_s']}s, cpu {out['agent_cpu_percent_of_core']}% "
        f"({out['agent_cpu_ms_per_round']} ms/round over {out['rounds']} rounds)"
    )
    return out


async def pool_case(
    args: argparse.Namespace, bridge_url: str, accounts: list[int], terminals: int, login: float, db: Path
) -> dict[str, Any]:
    """An in-process poller over a pooled bridge: each account's polls counted for the period achieved."""
    from agent.events.poller import PositionsPoller
    from agent.sources.bridge import BridgeClient, BridgeSource
    from agent.store import open_store

    class Polls:
        def __init__(self) -> None:
            self.times: dict[int, list[float]] = {a: [] for a in accounts}

        def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
            self.times[account].append(time.monotonic())

        def __getattr__(self, name: str) -> Any:  # the other PollListener methods: nothing to count
            return lambda *a, **k: None

    store = open_store(f"sqlite:///{db}")
    await store.open()
    client = BridgeClient(bridge_url, timeout=30.0)
    source = BridgeSource(client)
    await source.list_accounts()  # which accounts share a terminal (the agent's sync lists them too)
    polls = Polls()
    poller = PositionsPoller(
        store,
        source,
        lambda: accounts,
        interval=args.pool_interval,
        deadline=30.0,
        listener=polls,  # type: ignore[arg-type]
    )
    try:
        poller.start()
        t_end = time.monotonic() + args.warmup + args.duration
        while time.monotonic() < t_end:
            await asyncio.sleep(0.2)
        await poller.stop(grace=30.0)
    finally:
        await client.close()
        await store.close()
    periods = []
    for ts in polls.times.values():
        ts = [t for t in ts if t >= t_end - args.duration]
        periods += [b - a for a, b in itertools.pairwise(ts)]
    per_terminal = _common.accounts_per_terminal(len(accounts), terminals)
    return {
        "terminals": terminals,
        "login_cost_s": login,
        "accounts_per_terminal": per_terminal,
        "poll_interval_s": args.pool_interval,
        # one login per account and round: its positions and deals are read back to back
        "predicted_period_s": r(max(args.pool_interval, per_terminal * login), 3),
        "achieved_period_p50_s": r(percentile(periods, 50), 3),
        "achieved_period_p99_s": r(percentile(periods, 99), 3),
        "polls": len(periods),
    }


def _bridge(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """The bridge, its output in `log` (stdout carries the bench's one JSON object only)."""
    with log.open("ab") as fh:
        env = _common.env_without_agent_settings()
        return subprocess.Popen(cmd, cwd=_common.ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bridge.sim_clock import SimClock

    intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"batch", "single"}:
        raise SystemExit("--modes takes batch and/or single")
    out: dict[str, Any] = {
        "bench": "events",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "accounts": args.accounts,
            "terminals": args.terminals if args.terminals is not None else args.accounts,
            "login_cost_s": args.login_cost,
            "intervals": intervals,
            "modes": modes,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "time_scale": args.time_scale,
            "seed": args.seed,
        },
        "cases": [],
    }
    anchor = time.time()
    clock = SimClock(start=anchor - args.behind_hours * 3600, anchor=anchor, scale=args.time_scale)
    doc = accounts_doc(args.accounts)
    with tempfile.TemporaryDirectory(prefix="mt5-bench-events-") as tmp:
        workdir = Path(tmp)
        accounts_file = workdir / "accounts.json"
        accounts_file.write_text(json.dumps(doc))
        port = _common.free_port()
        cmd = bridge_command(accounts_file, port, clock, args, args.terminals, args.login_cost)
        note(f"bridge: {args.accounts} accounts, clock x{args.time_scale:g} from {args.behind_hours:g} h ago")
        bridge = _bridge(cmd, workdir / "bridge.log")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/api/mt5/bridge/health", 60.0, bridge)
            for interval in intervals:
                for mode in modes:
                    out["cases"].append(run_case(args, url, clock, doc["accounts"], interval, mode, workdir))
            out["bridge_cpu_seconds"] = r(_common.cpu_of(bridge.pid), 2)
        finally:
            _common.stop_process(bridge)
        if args.pool:
            terminals_text, _, login_text = args.pool.partition(",")
            terminals, login = int(terminals_text), float(login_text or 0)
            port = _common.free_port()
            cmd = bridge_command(accounts_file, port, clock, args, terminals, login)
            note(f"pool case: {args.accounts} accounts on {terminals} terminals, login {login:g}s")
            bridge = _bridge(cmd, workdir / "bridge-pool.log")
            try:
                url = f"http://127.0.0.1:{port}"
                wait_http(url + "/api/mt5/bridge/health", 60.0, bridge)
                logins = [a["login"] for a in doc["accounts"]]
                out["pool"] = asyncio.run(pool_case(args, url, logins, terminals, login, workdir / "pool.db"))
                note(f"  {out['pool']}")
            finally:
                _common.stop_process(bridge)
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import signal

    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench --timeout")))
    signal.alarm(int(args.timeout))
    _common.emit(run(args))


if __name__ == "__main__":
    main()
