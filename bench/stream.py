"""Fan-out of the live event stream (WS /api/v1/stream) to many WebSocket clients on loopback.

Three kinds of process:
- the agent (this script, `_agent`): the real app (`build_agent`, `create_app`, SQLite store) served on a
  free loopback port. On each `emit` command it stores one trade event and reports it to the event hub
  the way the positions poller does (`on_events_stored`), printing the monotonic time of that report;
  then it prints when its streams had written that event to every client's socket (from its own stream
  observer: the server-side fan-out time);
- the clients (`_clients`): `--clients` connections split over `--client-procs` processes, read token
  in `Sec-WebSocket-Protocol`, live subscriptions; each records the monotonic time it received each event;
- this orchestrator: starts them, emits `--events` events `--interval` seconds apart, reads the agent's
  CPU and RSS from /proc, and prints one JSON object.

With `--e2e SECONDS` it also measures end to end: a real simulated bridge (`mt5-bridge --simulate`, its
simulated clock `--e2e-time-scale` times the wall clock, as bench/events.py runs it) and `mt5-agent run`
polling positions every `--e2e-interval` seconds, one WebSocket client live for SECONDS: each event's
delivery time minus the wall time at which the simulated terminal made (or, for a closing deal shown
late, showed) the change (`e2e_from_visible_*`), and minus the agent's `detected_at` (the stream's own
share, `e2e_from_detected_*`).

CLOCK_MONOTONIC is system-wide on Linux, so a client's receive time minus the agent's report time is that
event's delivery latency to that client. Reported: per (event, client) latency p50/p99/max
(`fanout_*_ms`), per event the time until the LAST client had it (`fanout_last_*_ms`, the whole fan-out),
the server side alone (`server_fanout_*_ms`: report to the last frame written), connect time, the agent's
CPU per event and its RSS idle and with every client connected. On a 2-core machine the client processes
compete with the agent for the CPUs, so the client-observed figures are upper bounds of the agent's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
from _common import note, percentile, r

TOKEN = "bench-stream-read-token"
PATH = "/api/v1/stream"
ACCOUNT = 1001


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/stream.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients (default %(default)s)")
    p.add_argument("--client-procs", type=int, default=2, help="processes the clients run in")
    p.add_argument("--events", type=int, default=50, help="events emitted, one at a time")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between two events")
    p.add_argument(
        "--client-nice",
        type=int,
        default=10,
        help="niceness of the client processes (default %(default)s: in production the clients are other "
        "machines; here they share the agent's 2 cores)",
    )
    p.add_argument("--e2e", type=float, default=0.0, help="seconds of the end-to-end case (0: skip it)")
    p.add_argument("--e2e-accounts", type=int, default=20, help="trading accounts of the end-to-end case")
    p.add_argument("--e2e-interval", type=float, default=1.0, help="positions poll interval (seconds)")
    p.add_argument("--e2e-time-scale", type=float, default=10.0, help="simulated seconds per wall second")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument(
        "role", nargs="?", default="run", choices=("run", "_agent", "_clients"), help=argparse.SUPPRESS
    )
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--db", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the agent ----------------------------------------------------------------------------------------


class _Timing:
    """The stream observer, wrapped: when the last event frame was written, and how many."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.event_sends = 0
        self.last_send = 0.0

    def on_stream_sent(self, kind: str, count: int = 1) -> None:
        if kind == "event":
            self.event_sends += count
            self.last_send = time.monotonic()
        self.inner.on_stream_sent(kind, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def agent_main(args: argparse.Namespace) -> None:
    from aiohttp import web

    from agent.app import build_agent, create_app
    from agent.config import load_settings
    from agent.domain.trades import EventType, TradeEvent

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = load_settings(
        store_url=f"sqlite:///{args.db}",
        bridge_url="http://127.0.0.1:9",
        api_token=TOKEN,
        listen=f"127.0.0.1:{args.port}",
        positions_interval="off",
    )
    agent = build_agent(settings)
    assert agent.hub is not None
    timing = _Timing(agent.hub.observer)
    agent.hub.observer = timing
    runner = web.AppRunner(create_app(agent, schedule=False), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024).start()
    assert await agent.hub.wait_ready(30)
    gc.collect()  # as `mt5-agent run` does once it listens: start-up objects out of every GC pass
    gc.freeze()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    n = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "quit":
            break
        expected = int(line.split()[1])  # event frames to be written: one per subscribed client
        n += 1
        now = datetime.now(UTC)
        event = TradeEvent(
            account=ACCOUNT,
            identifier=n,
            type=EventType.TRADE_OPENED,
            dedup_key=f"bench:{n}",
            time=now,
            detected_at=now,
            symbol="EURUSD",
            data={"side": "buy", "volume": 0.1, "price_open": 1.1, "sl": 0.0, "tp": 0.0},
        )
        (stored,) = await agent.store.events.append_events([event])
        sends0 = timing.event_sends
        t0 = time.monotonic()
        agent.hub.on_events_stored([stored], now, False)
        print(f"T0 {stored.id} {t0!r}", flush=True)
        deadline = t0 + 10
        while timing.event_sends - sends0 < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
        print(f"DONE {stored.id} {timing.last_send!r} {timing.event_sends - sends0}", flush=True)
    await runner.cleanup()


# -- the clients --------------------------------------------------------------------------------------


async def clients_main(args: argparse.Namespace) -> None:
    import os

    import aiohttp

    os.nice(args.client_nice)

    url = f"http://127.0.0.1:{args.port}{PATH}"
    received: dict[int, list[float]] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(50)

        async def open_one() -> aiohttp.ClientWebSocketResponse:
            async with sem:
                ws = await session.ws_connect(url, protocols=("bearer", TOKEN), max_msg_size=1 << 20)
                hello = json.loads((await ws.receive(timeout=30)).data)
                assert hello["type"] == "hello", hello
                await ws.send_str('{"op":"subscribe"}')
                while json.loads((await ws.receive(timeout=30)).data)["type"] != "subscribed":
                    pass
                return ws

        streams = await asyncio.gather(*(open_one() for _ in range(args.clients)))
        print("READY", flush=True)

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            got = 0
            while got < args.events:
                msg = await ws.receive()
                at = time.monotonic()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return
                text = msg.data
                if text.startswith('{"type":"event"'):
                    event_id = json.loads(text)["event"]["id"]
                    received.setdefault(event_id, []).append(at)
                    got += 1

        try:
            await asyncio.wait_for(asyncio.gather(*(read(ws) for ws in streams)), args.timeout)
        except TimeoutError:
            pass
        for ws in streams:
            await ws.close()
    print("RESULT " + json.dumps({str(k): v for k, v in received.items()}), flush=True)


# -- the orchestrator ---------------------------------------------------------------------------------


async def _line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The next stdout line of a child starting with `prefix` (blocking reads off the loop: lines that
    arrive together stay in order, which select() on a buffered pipe would not see)."""
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            line = await loop.run_in_executor(None, proc.stdout.readline)
            if not line:
                raise RuntimeError(f"{prefix.strip()}: the child exited ({proc.poll()})")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()


def _cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _common.CLK_TCK, int(fields[12]) / _common.CLK_TCK


def _child(role: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), role, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_common.env_without_agent_settings(),
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "stream",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "clients": args.clients,
            "client_procs": args.client_procs,
            "events": args.events,
            "interval_seconds": args.interval,
            "client_nice": args.client_nice,
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        port = _common.free_port()
        agent = _child("_agent", "--port", str(port), "--db", str(Path(tmp) / "agent.db"))
        clients: list[subprocess.Popen[str]] = []
        try:
            await _line(agent, "READY", 60)
            idle = _common.rss_of_mb(agent.pid)
            per = [args.clients // args.client_procs] * args.client_procs
            per[0] += args.clients - sum(per)
            started = time.monotonic()
            for n in per:
                extra = ["--port", str(port), "--clients", str(n), "--events", str(args.events)]
                extra += ["--client-nice", str(args.client_nice)]
                clients.append(_child("_clients", *extra, "--timeout", str(max(30.0, args.timeout / 2))))
            for c in clients:
                await _line(c, "READY", 120)
            connect_seconds = time.monotonic() - started
            note(f"{args.clients} clients connected in {connect_seconds:.1f}s")
            connected = _common.rss_of_mb(agent.pid)
            cpu0 = _common.cpu_of(agent.pid)
            user0, sys0 = _cpu_split(agent.pid)
            assert agent.stdin is not None
            t0: dict[int, float] = {}
            server: list[float] = []
            short = 0
            for _ in range(args.events):
                agent.stdin.write(f"emit {args.clients}\n")
                agent.stdin.flush()
                event_id, at = (await _line(agent, "T0 ", 30)).split()
                t0[int(event_id)] = float(at)
                _, last, count = (await _line(agent, "DONE ", 30)).split()
                server.append((float(last) - float(at)) * 1000)
                short += int(count) < args.clients
                await asyncio.sleep(args.interval)
            cpu1 = _common.cpu_of(agent.pid)
            user1, sys1 = _cpu_split(agent.pid)
            peak = _common.rss_of_mb(agent.pid)["peak_rss_mb"]
            received: dict[int, list[float]] = {}
            for c in clients:
                text = await _line(c, "RESULT ", args.timeout)
                for k, v in json.loads(text).items():
                    received.setdefault(int(k), []).extend(v)
            agent.stdin.write("quit\n")
            agent.stdin.flush()
        finally:
            for proc in (*clients, agent):
                _common.stop_process(proc)
    latencies = [(at - t0[i]) * 1000 for i, ats in received.items() if i in t0 for at in ats]
    whole = [(max(ats) - t0[i]) * 1000 for i, ats in received.items() if i in t0 and ats]
    deliveries = sum(len(v) for v in received.values())
    out.update(
        {
            "connect_seconds": r(connect_seconds, 2),
            "deliveries": deliveries,
            "deliveries_expected": args.clients * args.events,
            "events_not_fully_written": short,
            "fanout_p50_ms": r(percentile(latencies, 50), 2),
            "fanout_p99_ms": r(percentile(latencies, 99), 2),
            "fanout_max_ms": r(max(latencies, default=None), 2),
            "fanout_last_p50_ms": r(percentile(whole, 50), 2),
            "fanout_last_p99_ms": r(percentile(whole, 99), 2),
            "server_fanout_p50_ms": r(percentile(server, 50), 2),
            "server_fanout_p99_ms": r(percentile(server, 99), 2),
            "agent_cpu_ms_per_event": r(
                (cpu1 - cpu0) * 1000 / args.events if cpu0 is not None and cpu1 is not None else None, 2
            ),
            "agent_cpu_user_ms_per_event": r((user1 - user0) * 1000 / args.events, 2),
            "agent_cpu_system_ms_per_event": r((sys1 - sys0) * 1000 / args.events, 2),
            "agent_rss_idle_mb": idle["rss_mb"],
            "agent_rss_connected_mb": connected["rss_mb"],
            "agent_peak_rss_mb": peak,
        }
    )
    return out


async def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    """The simulated bridge -> mt5-agent run (positions poller) -> one WebSocket client, live."""
    import aiohttp
    import events as events_bench  # bench/events.py: the same bridge and ground truth

    from bridge.sim_clock import SimClock

    ns = argparse.Namespace(seed=events_bench.SEED)
    anchor = time.time()
    clock = SimClock(start=anchor - 8 * 3600, anchor=anchor, scale=args.e2e_time_scale)
    doc = events_bench.accounts_doc(args.e2e_accounts)
    received: list[tuple[float, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stream-e2e-") as tmp:
        workdir = Path(tmp)
        (workdir / "accounts.json").write_text(json.dumps(doc))
        port = _common.free_port()
        cmd = events_bench.bridge_command(workdir / "accounts.json", port, clock, ns, None, 0.0)
        bridge = events_bench._bridge(cmd, workdir / "bridge.log")
        try:
            url = f"http://127.0.0.1:{port}"
            events_bench.wait_http(url + "/api/mt5/bridge/health", 60.0, bridge)
            settings = {
                "bridge_url": url,
                "store_url": f"sqlite:///{workdir / 'agent.db'}",
                "schedule": "1h",
                "positions_interval": f"{args.e2e_interval:g}",
                "request_timeout": "5",
                "log_level": "WARNING",
            }  # no credential: reads (and the stream) open on loopback
            with _common.agent_process(settings, workdir) as agent:
                events_bench.wait_rounds(agent.url, 3, 120.0, agent.proc)  # past the catch-up at start
                async with aiohttp.ClientSession() as session:
                    ws = await session.ws_connect(agent.url.replace("http", "ws", 1) + PATH)
                    await ws.receive_json(timeout=30)  # hello
                    await ws.send_json({"op": "subscribe"})  # live only
                    w0 = time.time()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(args.e2e):
                            while True:
                                msg = await ws.receive()
                                at = time.time()
                                if msg.type is not aiohttp.WSMsgType.TEXT:
                                    break
                                data = json.loads(msg.data)
                                if data["type"] == "event":
                                    received.append((at, data["event"]))
                    w1 = time.time()
                    await ws.close()
        finally:
            _common.stop_process(bridge)
    truth = events_bench.truth_index(
        doc["accounts"], ns.seed, int(clock.at(w0 - 60) * 1000), int(clock.at(w1 + 5) * 1000)
    )
    from_visible: list[float] = []
    from_detected: list[float] = []
    for at, e in received:
        changed = clock.wall_for(datetime.fromisoformat(e["time"]).timestamp())
        shown = changed
        if e["type"] == "TRADE_CLOSED":
            ms = truth["visible"].get((e["account"], e["identifier"]))
            if ms is not None:
                shown = max(changed, clock.wall_for(ms / 1000))
        if shown < w0:  # changed before the client subscribed (caught up late): not a live delivery
            continue
        from_visible.append(at - shown)
        from_detected.append(at - datetime.fromisoformat(e["detected_at"]).timestamp())
    return {
        "e2e_accounts": args.e2e_accounts,
        "e2e_interval_s": args.e2e_interval,
        "e2e_seconds": r(w1 - w0, 1),
        "e2e_events": len(from_visible),
        "e2e_from_visible_p50_ms": r(percentile([x * 1000 for x in from_visible], 50), 1),
        "e2e_from_visible_p99_ms": r(percentile([x * 1000 for x in from_visible], 99), 1),
        "e2e_from_visible_max_ms": r(max(from_visible, default=0) * 1000, 1) if from_visible else None,
        "e2e_from_detected_p50_ms": r(percentile([x * 1000 for x in from_detected], 50), 2),
        "e2e_from_detected_p99_ms": r(percentile([x * 1000 for x in from_detected], 99), 2),
    }


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    out = await run(args)
    if args.e2e > 0:
        note(f"end to end: {args.e2e_accounts} accounts, polling every {args.e2e_interval:g}s, {args.e2e:g}s")
        out["params"].update(e2e_seconds=args.e2e, e2e_time_scale=args.e2e_time_scale)
        out.update(await end_to_end(args))
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.role == "_agent":
        asyncio.run(agent_main(args))
    elif args.role == "_clients":
        asyncio.run(clients_main(args))
    else:
        _common.emit(asyncio.run(asyncio.wait_for(run_all(args), args.timeout)))


if __name__ == "__main__":
    main()
