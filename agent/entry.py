"""The `mt5-agent` console entry: imports the CLI inside a guard, so a Ctrl-C during the first half
second (while aiohttp, pydantic and OpenTelemetry load) ends quietly with 130 instead of a traceback."""

from __future__ import annotations


def main() -> int:
    try:
        from agent.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return 130
