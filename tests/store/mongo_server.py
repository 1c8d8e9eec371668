"""A real MongoDB wire-protocol server for the store tests: SecantusDB's `secantusd-py` in a subprocess.

Started on 127.0.0.1 with a free port and its own data directory; stoppable and restartable on the same
port and data, so tests can take the store down and bring it back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import PyMongoError

from tests.ports import free_port

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def find_secantusd() -> str | None:
    """Prefer the executable beside this interpreter (the project venv), then PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("secantusd-py")


def require_secantusd() -> str:
    """Skip loudly without the server locally; in CI (CI=true) its absence is a failure, not a skip."""
    exe = find_secantusd()
    if exe is None:
        reason = (
            "secantusd-py (SecantusDB, a MongoDB wire-protocol server) not found beside "
            f"{sys.executable} or on PATH: MongoStore contract tests NOT RUN. "
            "Install the dev extras: pip install -e '.[dev]'"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return exe


class MongoServer:
    def __init__(self, exe: str, data_dir: Path, port: int | None = None) -> None:
        self.exe = exe
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [
            self.exe,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.data_dir),
            "--log-level",
            "WARNING",
        ]

    def start(self) -> None:
        assert self.proc is None, "server already running"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "<no log>"

    def wait_ready(self) -> None:
        """Poll until the server answers a ping; fail with its log if it exits or never answers."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        client: pymongo.MongoClient = pymongo.MongoClient(
            self.url, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"secantusd-py exited with {self.proc.returncode}:\n{self._log_tail()}")
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    if time.monotonic() > deadline:
                        self.stop()
                        pytest.fail(
                            f"secantusd-py did not answer within {START_TIMEOUT_S}s:\n{self._log_tail()}"
                        )
        finally:
            client.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def client(self) -> pymongo.MongoClient:
        """A plain synchronous client for tests to look behind the store's back."""
        return pymongo.MongoClient(self.url, serverSelectionTimeoutMS=5000, tz_aware=True)
