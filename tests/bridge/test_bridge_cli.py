"""`mt5-bridge` as a real subprocess (serves, stops on SIGINT) and its one-line start-up errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bridge.cli import is_loopback, main

REPO = Path(__file__).resolve().parents[2]
SENTINEL = "S3NTINEL-cli-pw-41d2"
EXIT_BOUND = 10.0  # seconds a SIGINT may take to stop the bridge


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MT5_BRIDGE_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _spawn(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=REPO,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _wait_for_health(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise AssertionError(
                f"bridge exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            async with session.get(f"{base}/api/mt5/bridge/health") as r:
                if r.status == 200:
                    return await r.json()
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, "bridge did not answer health in time"
        await asyncio.sleep(0.05)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT) -> tuple[float, str, str]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"bridge did not stop within {EXIT_BOUND} s of {sig.name}: {err[-2000:]}"
        ) from None
    return time.monotonic() - t0, out, err


async def test_simulate_serves_and_stops_on_sigint(unused_tcp_port: int) -> None:
    proc = _spawn(
        "--simulate", "--port", str(unused_tcp_port), "--fault", "886557=hang", "--call-timeout", "0.5"
    )
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with aiohttp.ClientSession() as s:
            health = await _wait_for_health(s, base, proc)
            assert health["status"] == "healthy" and health["terminals"]["total"] == 7
            async with s.get(f"{base}/api/mt5/account/886066/info") as r:
                assert r.status == 200 and (await r.json())["live_data"]["login"] == 886066
            async with s.get(f"{base}/api/mt5/account/886557/info") as r:  # leaves a worker thread hung
                assert r.status == 504 and (await r.json())["error"]["code"] == "terminal_timeout"
    finally:
        elapsed, _, err = _stop(proc)
    assert proc.returncode == 0, err
    assert elapsed < EXIT_BOUND
    assert "unauthenticated" in err and "loopback only" in err
    assert f"listening on http://127.0.0.1:{unused_tcp_port}" in err
    assert "886557: hang" in err and "terminal sim-886557 is unhealthy" in err


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6])
def test_a_sigint_inherited_as_ignored_still_stops_it_from_the_first_moment(
    unused_tcp_port: int, delay: float
) -> None:
    """Started as a background job of a non-interactive shell is (with SIGINT ignored, which Python
    keeps): a SIGINT during start-up (before aiohttp's own handler) stops it all the same, quietly.
    From `main` on: between the 'entry' line and main's first statement it would still be ignored."""
    announced = "import sys; from bridge.cli import main; print('entry', flush=True); sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", announced, "--simulate", "--port", str(unused_tcp_port)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "entry"
    time.sleep(delay)  # the point of the test is *when* the signal lands
    _, _, err = _stop(proc)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 130), err


async def test_accounts_file_token_and_no_secret_in_output(tmp_path: Path, unused_tcp_port: int) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "login": 7001,
                        "password": SENTINEL,
                        "name": "Seven",
                        "server": "Demo-1",
                        "currency": "EUR",
                        "leverage": 50,
                        "balance": 1234.5,
                        "terminal": "shared",
                    },
                    {
                        "login": 7002,
                        "password": SENTINEL,
                        "name": "Eight",
                        "server": "Demo-1",
                        "balance": 99,
                        "terminal": "shared",
                    },
                ],
                "utc_offset_hours": 2,
            }
        )
    )
    token = "cli-token-93e1"
    proc = _spawn(
        "--simulate",
        "--accounts",
        str(accounts),
        "--static",
        "--port",
        str(unused_tcp_port),
        "--fault",
        "7002=login_failed",
        MT5_BRIDGE_TOKEN=token,
    )
    base = f"http://127.0.0.1:{unused_tcp_port}"
    auth = {"Authorization": f"Bearer {token}"}
    bodies = []
    try:
        async with aiohttp.ClientSession() as s:
            hidden = await _wait_for_health(s, base, proc)
            assert "terminals" not in hidden
            async with s.get(f"{base}/api/mt5/account/7001/info") as r:
                assert r.status == 401
            for path in ("info", "trades", "positions"):
                async with s.get(f"{base}/api/mt5/account/7001/{path}", headers=auth) as r:
                    assert r.status == 200
                    bodies.append(await r.text())
            async with s.get(f"{base}/api/mt5/account/7002/info", headers=auth) as r:
                assert r.status == 503
                bodies.append(await r.text())
            async with s.get(f"{base}/api/mt5/bridge/health", headers=auth) as r:
                health = await r.json()
                bodies.append(json.dumps(health))
    finally:
        _, out, err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    info = json.loads(bodies[0])["live_data"]
    assert (info["login"], info["balance"], info["currency"], info["leverage"]) == (7001, 1234.5, "EUR", 50)
    assert health["terminals"]["total"] == 1 and health["terminals"]["items"][0]["utc_offset_hours"] == 2
    assert "unauthenticated" not in err
    assert SENTINEL not in "".join(bodies) + out + err


def test_bad_accounts_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.json"
    bad.write_text(json.dumps({"accounts": [{"login": "abc", "password": SENTINEL, "server": "x"}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "--simulate", "--accounts", str(bad), "--port", "1"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mt5-bridge: error: accounts file ") and "accounts[0].login" in lines[0]
    assert SENTINEL not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--simulate", "--host", "0.0.0.0"], "refusing to bind 0.0.0.0 without MT5_BRIDGE_TOKEN"),
        (["--simulate", "--host", "bridge.example.com"], "refusing to bind bridge.example.com"),
        (["--simulate", "--port", "abc"], "argument --port: invalid port value: 'abc'"),
        (["--simulate", "--port", "70000"], "must be 0..65535"),
        (["--simulate", "--fault", "886557=explode"], "unknown fault 'explode'"),
        (["--simulate", "--fault", "nonsense"], "--fault expects LOGIN=FAULT"),
        (["--simulate", "--fault", "1=hang"], "fault for unknown account(s): 1"),
        (["--simulate", "--terminals", "0"], "must be >= 1"),
        (["--simulate", "--call-timeout", "0"], "must be > 0"),
        (
            ["--simulate", "--accounts", "/nonexistent/accounts.json"],
            "cannot read /nonexistent/accounts.json",
        ),
        (["--simulate", "--bogus"], "unrecognized arguments: --bogus"),
        (["--simulate", "--time-scale", "0"], "must be > 0 and <= 10000"),
        (["--simulate", "--clock-start", "yesterday"], "expected an ISO-8601 time"),
        (["--simulate", "--clock-start=+1h"], "3600 s ahead of the wall clock"),
        (["--config", "x.json", "--clock-start=-1h"], "--clock-start only apply with --simulate"),
        (["--config", "x.json", "--time-scale", "60"], "--time-scale only apply with --simulate"),
        ([], "--config FILE is required without --simulate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(monkeypatch, capsys, argv, expected) -> None:
    for name in ("MT5_BRIDGE_TOKEN", "MT5_BRIDGE_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("mt5-bridge: error: ") and expected in err


def test_real_mode_without_metatrader5_package(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)
    cfg = tmp_path / "bridge.json"
    cfg.write_text(json.dumps({"accounts": [{"login": 1, "password": SENTINEL, "server": "s"}]}))
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "mt5-bridge: error: the MetaTrader5 package is not installed (it exists only on Windows); "
        "use --simulate"
    )


def test_is_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))
