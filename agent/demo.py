"""`mt5-agent demo`: the embedded default. A simulated bridge in-process, a SQLite store, a fast
schedule and the agent on 127.0.0.1:8080; prints the URLs to open; Ctrl-C stops everything cleanly.

The simulated desk trades DEMO_PACE times as often as the real-time one, in trades as many times
shorter, on the wall clock: at real pace an account changes about every 3 minutes, which a new user would
take for a page that does not work; at 20 an account changes about every 9 s and the fleet about every
second, while balances and freshness stay real-time (a time-scaled clock would have to start in the past
and show every account's data as stale; balances drift about 1 % an hour from commissions).

Unless `--calm`, the demo tells a story (agent.demo_story): over about two minutes, with freshness
thresholds scaled to it, one account falls back to stored data, one terminal stops, the bridge restarts and
everything recovers; the terminal and the status page say what happens and which alert would fire.

The one place in the agent that imports the bridge package (to run its simulator in-process)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import ConfigError, load_settings
from agent.serving import (
    EXIT_COULD_NOT_RUN,
    EXIT_OK,
    bind_listen,
    close_all,
    listen_error,
    serve,
    wait_for_stop,
)
from agent.store import store_location_problem
from agent.store.base import Store

if TYPE_CHECKING:
    from aiohttp import web

    from bridge.pool import TerminalPool

DEMO_PACE = 20  # bridge.simulated's `pace`: the desk's trade opportunities and trade lengths, x20
WATCH_ACCOUNT = 886557  # the account the printed "live trades" link opens (trades from the start)
# Demo accounts get owners so the client endpoints have something to show.
DEMO_CLIENTS = {
    886557: "client_alejandro",
    886066: "client_alejandro",
    886602: "client_alejandro",
    885822: "client_maria",
    886528: "client_maria",
    891215: "client_alejandro",
    891234: "client_maria",
}


SECOND_SOURCE = "bridge-b"  # the demo's second bridge (its first is `bridge`, as MT5_AGENT_BRIDGE_URL's)
SECOND_ACCOUNTS = (9100001, 9100002)


async def run_demo(args: argparse.Namespace) -> int:
    from agent.api.keys import DEMO_STORY
    from agent.app import build_agent, create_app
    from agent.demo_story import Story, StoryTiming
    from agent.store import open_store
    from bridge.api import create_app as create_bridge_app
    from bridge.simulated import FAULTS, demo_accounts, simulated_pool

    faults: dict[int, str] = {}
    known = {a.login for a in demo_accounts()}
    for spec in args.fault or []:
        login, _, fault = spec.partition("=")
        problem = None
        if not (login.isascii() and login.isdigit()) or not fault:
            problem = f"wants LOGIN=FAULT, got {spec!r}"
        elif int(login) not in known:
            problem = f"{login} is not a demo account ({', '.join(map(str, sorted(known)))})"
        elif fault not in FAULTS:
            problem = f"unknown fault {fault!r} (one of {', '.join(FAULTS)})"
        if problem is not None:
            print(f"mt5-agent demo: --fault: {problem}", file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        faults[int(login)] = fault
    if args.db is not None and (problem := store_location_problem(f"sqlite:///{args.db}")):
        print(f"mt5-agent demo: --db: {problem}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    try:
        timing = None if args.calm else StoryTiming(args.story_seconds)
    except ValueError as exc:
        print(f"mt5-agent demo: --story-seconds: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    async with contextlib.AsyncExitStack() as stack:  # undone in reverse, whatever stops the demo
        # Both listeners are bound before anything starts: a port in use stops the demo with nothing opened.
        bridge_socks = bind_listen("127.0.0.1", 0)
        stack.callback(close_all, bridge_socks)
        bridge_port = bridge_socks[0].getsockname()[1]
        # A second VPS (issue 15): its own two accounts, a second source of the same agent. The story acts
        # on the first bridge only; the second's accounts stay fresh throughout.
        second_socks = bind_listen("127.0.0.1", 0)
        stack.callback(close_all, second_socks)
        second_port = second_socks[0].getsockname()[1]
        db_path = args.db
        if db_path is None:
            db_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mt5-agent-demo-"))
            db_path = str(Path(db_dir) / "demo.db")
        try:
            settings = load_settings(
                args.config,
                sources=[
                    {"name": "bridge", "kind": "bridge", "url": f"http://127.0.0.1:{bridge_port}"},
                    {"name": SECOND_SOURCE, "kind": "bridge", "url": f"http://127.0.0.1:{second_port}"},
                ],
                store_url=f"sqlite:///{db_path}",
                schedule=args.schedule or (f"{timing.schedule_seconds:g}s" if timing else "5s"),
                listen=args.listen,
                **({"freshness": timing.freshness} if timing is not None else {}),
                health_backoff=0.2,
            )
        except ConfigError as exc:
            print(f"mt5-agent demo: {exc}", file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        try:
            socks = bind_listen(settings.listen_host, settings.listen_port)
        except OSError as exc:
            message = listen_error("mt5-agent demo", settings, exc).replace("MT5_AGENT_LISTEN", "--listen")
            print(message, file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        stack.callback(close_all, socks)

        def new_pool(faults: dict[int, str]) -> TerminalPool:
            return simulated_pool(faults=faults, login_cost=args.login_cost, latency=0.01, pace=DEMO_PACE)

        bridge = DemoBridge(new_pool, create_bridge_app, faults)
        stack.push_async_callback(bridge.stop)
        await bridge.start(bridge_socks)

        def second_pool(faults: dict[int, str]) -> TerminalPool:
            return simulated_pool(
                list(SECOND_ACCOUNTS), login_cost=args.login_cost, latency=0.01, pace=DEMO_PACE
            )

        second = DemoBridge(second_pool, create_bridge_app, {})
        stack.push_async_callback(second.stop)
        await second.start(second_socks)
        await provision_demo(open_store(settings.store_url))
        agent = build_agent(settings)
        app = create_app(agent)
        story = None
        if timing is not None:
            story = Story(
                bridge,
                timing,
                say=lambda line: print(line, flush=True),
                ready=lambda: agent.fleet.status.last_run is not None,  # "every account is live" is true
            )
        if story is not None:
            app[DEMO_STORY] = story.status
            stack.push_async_callback(story.stop)
        runner, port = await serve(app, socks)
        stack.push_async_callback(runner.cleanup)
        base = f"http://{settings.listen_host}:{port}"
        print(
            "\n".join(
                [
                    f"mt5-agent demo: {len(known) + len(SECOND_ACCOUNTS)} simulated accounts on two bridges "
                    f"syncing {settings.parsed_schedule} into {db_path}",
                    f"  status page   {base}/",
                    f"  live trades   {base}/#account={WATCH_ACCOUNT}  (positions and events as they happen)",
                    f"  accounts      {base}/api/v1/accounts",
                    f"  sync runs     {base}/api/v1/sync/runs",
                    f"  metrics       {base}/metrics",
                    f"  OpenAPI       {base}/api/openapi.json",
                    f"  bridge        http://127.0.0.1:{bridge_port}/api/mt5/accounts/summary",
                    f"  bridge-b      http://127.0.0.1:{second_port}/api/mt5/accounts/summary",
                    "Ctrl-C stops everything.",
                ]
            ),
            flush=True,
        )
        if story is not None:
            story.start()
        try:
            await wait_for_stop()
        finally:
            print("mt5-agent demo: stopping", flush=True)
    return EXIT_OK


class DemoBridge:
    """The in-process simulated bridge, as the story's controls: faults switched at runtime, and a
    restart (server and pool stopped, then started again on the same port with the faults then on; the
    desk is a function of its seed and clock, so it carries on where it was)."""

    def __init__(
        self,
        new_pool: Callable[[dict[int, str]], TerminalPool],
        new_app: Callable[[TerminalPool], web.Application],
        faults: dict[int, str],
    ) -> None:
        self.new_pool, self.new_app = new_pool, new_app
        self.faults = dict(faults)
        self.pool: TerminalPool | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, socks: list[socket.socket] | None = None) -> None:
        if socks is None:
            socks = bind_listen("127.0.0.1", self.port)
        self.pool = self.new_pool(dict(self.faults))
        try:
            self.runner, self.port = await serve(self.new_app(self.pool), socks)
        except BaseException:
            self.pool.close()
            raise

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()  # the bridge app closes its pool on cleanup
        elif self.pool is not None:  # never served: nobody else closes it
            self.pool.close()

    def set_fault(self, login: int, fault: str | None) -> None:
        if fault is None:
            self.faults.pop(login, None)
        else:
            self.faults[login] = fault
        if self.pool is not None:
            self.pool.set_fault(login, fault)

    async def restart_bridge(self, down_seconds: float) -> None:
        await self.stop()
        await asyncio.sleep(down_seconds)
        await self.start()


async def provision_demo(store: Store) -> None:
    """Owners (and the names the terminal reports) for new accounts, as an operator would."""
    from bridge.simulated import demo_accounts

    await store.open()
    try:
        existing = {r.account for r in await store.accounts.get_accounts()}
        docs = [
            {
                "account": a.login,
                "name": a.name,
                "server": a.server,
                "client_id": DEMO_CLIENTS[a.login],
                "fund_type": "DEMO",
            }
            for a in demo_accounts()
            if a.login in DEMO_CLIENTS and a.login not in existing
        ]
        if docs:
            await store.accounts.put_account_documents(docs)
    finally:
        await store.close()
