"""`mt5-bridge`: serve the bridge API over simulated terminals (--simulate) or the MetaTrader5 package.

Every start-up problem (bad argument, bad file, missing package, unsafe bind) ends with one line on stderr
and exit code 2, so a supervisor's log says exactly what to fix.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NoReturn

from aiohttp import web

from bridge import __version__
from bridge.api import create_app
from bridge.config import ConfigError, load_accounts_file, load_real_config, load_token
from bridge.logs import FORMAT_ENV, FORMATS, register_secrets, setup_logging
from bridge.mt5_terminal import MetaTrader5NotInstalled, MetaTrader5Terminal
from bridge.pool import TerminalPool
from bridge.sim_clock import MAX_SCALE, SimClock, parse_instant
from bridge.simulated import FAULTS, simulated_pool

log = logging.getLogger("bridge")
PROG = "mt5-bridge"


class UsageError(Exception):
    """Reported as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print the whole usage block
        raise UsageError(message)


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _offset(text: str) -> float:
    value = float(text)
    if not -14 <= value <= 14:
        raise argparse.ArgumentTypeError(f"must be between -14 and 14 hours, got {text}")
    return value


def _scale(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_SCALE:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= {MAX_SCALE:g}, got {text}")
    return value


# argparse names the type in "invalid <name> value" messages
_non_negative.__name__ = "non-negative number"
_positive.__name__ = "positive number"
_port.__name__ = "port"
_count.__name__ = "count"
_offset.__name__ = "hour offset"
_scale.__name__ = "time scale"


def _sim_clock(args: argparse.Namespace) -> SimClock | None:
    """None: the wall clock. Refuses a simulated clock that is already ahead of the wall clock."""
    if args.clock_start is None and args.clock_anchor is None and args.time_scale == 1.0:
        return None
    now = time.time()
    try:
        start = now if args.clock_start is None else parse_instant(args.clock_start, now=now)
        anchor = now if args.clock_anchor is None else parse_instant(args.clock_anchor, now=now)
    except ValueError as e:
        raise UsageError(f"--clock-start/--clock-anchor: {e}") from None
    clock = SimClock(start=start, anchor=anchor, scale=args.time_scale)
    ahead = clock.ahead_now()
    if ahead > 1.0:
        raise UsageError(
            f"the simulated clock would be {ahead:.0f} s ahead of the wall clock: agents refuse times "
            "from the future; give an earlier --clock-start"
        )
    return clock


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="MT5 bridge: a JSON REST API over MetaTrader 5 terminals.")
    p.add_argument("--simulate", action="store_true", help="serve simulated terminals instead of MetaTrader5")
    p.add_argument(
        "--accounts", metavar="FILE", help="simulated accounts (JSON); default: the 7 demo accounts"
    )
    p.add_argument("--config", metavar="FILE", help="real terminal config (JSON or TOML) without --simulate")
    p.add_argument("--static", action="store_true", help="freeze simulated values")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--terminals", type=_count, metavar="N", help="spread simulated accounts over N terminals")
    p.add_argument(
        "--login-cost", type=_non_negative, default=0.0, metavar="S", help="simulated login seconds"
    )
    p.add_argument(
        "--latency", type=_non_negative, default=0.0, metavar="S", help="simulated per-call seconds"
    )
    p.add_argument(
        "--fault", action="append", default=[], metavar="LOGIN=FAULT", help=f"one of: {', '.join(FAULTS)}"
    )
    p.add_argument("--call-timeout", type=_positive, default=10.0, metavar="S", help="per-call timeout (10)")
    p.add_argument("--utc-offset", type=_offset, metavar="HOURS", help="broker time offset from UTC")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (42)")
    p.add_argument(
        "--clock-start",
        metavar="WHEN",
        help="simulated time at start: ISO-8601 UTC, epoch seconds or relative (--clock-start=-6h)",
    )
    p.add_argument(
        "--time-scale",
        type=_scale,
        default=1.0,
        metavar="K",
        help="simulated seconds per wall second (1); start in the past, or agents refuse future times",
    )
    p.add_argument(
        "--clock-anchor",
        metavar="EPOCH",
        help="wall time (epoch seconds) at which the simulated clock shows --clock-start; default now "
        "(give the same start and anchor to a restarted bridge to continue the same run)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        help=f"auto: text on a terminal, JSON lines otherwise (default: ${FORMAT_ENV} or auto)",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def _log_format(arg: str | None) -> str:
    if arg is not None:
        return arg
    value = os.environ.get(FORMAT_ENV, "").strip().lower() or "auto"
    if value not in FORMATS:
        raise UsageError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, got {value[:40]!r}")
    return value


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name could resolve anywhere


def _parse_faults(specs: Sequence[str]) -> dict[int, str]:
    faults: dict[int, str] = {}
    for spec in specs:
        login_text, sep, fault = spec.partition("=")
        if not sep or not login_text.strip().isdigit():
            raise UsageError(f"--fault expects LOGIN=FAULT, got {spec!r}")
        if fault not in FAULTS:
            raise UsageError(
                f"--fault {spec!r}: unknown fault {fault!r}; expected one of {', '.join(FAULTS)}"
            )
        faults[int(login_text)] = fault
    return faults


def _build_pool(args: argparse.Namespace) -> tuple[TerminalPool, str]:
    if args.simulate:
        if args.config:
            raise UsageError("--config is for the MetaTrader5 terminal; use --accounts with --simulate")
        accounts, offset = None, 0.0
        clock = _sim_clock(args)
        if args.accounts:
            file = load_accounts_file(args.accounts)
            accounts, offset = list(file.accounts), file.utc_offset_hours
        if args.utc_offset is not None:
            offset = args.utc_offset
        try:
            pool = simulated_pool(
                accounts,
                terminals=args.terminals,
                login_cost=args.login_cost,
                latency=args.latency,
                faults=_parse_faults(args.fault),
                static=args.static,
                seed=args.seed,
                utc_offset_hours=offset,
                clock=clock.now if clock is not None else None,
            )
        except ValueError as e:
            raise UsageError(str(e)) from None
        return pool, "simulated" if clock is None else f"simulated, {_describe(clock)}"
    if not args.config:
        raise UsageError("--config FILE is required without --simulate (or use --simulate)")
    sim_only = [
        "--" + n.replace("_", "-")
        for n in (
            "accounts",
            "static",
            "terminals",
            "fault",
            "login_cost",
            "latency",
            "clock_start",
            "clock_anchor",
        )
        if getattr(args, n)
    ]
    if args.time_scale != 1.0:
        sim_only.append("--time-scale")
    if sim_only:
        raise UsageError(f"{', '.join(sim_only)} only apply with --simulate")
    cfg, creds = load_real_config(args.config)
    offset = args.utc_offset if args.utc_offset is not None else cfg.utc_offset_hours
    terminal = MetaTrader5Terminal(path=cfg.path, name=cfg.name, utc_offset_hours=offset)
    return TerminalPool([(terminal, creds)]), "MetaTrader5"


def _describe(clock: SimClock) -> str:
    start = datetime.fromtimestamp(clock.now(), UTC).isoformat(timespec="seconds")
    text = f"clock at {start} x{clock.scale:g}"
    overtakes = clock.overtakes_wall_at()
    if overtakes is not None:
        at = datetime.fromtimestamp(overtakes, UTC).isoformat(timespec="seconds")
        text += f", ahead of the wall clock from {at}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    # SIGINT stops the bridge from its first moment, even when inherited as ignored (a background job of
    # a non-interactive shell): run_app's handler comes only once it serves, and a Ctrl-C before that
    # was lost. A Ctrl-C before serving ends quietly with 130.
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        setup_logging(_log_format(args.log_format), args.log_level)
        token = load_token()
        register_secrets([token])
        if token is None and not is_loopback(args.host):
            raise UsageError(
                f"refusing to bind {args.host} without MT5_BRIDGE_TOKEN or MT5_BRIDGE_TOKEN_FILE "
                "(an unauthenticated bridge may only listen on loopback)"
            )
        pool, kind = _build_pool(args)
        register_secrets(pool.credentials(login).password for login in pool.accounts)
    except (UsageError, ConfigError, MetaTrader5NotInstalled) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2

    if token is None:
        log.warning("no MT5_BRIDGE_TOKEN set: the bridge is unauthenticated and listens on loopback only")
    for login, fault in _parse_faults(args.fault).items():
        log.warning("simulated fault on account %s: %s", login, fault)
    terminals = len(pool.handles)
    summary = f"{kind}, {len(pool.accounts)} accounts on {terminals} terminal{'s' * (terminals != 1)}"
    app = create_app(pool, token=token, call_timeout=args.call_timeout)

    def announce(_: str) -> None:
        log.info("mt5-bridge listening on http://%s:%d (%s)", args.host, args.port, summary)

    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            print=announce,
            access_log=None,
            shutdown_timeout=3.0,
            handle_signals=True,
        )
    except OSError as e:
        pool.close()
        print(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    log.info("mt5-bridge stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
