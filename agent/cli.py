"""`mt5-agent run | sync-once | demo | render | assign-client` (DESIGN.md section 3).

Start-up order for `run` and `demo`: settings (parsed and checked), then the listening socket, then
everything else; so a bad setting or a port in use stops the start with one line and nothing opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import sys
from pathlib import Path

from agent import __version__
from agent.config import (
    ConfigError,
    Settings,
    check_store_location,
    describe_settings,
    is_loopback,
    load_settings,
    toml_keys,
    unknown_env_warnings,
)
from agent.demo import run_demo
from agent.domain.runs import RunResult, StopReason, SyncRun
from agent.serving import (
    EXIT_COULD_NOT_RUN,
    EXIT_OK,
    EXIT_SOME_FAILED,
    bind_listen,
    listen_error,
    serve,
    stop_on_sigint,
    wait_for_stop,
)
from agent.store.checks import client_id_problem

log = logging.getLogger("mt5_agent")


def sync_exit_code(run: SyncRun) -> int:
    """0 every account live, 1 some failed, 2 the cycle could not run (bridge, account list, store)."""
    if run.result is RunResult.SUCCESS:
        return EXIT_OK
    if run.result is RunResult.SKIPPED:
        return EXIT_COULD_NOT_RUN
    if run.result is RunResult.FAILED and run.stopped in (StopReason.STORE, StopReason.ACCOUNT_LIST):
        return EXIT_COULD_NOT_RUN
    return EXIT_SOME_FAILED


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
        print(listen_error("mt5-agent", settings, exc), file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    provider = setup_tracing(settings.service_name)
    _check_exposure(settings)
    agent = build_agent(settings)
    try:
        runner, port = await serve(create_app(agent), socks, access_log=settings.access_log)
    except BaseException:
        provider.shutdown()
        raise
    # Start-up objects (modules, settings, app) live for the whole run: keep them out of every GC pass.
    gc.collect()
    gc.freeze()
    log.info("agent listening on http://%s:%d (bridge %s)", settings.listen_host, port, settings.bridge_url)
    try:
        await wait_for_stop()
    finally:
        log.info("stopping")
        await runner.cleanup()
        provider.shutdown()  # flush spans still queued for the exporter
    return EXIT_OK


async def _sync_once(settings: Settings) -> int:
    from agent.app import build_agent, close_agent, verify_sources
    from agent.telemetry.tracing import setup_tracing

    provider = setup_tracing(settings.service_name)
    agent = build_agent(settings)
    try:
        if not await agent.service.ensure_ready():
            print(f"sync failed: store unavailable ({settings.store_url.split('://')[0]})", file=sys.stderr)
            return EXIT_COULD_NOT_RUN
        await verify_sources(agent)
        # One cycle per source, concurrently (several `[[sources]]`); the worst outcome is the exit code.
        runs = await asyncio.gather(*(service.run_cycle(trigger="cli") for service in agent.services))
        for service, run in zip(agent.services, runs, strict=True):
            print(run.summary_line() if len(runs) == 1 else f"{service.source.name}: {run.summary_line()}")
        return max(sync_exit_code(run) for run in runs)
    finally:
        await close_agent(agent)
        provider.shutdown()


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
    if not args.out and not (root / "pyproject.toml").is_file():
        print(
            f"mt5-agent: render: {root} is an installed package, not a checkout; "
            "give --out DIR (a checkout's root, or any directory)",
            file=sys.stderr,
        )
        return EXIT_COULD_NOT_RUN
    if args.bridge_job_selector and args.what != "dashboards":
        print("mt5-agent: render: --bridge-job-selector applies to dashboards only", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    try:
        from alerts.render import JOB_SELECTOR, RUNBOOK_URL

        job_selector = args.job_selector or JOB_SELECTOR
        runbook_url = args.runbook_url or RUNBOOK_URL
        out = root / args.what
        if args.what == "alerts":
            from alerts import render as alerts

            render = lambda: alerts.render_files(  # noqa: E731
                out, settings.thresholds, job_selector=job_selector, runbook_url=runbook_url
            )
        else:
            from dashboards import bridge
            from dashboards import render as dashboards

            render = lambda: dashboards.render_files(  # noqa: E731
                out,
                settings.thresholds,
                job_selector=job_selector,
                runbook_url=runbook_url,
                bridge_job_selector=args.bridge_job_selector or bridge.BRIDGE_JOB_SELECTOR,
            )
    except ImportError as exc:
        print(
            f"mt5-agent: render needs the render extra (pip install 'mt5-monitor[render]'): {exc}",
            file=sys.stderr,
        )
        return EXIT_COULD_NOT_RUN
    try:
        paths = render()
    except ValueError as exc:
        print(f"mt5-agent: render: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    for path in paths:
        print(path)
    return EXIT_OK


def _print_settings(settings: Settings, config: str | None) -> int:
    lines = describe_settings(settings, toml_keys(config))
    width = max(len(line.env) for line in lines)
    for line in lines:
        print(f"{line.env:<{width}}  {line.value}  [{line.source}; default {line.default}]  {line.help}")
    for warning in unknown_env_warnings(os.environ):
        print(f"warning: {warning}")
    return EXIT_OK


def _seconds(text: str) -> float:
    """A non-negative finite number of seconds (argparse type: a bad one is argparse's one-line error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mt5-agent", description="MT5 monitoring agent")
    p.add_argument("--version", action="version", version=f"mt5-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the agent (scheduler + HTTP server)"),
        ("sync-once", "run one sync cycle"),
        ("settings", "print every setting: value, where it came from, default (secrets masked)"),
    ):
        sp = sub.add_parser(
            name,
            help=text,
            epilog="Settings: MT5_AGENT_* environment variables or TOML keys (lower case, no prefix); "
            "`mt5-agent settings` lists them all with their values and defaults.",
        )
        sp.add_argument("--config", help="TOML settings file (environment variables win)")
    demo = sub.add_parser("demo", help="simulated bridge + SQLite + fast schedule on 127.0.0.1:8080")
    demo.add_argument("--config", help="TOML settings file")
    demo.add_argument(
        "--listen", default="127.0.0.1:8080", help="host:port for the agent (default %(default)s)"
    )
    demo.add_argument("--schedule", help="sync schedule (default 5s; the story's length / 24 with the story)")
    demo.add_argument(
        "--calm", action="store_true", help="no story: every account stays live (default: tell the story)"
    )
    demo.add_argument(
        "--story-seconds",
        type=float,
        default=120.0,
        metavar="S",
        help="the story's length; freshness thresholds scale with it (default %(default)g)",
    )
    demo.add_argument("--db", help="SQLite file to keep (default: a temporary one)")
    demo.add_argument(
        "--login-cost",
        type=_seconds,
        default=0.05,
        help="simulated account switch, seconds (default %(default)s)",
    )
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
        "--bridge-job-selector",
        help='dashboards: label matchers that select the bridge\'s series (default: job="mt5-bridge")',
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
    stop_on_sigint()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command's own handling is set up: no traceback
        return 130


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from agent.telemetry.logs import setup_logging

    try:
        if args.command == "demo":
            setup_logging("text" if sys.stderr.isatty() else "json", "INFO")
            _warn_unknown_env()
            return asyncio.run(run_demo(args))
        if args.command == "render":
            return _render(args)
        if args.command == "assign-client":
            account, client_id = _assign_args(args)
        settings = load_settings(args.config)
        if args.command == "settings":
            return _print_settings(settings, args.config)
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
    except ConfigError as exc:  # a source refused at start (a MetaAPI account or token the cloud refuses)
        print(f"mt5-agent: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
