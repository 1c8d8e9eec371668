"""`mt5-agent run | sync-once | demo | render | assign-client` (DESIGN.md section 3).

Start-up order for `run` and `demo`: settings (parsed and checked), then the listening socket, then
everything else; so a bad setting or a port in use stops the start with one line and nothing opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from agent.config import (
    ConfigError,
    Settings,
    check_store_location,
    is_loopback,
    load_settings,
    unknown_env_warnings,
)
from agent.domain.runs import RunResult, StopReason, SyncRun
from agent.store import store_location_problem
from agent.store.base import Store
from agent.store.checks import client_id_problem

log = logging.getLogger("mt5_agent")

EXIT_OK, EXIT_SOME_FAILED, EXIT_COULD_NOT_RUN = 0, 1, 2
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


def sync_exit_code(run: SyncRun) -> int:
    """0 every account live, 1 some failed, 2 the cycle could not run (bridge, account list, store)."""
    if run.result is RunResult.SUCCESS:
        return EXIT_OK
    if run.result is RunResult.SKIPPED:
        return EXIT_COULD_NOT_RUN
    if run.result is RunResult.FAILED and run.stopped in (StopReason.STORE, StopReason.ACCOUNT_LIST):
        return EXIT_COULD_NOT_RUN
    return EXIT_SOME_FAILED


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def bind_listen(host: str, port: int) -> list[socket.socket]:
    """Bind (and listen on) every address `host` resolves to, before anything else starts: a port in
    use then stops the start with nothing opened, no cycle run and nothing written. Raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # that address family is not enabled here (as asyncio)
                    socks.pop().close()
                    continue
                raise
            sock.listen(128)
            sock.setblocking(False)
        if not socks:
            raise OSError(errno.EADDRNOTAVAIL, f"no usable address for {host}")
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def _serve(app: web.Application, socks: list[socket.socket]) -> tuple[web.AppRunner, int]:
    """Serve `app` on already bound sockets; the app's start-up (scheduler, prober) runs here."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    try:
        await runner.setup()
        for sock in socks:
            await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        for sock in socks:
            sock.close()
        raise
    return runner, socks[0].getsockname()[1]


def _listen_error(prog: str, settings: Settings, exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{prog}: cannot listen on {settings.listen} (MT5_AGENT_LISTEN): {reason}"


def _check_exposure(settings: Settings) -> None:
    if not is_loopback(settings.listen_host) and not (
        settings.secret("admin_token") or settings.secret("api_token") or settings.secret("jwt_secret")
    ):
        log.warning(
            "listening on %s without any API token: account data is readable by anyone who can reach it",
            settings.listen,
        )


async def _run(settings: Settings) -> int:
    from agent.app import build_agent, create_app
    from agent.telemetry.tracing import setup_tracing

    try:
        socks = bind_listen(settings.listen_host, settings.listen_port)
    except OSError as exc:
        print(_listen_error("mt5-agent", settings, exc), file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    provider = setup_tracing(settings.service_name)
    _check_exposure(settings)
    agent = build_agent(settings)
    try:
        runner, port = await _serve(create_app(agent), socks)
    except BaseException:
        provider.shutdown()
        raise
    # Start-up objects (modules, settings, app) live for the whole run: keep them out of every GC pass.
    gc.collect()
    gc.freeze()
    log.info("agent listening on http://%s:%d (bridge %s)", settings.listen_host, port, settings.bridge_url)
    try:
        await _wait_for_stop()
    finally:
        log.info("stopping")
        await runner.cleanup()
        provider.shutdown()  # flush spans still queued for the exporter
    return EXIT_OK


async def _sync_once(settings: Settings) -> int:
    from agent.app import build_agent, close_agent
    from agent.telemetry.tracing import setup_tracing

    provider = setup_tracing(settings.service_name)
    agent = build_agent(settings)
    try:
        if not await agent.service.ensure_ready():
            print(f"sync failed: store unavailable ({settings.store_url.split('://')[0]})", file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        run = await agent.service.run_cycle(trigger="cli")
        print(run.summary_line())
        return sync_exit_code(run)
    finally:
        await close_agent(agent)
        provider.shutdown()


async def _demo(args: argparse.Namespace) -> int:
    from agent.app import build_agent, create_app
    from agent.store import open_store
    from bridge.api import create_app as create_bridge_app
    from bridge.simulated import simulated_pool

    faults: dict[int, str] = {}
    for spec in args.fault or []:
        login, _, fault = spec.partition("=")
        if not login.isdigit() or not fault:
            print(f"mt5-agent demo: --fault wants LOGIN=FAULT, got {spec!r}", file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        faults[int(login)] = fault
    if args.db is not None and (problem := store_location_problem(f"sqlite:///{args.db}")):
        print(f"mt5-agent demo: --db: {problem}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    async with contextlib.AsyncExitStack() as stack:  # undone in reverse, whatever stops the demo
        # Both listeners are bound before anything starts: a port in use stops the demo with nothing opened.
        bridge_socks = bind_listen("127.0.0.1", 0)
        stack.callback(_close_all, bridge_socks)
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
            message = _listen_error("mt5-agent demo", settings, exc).replace("MT5_AGENT_LISTEN", "--listen")
            print(message, file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        stack.callback(_close_all, socks)
        pool = simulated_pool(faults=faults, login_cost=args.login_cost, latency=0.01)
        stack.callback(pool.close)
        bridge_runner, _ = await _serve(create_bridge_app(pool), bridge_socks)
        stack.push_async_callback(bridge_runner.cleanup)
        await _provision_demo(open_store(settings.store_url))
        runner, port = await _serve(create_app(build_agent(settings)), socks)
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
            await _wait_for_stop()
        finally:
            print("mt5-agent demo: stopping", flush=True)
    return EXIT_OK


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


async def _provision_demo(store: Store) -> None:
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


def _assign_args(args: argparse.Namespace) -> tuple[int, str | None]:
    """ACCOUNT: a positive ASCII-digit integer below 2**63 (what the store can hold); CLIENT_ID: 1 to 128
    printable ASCII characters other than '/' (it is a URL path segment). Raises ConfigError (one line)."""
    text: str = args.account
    # At most 19 digits before int(): a 5,000-digit argument would otherwise trip int()'s own limit.
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 0 < int(text) < 2**63:
        raise ConfigError(f"assign-client: ACCOUNT must be a positive integer below 2**63, got {text[:40]!r}")
    if args.unassign:
        if args.client_id is not None:
            raise ConfigError("assign-client: give either CLIENT_ID or --unassign, not both")
        return int(text), None
    client_id: str | None = args.client_id
    if client_id is None:
        raise ConfigError("assign-client: CLIENT_ID is required (or --unassign)")
    if (problem := client_id_problem(client_id)) is not None:  # the store's and the admin endpoint's rule
        raise ConfigError(f"assign-client: CLIENT_ID: {problem}, got {client_id[:40]!r}")
    return int(text), client_id


async def _assign_client(settings: Settings, account: int, client_id: str | None) -> int:
    """Operator tooling: who owns an account (the seed's /api/client/{id}/... paths depend on it)."""
    from agent.store import StoreError, open_store

    store = open_store(settings.store_url, mongo_database=settings.mongo_database)
    try:
        await store.open()
        await store.accounts.set_client(account, client_id)
    except StoreError as exc:
        print(f"mt5-agent assign-client: store unavailable: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    except ValueError as exc:  # the store's own rule on ids (the same as the admin endpoint's)
        print(f"mt5-agent assign-client: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    finally:
        with contextlib.suppress(StoreError):
            await store.close()
    print(
        f"account {account} unassigned" if client_id is None else f"account {account} assigned to {client_id}"
    )
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    root = Path(args.out) if args.out else Path(__file__).resolve().parent.parent
    from alerts.render import JOB_SELECTOR, RUNBOOK_URL

    if args.what == "alerts":
        from alerts.render import render_files
    else:
        from dashboards.render import render_files
    try:
        paths = render_files(
            root / args.what,
            settings.thresholds,
            job_selector=args.job_selector or JOB_SELECTOR,
            runbook_url=args.runbook_url or RUNBOOK_URL,
        )
    except ValueError as exc:
        print(f"mt5-agent: render: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    for path in paths:
        print(path)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mt5-agent", description="MT5 monitoring agent")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the agent (scheduler + HTTP server)"),
        ("sync-once", "run one sync cycle"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--config", help="TOML settings file (environment variables win)")
    demo = sub.add_parser("demo", help="simulated bridge + SQLite + fast schedule on 127.0.0.1:8080")
    demo.add_argument("--config", help="TOML settings file")
    demo.add_argument(
        "--listen", default="127.0.0.1:8080", help="host:port for the agent (default %(default)s)"
    )
    demo.add_argument("--schedule", default="5s", help="sync schedule (default %(default)s)")
    demo.add_argument("--db", help="SQLite file to keep (default: a temporary one)")
    demo.add_argument("--login-cost", type=float, default=0.05, help="simulated account switch seconds")
    demo.add_argument("--fault", action="append", metavar="LOGIN=FAULT", help="inject a simulated fault")
    assign = sub.add_parser("assign-client", help="assign an account to a client (or --unassign it)")
    assign.add_argument("account", metavar="ACCOUNT", help="MT5 login")
    assign.add_argument("client_id", metavar="CLIENT_ID", nargs="?", help="client id (JWT `sub`)")
    assign.add_argument("--unassign", action="store_true", help="remove the account's client")
    assign.add_argument("--config", help="TOML settings file (environment variables win)")
    render = sub.add_parser("render", help="regenerate committed dashboards/ or alerts/ files")
    render.add_argument("what", choices=["dashboards", "alerts"])
    render.add_argument("--config", help="TOML settings file (freshness thresholds)")
    render.add_argument("--out", help="project root to write into (default: this checkout)")
    render.add_argument(
        "--job-selector",
        help='PromQL label matchers that select the agent\'s series (default: job="mt5-agent")',
    )
    render.add_argument(
        "--runbook-url",
        help="runbook URL pattern with {anchor} or {alertname} (default: alerts/RUNBOOK.md)",
    )
    return p


def _warn_unknown_env() -> None:
    for line in unknown_env_warnings(os.environ):
        log.warning(line)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agent.telemetry.logs import setup_logging

    try:
        if args.command == "demo":
            setup_logging("text" if sys.stderr.isatty() else "json", "INFO")
            _warn_unknown_env()
            return asyncio.run(_demo(args))
        if args.command == "render":
            return _render(args)
        if args.command == "assign-client":
            account, client_id = _assign_args(args)
        settings = load_settings(args.config)
        check_store_location(settings)  # every command left opens the store
    except ConfigError as exc:
        print(f"mt5-agent: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    setup_logging(settings.log_format, settings.log_level)
    _warn_unknown_env()
    try:
        if args.command == "assign-client":
            return asyncio.run(_assign_client(settings, account, client_id))
        runner = _run if args.command == "run" else _sync_once
        return asyncio.run(runner(settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
