"""The agent's commands as real subprocesses (`python -m agent.cli ...`), with a clean environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def agent_env(**kw: str) -> dict[str, str]:
    """This process's environment without any MT5_AGENT_* or OTEL_* variable, plus `kw`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MT5_AGENT_", "OTEL_"))}
    env.update(kw)
    return env


async def spawn_agent(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
