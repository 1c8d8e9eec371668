"""What a new user meets on the command line: --version, one-line errors for bad flags, no traceback on an
early Ctrl-C, TOML lists and key names, `render` refusing an installed package, the access log switch."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from agent import __version__
from tests.agent.processes import ROOT, agent_env, spawn_agent
from tests.ports import free_port

ENTRY = [sys.executable, "-c", "import sys; from agent.entry import main; sys.exit(main())"]


def _run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args], cwd=cwd, env=env or agent_env(), capture_output=True, text=True, timeout=120
    )


def test_version() -> None:
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"mt5-agent {__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--fault", "886602=bogus"], "unknown fault 'bogus'"),
        (["--fault", "123=hang"], "123 is not a demo account"),
        (["--fault", "886602"], "wants LOGIN=FAULT"),
        (["--fault", "٨٨٦٦٠٢=hang"], "wants LOGIN=FAULT"),
    ],
)
def test_demo_bad_fault_is_one_line(args: list[str], expected: str) -> None:
    done = _run("demo", "--listen", f"127.0.0.1:{free_port()}", *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "abc"])
def test_demo_bad_login_cost_is_refused(value: str) -> None:
    done = _run("demo", "--login-cost", value)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "--login-cost" in done.stderr.strip().splitlines()[-1]


def test_toml_freshness_list_and_toml_key_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('store_url = "sqlite:///%s"\nfreshness = [3, 6, 9]\n' % (tmp_path / "a.db"))
    from agent.config import load_settings

    assert str(load_settings(good).thresholds) == "3,6,9"
    bad = tmp_path / "bad.toml"
    bad.write_text("freshness = [9, 6, 3]\n")
    done = _run("sync-once", "--config", str(bad))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"mt5-agent: invalid setting freshness in {bad}:"), line


def test_render_refuses_to_write_into_an_installed_package(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    for package in ("agent", "alerts", "dashboards"):
        shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = (site / "alerts" / "rules.yml").stat().st_mtime_ns
    env = agent_env(PYTHONPATH=str(site))
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "render", "alerts"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "installed package" in line and "--out" in line
    assert (site / "alerts" / "rules.yml").stat().st_mtime_ns == before


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _default_sigint() -> None:  # as from a terminal, whatever this test process inherited
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("delay", "inherited"),
    [
        (0.05, "default"),
        (0.15, "default"),
        (0.3, "default"),
        (0.8, "default"),
        (0.3, "ignored"),
        (0.8, "ignored"),
    ],
)
async def test_early_ctrl_c_never_prints_a_traceback(tmp_path: Path, delay: float, inherited: str) -> None:
    """From the moment the entry point starts loading the CLI (a Ctrl-C during CPython's own start-up,
    before any of our code runs, is CPython's to report). "ignored": started as a background job of a
    non-interactive shell is (with SIGINT ignored, which Python keeps): the SIGINT still stops it, at every
    point of the start-up, not only once it serves."""
    env = agent_env(
        MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        MT5_AGENT_LISTEN=f"127.0.0.1:{free_port()}",
        MT5_AGENT_BRIDGE_URL=f"http://127.0.0.1:{free_port()}",
        MT5_AGENT_SCHEDULE="1h",
        PYTHONFAULTHANDLER="1",  # a SIGABRT below dumps every thread's stack: where it hung
    )
    announced = "import sys; from agent.entry import main; print('entry', flush=True); sys.exit(main())"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        announced,
        "run",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ignore_sigint if inherited == "ignored" else _default_sigint,
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"entry"
    await asyncio.sleep(delay)  # the point of the test is *when* the signal lands
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.send_signal(signal.SIGABRT)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        pytest.fail(f"still running 30 s after Ctrl-C at {delay} s; its threads:\n{err.decode()[-8000:]}")
    assert "Traceback" not in err.decode(), err.decode()
    assert proc.returncode in (0, 130, -signal.SIGINT)


@pytest.mark.parametrize("enabled", [True, False])
async def test_access_log_switch(tmp_path: Path, enabled: bool) -> None:
    port = free_port()
    env = agent_env(
        MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        MT5_AGENT_LISTEN=f"127.0.0.1:{port}",
        MT5_AGENT_BRIDGE_URL=f"http://127.0.0.1:{free_port()}",
        MT5_AGENT_SCHEDULE="1h",
        MT5_AGENT_ACCESS_LOG="true" if enabled else "false",
        MT5_AGENT_LOG_FORMAT="json",
    )
    proc = await spawn_agent("run", env=env)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz?probe=access") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    assert asyncio.get_running_loop().time() < deadline, "agent did not listen"
                    await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    logged = "probe=access" in err.decode()
    assert logged is enabled, err.decode()[-2000:]


def test_settings_lists_every_setting_with_its_source_and_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('schedule = "10s"\nlisten = "127.0.0.1:9999"\n')
    secret_file = tmp_path / "jwt"
    secret_file.write_text("j" * 40)
    env = agent_env(
        MT5_AGENT_LISTEN="127.0.0.1:9100",
        MT5_AGENT_ADMIN_TOKEN="admin-sentinel-value",
        MT5_AGENT_JWT_SECRET_FILE=str(secret_file),
        MT5_AGENT_STORE_URL="mongodb://ops:pw-sentinel@127.0.0.1:27017/",
        MT5_AGENT_SHEDULE="5m",
    )
    done = _run("settings", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for sentinel in ("admin-sentinel-value", "pw-sentinel", "j" * 40):
        assert sentinel not in out + done.stderr
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("MT5_AGENT_")}
    from agent.config import Settings

    secret_companions = {
        f"{n}_file" for n in ("bridge_token", "admin_token", "api_token", "jwt_secret", "metrics_token")
    }
    assert set(rows) == {
        f"MT5_AGENT_{n.upper()}" for n in Settings.model_fields if n not in secret_companions
    }
    assert "10s" in rows["MT5_AGENT_SCHEDULE"] and "[file;" in rows["MT5_AGENT_SCHEDULE"]
    assert "127.0.0.1:9100" in rows["MT5_AGENT_LISTEN"] and "[environment;" in rows["MT5_AGENT_LISTEN"]
    assert "[default; default 300,600,900]" in rows["MT5_AGENT_FRESHNESS"]
    assert "(set, masked)" in rows["MT5_AGENT_ADMIN_TOKEN"]
    assert f"secret file {secret_file}" in rows["MT5_AGENT_JWT_SECRET"]
    assert "mongodb://ops:***@127.0.0.1:27017/" in rows["MT5_AGENT_STORE_URL"]
    assert "did you mean MT5_AGENT_SCHEDULE?" in out


def test_run_help_points_at_the_settings() -> None:
    done = _run("run", "--help")
    assert done.returncode == 0 and "mt5-agent settings" in done.stdout
