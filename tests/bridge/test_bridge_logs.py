"""`mt5-bridge --version`, and its logs: JSON lines (ts, level, logger, msg) when not on a terminal or
when asked, key=value text when asked, and never a secret (token, account passwords) in any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import aiohttp
import pytest

from bridge import __version__
from bridge.logs import JsonFormatter, KeyValueFormatter, make_handler, redact, register_secrets

REPO = Path(__file__).resolve().parents[2]
TOKEN_SENTINEL = "S3NTINEL-bridge-token-7a90"
PASSWORD_SENTINEL = "S3NTINEL-bridge-pw-c41e"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MT5_BRIDGE_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def test_version_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "--version"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"mt5-bridge {__version__}\n"
    try:
        installed = metadata.version("mt5-monitor")
    except metadata.PackageNotFoundError:
        return
    assert installed == __version__, "bridge.__version__ and the package metadata disagree"


def test_bad_log_format_env_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "--simulate", "--port", "1"],
        cwd=REPO,
        env=_env(MT5_BRIDGE_LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "mt5-bridge: error: MT5_BRIDGE_LOG_FORMAT must be one of auto, json, text, got 'xml'"
    )


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("bridge.pool", logging.WARNING, __file__, 1, msg, args, None)


def test_formatters_scrub_registered_secrets_and_token_shapes() -> None:
    register_secrets([TOKEN_SENTINEL, PASSWORD_SENTINEL])
    for fmt in (JsonFormatter(), KeyValueFormatter()):
        line = fmt.format(
            _record("leak %s and %s, token=abc123 Bearer xyz", TOKEN_SENTINEL, PASSWORD_SENTINEL)
        )
        assert TOKEN_SENTINEL not in line and PASSWORD_SENTINEL not in line
        assert "abc123" not in line and "xyz" not in line
    doc = json.loads(JsonFormatter().format(_record("hello %s", "world")))
    assert set(doc) == {"ts", "level", "logger", "msg"}
    assert (doc["level"], doc["logger"], doc["msg"]) == ("warning", "bridge.pool", "hello world")
    assert doc["ts"].endswith("+00:00")
    assert redact("mongodb://u:p4ss@h/") == "mongodb://u:***@h/"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert isinstance(make_handler("auto", _Tty()).formatter, KeyValueFormatter)
    assert isinstance(make_handler("auto", io.StringIO()).formatter, JsonFormatter)
    assert isinstance(make_handler("text", io.StringIO()).formatter, KeyValueFormatter)
    with pytest.raises(ValueError, match="log format"):
        make_handler("xml")


def _spawn(args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=REPO,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _run_bridge(port: int, tmp_path: Path, *args: str, **env: str) -> str:
    """Start the bridge with one good and one login_failed account, drive a few requests, stop it with
    SIGTERM; return its stderr."""
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps(
            {
                "accounts": [
                    {"login": 7001, "password": PASSWORD_SENTINEL, "server": "Demo-1", "terminal": "t1"},
                    {"login": 7002, "password": PASSWORD_SENTINEL, "server": "Demo-1", "terminal": "t1"},
                ]
            }
        )
    )
    argv = ["--simulate", "--accounts", str(accounts), "--static", "--port", str(port)]
    proc = _spawn([*argv, "--fault", "7002=login_failed", *args], MT5_BRIDGE_TOKEN=TOKEN_SENTINEL, **env)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN_SENTINEL}"}
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, "bridge exited early"
                try:
                    async with s.get(f"{base}/api/mt5/bridge/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "bridge did not answer health in time"
                await asyncio.sleep(0.05)
            async with s.get(f"{base}/api/mt5/account/7001/info", headers=auth) as r:
                assert r.status == 200
            async with s.get(f"{base}/api/mt5/account/7002/info", headers=auth) as r:
                assert r.status == 503
            async with s.get(
                f"{base}/metrics", headers={"Authorization": f"Bearer {PASSWORD_SENTINEL}"}
            ) as r:
                assert r.status == 401
            async with s.get(f"{base}/metrics", headers=auth) as r:
                assert r.status == 200
                assert TOKEN_SENTINEL not in await r.text() and PASSWORD_SENTINEL not in await r.text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert TOKEN_SENTINEL not in err and PASSWORD_SENTINEL not in err
    return err


@pytest.mark.parametrize("how", ["auto", "env", "flag"])
async def test_json_log_lines_parse_and_carry_no_secret(
    how: str, tmp_path: Path, unused_tcp_port: int
) -> None:
    args, env = {
        "auto": ((), {}),
        "env": ((), {"MT5_BRIDGE_LOG_FORMAT": "json"}),
        "flag": (("--log-format", "json"), {}),
    }[how]
    err = await _run_bridge(unused_tcp_port, tmp_path, *args, **env)
    lines = err.strip().splitlines()
    assert len(lines) >= 3, err
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    for doc in docs:
        assert {"ts", "level", "logger", "msg"} <= set(doc), doc
    msgs = [d["msg"] for d in docs]
    assert any(f"listening on http://127.0.0.1:{unused_tcp_port}" in m for m in msgs), msgs
    assert any("7002: login_failed" in m for m in msgs), msgs
    assert docs[-1]["msg"] == "mt5-bridge stopped"


async def test_text_log_format(tmp_path: Path, unused_tcp_port: int) -> None:
    err = await _run_bridge(unused_tcp_port, tmp_path, MT5_BRIDGE_LOG_FORMAT="text")
    lines = err.strip().splitlines()
    assert lines and not any(line.startswith("{") for line in lines), err
    assert any("INFO    bridge: mt5-bridge listening on" in line for line in lines), err
