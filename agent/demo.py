"""`mt5-agent demo`: the embedded default. A simulated bridge in-process, a SQLite store, a fast
schedule and the agent on 127.0.0.1:8080; prints the URLs to open; Ctrl-C stops everything cleanly.

The one place in the agent that imports the bridge package (to run its simulator in-process)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

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


async def run_demo(args: argparse.Namespace) -> int:
    from agent.app import build_agent, create_app
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
    async with contextlib.AsyncExitStack() as stack:  # undone in reverse, whatever stops the demo
        # Both listeners are bound before anything starts: a port in use stops the demo with nothing opened.
        bridge_socks = bind_listen("127.0.0.1", 0)
        stack.callback(close_all, bridge_socks)
        bridge_port = bridge_socks[0].getsockname()[1]
        db_path = args.db
        if db_path is None:
            db_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mt5-agent-demo-"))
            db_path = str(Path(db_dir) / "demo.db")
        try:
            settings = load_settings(
                args.config,
                bridge_url=f"http://127.0.0.1:{bridge_port}",
                store_url=f"sqlite:///{db_path}",
                schedule=args.schedule,
                listen=args.listen,
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
        pool = simulated_pool(faults=faults, login_cost=args.login_cost, latency=0.01)
        stack.callback(pool.close)
        bridge_runner, _ = await serve(create_bridge_app(pool), bridge_socks)
        stack.push_async_callback(bridge_runner.cleanup)
        await provision_demo(open_store(settings.store_url))
        runner, port = await serve(create_app(build_agent(settings)), socks)
        stack.push_async_callback(runner.cleanup)
        base = f"http://{settings.listen_host}:{port}"
        print(
            "\n".join(
                [
                    f"mt5-agent demo: 7 simulated accounts syncing {settings.parsed_schedule} into {db_path}",
                    f"  status page   {base}/",
                    f"  accounts      {base}/api/v1/accounts",
                    f"  sync runs     {base}/api/v1/sync/runs",
                    f"  metrics       {base}/metrics",
                    f"  OpenAPI       {base}/api/openapi.json",
                    f"  bridge        http://127.0.0.1:{bridge_port}/api/mt5/accounts/summary",
                    "Ctrl-C stops everything.",
                ]
            ),
            flush=True,
        )
        try:
            await wait_for_stop()
        finally:
            print("mt5-agent demo: stopping", flush=True)
    return EXIT_OK


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
