"""`mt5-agent run` as a real process: SIGTERM closes every open stream with 1001 (going away), and the
agent still exits 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.agent.processes import agent_env, spawn_agent
from tests.api.stream_client import STREAM, closed_with, subscribe
from tests.ports import free_port

TOKEN = "stream-sigterm-read-token-5a1c"


async def test_sigterm_closes_every_stream_with_1001(fake_bridge, tmp_path: Path) -> None:
    _, bridge_url = fake_bridge
    port = free_port()
    env = agent_env(
        MT5_AGENT_BRIDGE_URL=bridge_url,
        MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        MT5_AGENT_SCHEDULE="1s",
        MT5_AGENT_LISTEN=f"127.0.0.1:{port}",
        MT5_AGENT_API_TOKEN=TOKEN,
        MT5_AGENT_LOG_FORMAT="json",
    )
    proc = await spawn_agent("run", env=env)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}{STREAM}"
            async with asyncio.timeout(30):
                while True:  # until it listens and its store answers (the first cycle opens it)
                    try:
                        streams = [
                            await session.ws_connect(url, protocols=("bearer", TOKEN)) for _ in range(3)
                        ]
                        for ws in streams:
                            await subscribe(ws)
                        break
                    except (aiohttp.ClientError, AssertionError):
                        await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(closed_with(ws, timeout=20) for ws in streams))
            assert [code for code, _ in codes] == [1001, 1001, 1001], codes
        code = await asyncio.wait_for(proc.wait(), 20)
        assert proc.stderr is not None
        assert code == 0, (await proc.stderr.read()).decode()[-6000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
