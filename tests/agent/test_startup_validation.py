"""Finding 7: bad URLs and misspelt variables are caught at start, as real CLI runs.

Each bad setting stops `run` / `sync-once` with exit 2 and one line naming it (never a traceback, never
the URL's credentials); an unknown `MT5_AGENT_*` variable is named in a warning.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.agent.processes import agent_env, spawn_agent
from tests.ports import free_port

SECRET = "s3cretPassw0rd"


async def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await spawn_agent(*args, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"mt5-agent {' '.join(args)} did not stop within {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", ["run", "sync-once"])
@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:///", "needs a path"),
        ("mongodb://127.0.0.1:notaport/", "not a valid MongoDB URL"),
        (f"mongodb://admin:{SECRET}@[::1/", "not a valid MongoDB URL"),
        (f"mongodb://admin:{SECRET}@127.0.0.1:99999/", "not a valid MongoDB URL"),
        (f"mongodb://127.0.0.1/?tlsCertificateKeyFilePassword={SECRET}&tls=maybe", "not a valid MongoDB"),
    ],
)
async def test_bad_store_url_is_one_line_exit_2_without_credentials(
    tmp_path: Path, command: str, url: str, needle: str
) -> None:
    env = agent_env(MT5_AGENT_STORE_URL=url, MT5_AGENT_LISTEN=f"127.0.0.1:{free_port()}")
    code, out, err = await _cli(command, env=env)
    line = _one_line(err)
    assert code == 2, err
    assert line.startswith("mt5-agent: invalid setting MT5_AGENT_STORE_URL: "), line
    assert needle in line
    assert SECRET not in err and SECRET not in out


async def test_missing_sqlite_directory_is_named_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    env = agent_env(
        MT5_AGENT_STORE_URL=f"sqlite:///{missing / 'agent.db'}", MT5_AGENT_BRIDGE_URL="http://127.0.0.1:1"
    )
    for command in ("sync-once", "run"):
        code, _out, err = await _cli(command, env=env)
        line = _one_line(err)
        assert code == 2
        assert line.startswith("mt5-agent: invalid setting MT5_AGENT_STORE_URL: "), line
        assert f"directory {missing} does not exist" in line
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:notaport",
        "http://127.0.0.1:0",
        "http://127.0.0.1:70000",
        f"http://u:{SECRET}@127.0.0.1:x",
    ],
)
async def test_bad_bridge_url_is_refused_at_start(tmp_path: Path, url: str) -> None:
    env = agent_env(MT5_AGENT_BRIDGE_URL=url, MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}")
    code, _out, err = await _cli("sync-once", env=env)
    line = _one_line(err)
    assert code == 2
    assert line.startswith("mt5-agent: invalid setting MT5_AGENT_BRIDGE_URL: "), line
    assert SECRET not in err
    assert not (tmp_path / "a.db").exists()  # refused before anything was opened


async def test_misspelt_variable_is_named_in_a_warning(tmp_path: Path) -> None:
    env = agent_env(
        MT5_AGENT_SHEDULE="10s",
        MT5_AGENT_ADMN_TOKEN=SECRET,
        MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        MT5_AGENT_BRIDGE_URL=f"http://127.0.0.1:{free_port()}",
        MT5_AGENT_HEALTH_RETRIES="1",
        MT5_AGENT_LOG_FORMAT="text",
    )
    code, _out, err = await _cli("sync-once", env=env)
    assert code == 2  # the bridge is down: what matters here is the warning
    warnings = [line for line in err.splitlines() if "unknown environment variable" in line]
    assert len(warnings) == 2, err
    assert any("MT5_AGENT_SHEDULE" in w and "did you mean MT5_AGENT_SCHEDULE?" in w for w in warnings)
    assert any("MT5_AGENT_ADMN_TOKEN" in w and "did you mean MT5_AGENT_ADMIN_TOKEN?" in w for w in warnings)
    assert SECRET not in err  # the name is reported, never the value
