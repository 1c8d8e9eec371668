"""The `mt5-agent` console entry: imports the CLI inside a guard, so a Ctrl-C during the first half
second (while aiohttp, pydantic and OpenTelemetry load) ends quietly with 130 instead of a traceback.

While the CLI is being imported, SIGINT exits at once (nothing is open yet): a KeyboardInterrupt raised
inside a C extension's work (pydantic-core building a validator) comes out wrapped in that library's own
error, with a traceback, so catching KeyboardInterrupt alone is not enough."""

from __future__ import annotations

import os
import signal
from types import FrameType


def _quit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(130)


def main() -> int:
    try:
        previous = signal.signal(signal.SIGINT, _quit_now)
    except ValueError:  # not the main thread (embedded use): keep Python's own handling
        previous = None
    try:
        from agent.cli import main as cli_main
    except KeyboardInterrupt:
        return 130
    finally:
        if previous is not None:  # inherited as ignored: Ctrl-C stops the agent all the same (cli.main)
            ignored = previous in (signal.SIG_IGN, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler if ignored else previous)
    try:
        return cli_main()
    except KeyboardInterrupt:
        return 130
