"""Findings 12 and 14: the HTTP listener comes first.

A port in use stops `run` (and `demo`) with one line naming MT5_AGENT_LISTEN before anything is opened:
no run in the store, no unclosed client session. With MongoDB unreachable at start, /healthz and /metrics
answer at once (the store is opened by the first cycle, in the background) and /readyz says 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from tests.agent.processes import agent_env, spawn_agent
from tests.ports import free_port

STORE_TIMEOUT_S = 5.0  # MongoStore's server-selection timeout when the agent opens it


@contextlib.contextmanager
def _occupied_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def _runs_in(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return (
            conn.execute("SELECT COUNT(*) FROM mt5_sync_runs").fetchone()[0]
            if "mt5_sync_runs" in tables
            else 0
        )


async def test_port_in_use_stops_run_before_anything_is_opened(seed, tmp_path: Path) -> None:
    _, url = seed
    db = tmp_path / "agent.db"
    with _occupied_port() as busy:
        port = busy.getsockname()[1]
        env = agent_env(
            MT5_AGENT_BRIDGE_URL=url,
            MT5_AGENT_STORE_URL=f"sqlite:///{db}",
            MT5_AGENT_SCHEDULE="1s",
            MT5_AGENT_LISTEN=f"127.0.0.1:{port}",
        )
        proc = await spawn_agent("run", env=env)
        _out, err_b = await asyncio.wait_for(proc.communicate(), 60)
    err = err_b.decode()
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert (
        lines[0] == f"mt5-agent: cannot listen on 127.0.0.1:{port} (MT5_AGENT_LISTEN): Address already in use"
    )
    assert "Unclosed" not in err and "Traceback" not in err
    assert _runs_in(db) == 0
    assert not db.exists()  # the store was never even opened


async def test_port_in_use_stops_demo_naming_listen(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    with _occupied_port() as busy:
        port = busy.getsockname()[1]
        proc = await spawn_agent("demo", "--listen", f"127.0.0.1:{port}", "--db", str(db), env=agent_env())
        out, err_b = await asyncio.wait_for(proc.communicate(), 60)
    err = err_b.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [
        f"mt5-agent demo: cannot listen on 127.0.0.1:{port} (--listen): Address already in use"
    ]
    assert not out and not db.exists()


class _HungMongo:
    """A MongoDB that accepts connections and never answers (a hung mongod): records when the agent
    first tried to reach it."""

    def __init__(self) -> None:
        self.first_connect: float | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.first_connect is None:
            self.first_connect = time.monotonic()
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    async def __aenter__(self) -> _HungMongo:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self._writers:
            w.close()
        await self.server.wait_closed()


async def _first_ok(session: aiohttp.ClientSession, url: str, deadline: float) -> float:
    """Monotonic time of the first 200 from `url` (polled every 20 ms)."""
    while time.monotonic() < deadline:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                if r.status == 200:
                    return time.monotonic()
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never answered 200")


async def _read_lines(stream: asyncio.StreamReader, into: list[tuple[float, str]]) -> None:
    while line := await stream.readline():
        into.append((time.monotonic(), line.decode()))


@pytest.mark.parametrize("mongo", ["closed port", "hung server"])
async def test_healthz_answers_at_once_while_mongo_is_down(mongo: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with contextlib.AsyncExitStack() as stack:
        hung = await stack.enter_async_context(_HungMongo()) if mongo == "hung server" else None
        mongo_port = hung.port if hung else free_port()
        env = agent_env(
            MT5_AGENT_STORE_URL=f"mongodb://127.0.0.1:{mongo_port}/",
            MT5_AGENT_BRIDGE_URL=f"http://127.0.0.1:{free_port()}",
            MT5_AGENT_SCHEDULE="1h",
            MT5_AGENT_LISTEN=f"127.0.0.1:{port}",
            MT5_AGENT_LOG_FORMAT="json",
            MT5_AGENT_HEALTH_RETRIES="1",
            PYTHONFAULTHANDLER="1",  # a SIGABRT below dumps every thread's stack: where it hung
        )
        spawned = time.monotonic()
        proc = await spawn_agent("run", env=env)
        lines: list[tuple[float, str]] = []
        assert proc.stderr is not None
        reader = asyncio.create_task(_read_lines(proc.stderr, lines))
        try:
            async with aiohttp.ClientSession() as s:
                healthy_at = await _first_ok(s, f"{base}/healthz", spawned + 30)
                metrics_started = time.monotonic()
                async with s.get(f"{base}/metrics") as r:
                    assert r.status == 200
                    assert "mt5_store_up" in await r.text()
                metrics_took = time.monotonic() - metrics_started
                async with s.get(f"{base}/readyz", timeout=aiohttp.ClientTimeout(total=20)) as r:
                    assert r.status == 503
                    assert "store unreachable" in (await r.json())["problems"]
        finally:
            proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            try:  # ~5 s (the scheduler's grace for the cycle stuck on the store); once >30 s under load
                code = await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.send_signal(signal.SIGABRT)
                await asyncio.wait_for(proc.wait(), 30)
                await asyncio.wait_for(reader, 10)
                told = "".join(f"{t - stopping:+.2f} {line}" for t, line in lines)
                pytest.fail(f"still running 60 s after SIGTERM; its log and threads:\n{told[-12000:]}")
            await asyncio.wait_for(reader, 10)
    assert code == 0
    listen = [t for t, line in lines if "agent listening on" in line]
    assert listen, lines
    # Served within a second of the listen line, and long before the store could have answered.
    assert healthy_at - listen[0] < 1.0
    assert metrics_took < 1.0
    if hung is not None:
        assert hung.first_connect is not None  # the agent did try the store meanwhile
        assert healthy_at - hung.first_connect < STORE_TIMEOUT_S / 2
    else:
        assert healthy_at - spawned < STORE_TIMEOUT_S
    err = "".join(line for _, line in lines)
    assert "Unclosed" not in err and "Traceback" not in err
