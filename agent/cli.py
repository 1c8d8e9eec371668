"""`mt5-agent run | sync-once | demo | render` (DESIGN.md section 3)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from agent.config import ConfigError, Settings, is_loopback, load_settings
from agent.models import RunResult, SyncRun

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
    if run.result is RunResult.FAILED and (run.error or "").startswith(("store:", "account list:")):
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


async def _serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port  # type: ignore[union-attr]
    return runner, bound


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
    from agent.tracing import setup_tracing

    provider = setup_tracing(settings.service_name)
    _check_exposure(settings)
    agent = build_agent(settings)
    app = create_app(agent)
    try:
        runner, port = await _serve(app, settings.listen_host, settings.listen_port)
    except OSError as exc:
        print(f"mt5-agent: cannot listen on {settings.listen}: {exc.strerror}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
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
    from agent.tracing import setup_tracing

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
    from bridge.simulated import demo_accounts, simulated_pool

    faults: dict[int, str] = {}
    for spec in args.fault or []:
        login, _, fault = spec.partition("=")
        if not login.isdigit() or not fault:
            print(f"mt5-agent demo: --fault wants LOGIN=FAULT, got {spec!r}", file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        faults[int(login)] = fault
    pool = simulated_pool(faults=faults, login_cost=args.login_cost, latency=0.01)
    bridge_runner, bridge_port = await _serve(create_bridge_app(pool), "127.0.0.1", 0)

    db_dir = None
    db_path = args.db
    if db_path is None:
        db_dir = tempfile.TemporaryDirectory(prefix="mt5-agent-demo-")
        db_path = str(Path(db_dir.name) / "demo.db")
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
        await bridge_runner.cleanup()
        return EXIT_COULD_NOT_RUN
    store = open_store(settings.store_url)
    await store.open()
    # Provisioning, as an operator would: owners (and the names the terminal reports) for new accounts.
    existing = {r.account for r in await store.get_accounts()}
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
        await store.put_account_documents(docs)
    await store.close()
    agent = build_agent(settings)
    app = create_app(agent)
    try:
        runner, port = await _serve(app, settings.listen_host, settings.listen_port)
    except OSError as exc:
        print(f"mt5-agent demo: cannot listen on {settings.listen}: {exc.strerror}", file=sys.stderr)
        await bridge_runner.cleanup()
        pool.close()
        return EXIT_COULD_NOT_RUN
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
        await runner.cleanup()
        await bridge_runner.cleanup()
        pool.close()
        if db_dir is not None:
            db_dir.cleanup()
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    root = Path(args.out) if args.out else Path(__file__).resolve().parent.parent
    if args.what == "alerts":
        from alerts.render import render_files
    else:
        from dashboards.render import render_files
    for path in render_files(root / args.what, settings.thresholds):
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
    render = sub.add_parser("render", help="regenerate committed dashboards/ or alerts/ files")
    render.add_argument("what", choices=["dashboards", "alerts"])
    render.add_argument("--config", help="TOML settings file (freshness thresholds)")
    render.add_argument("--out", help="project root to write into (default: this checkout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agent.logs import setup_logging

    try:
        if args.command == "demo":
            setup_logging("text" if sys.stderr.isatty() else "json", "INFO")
            return asyncio.run(_demo(args))
        if args.command == "render":
            return _render(args)
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"mt5-agent: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    setup_logging(settings.log_format, settings.log_level)
    runner = _run if args.command == "run" else _sync_once
    try:
        return asyncio.run(runner(settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
