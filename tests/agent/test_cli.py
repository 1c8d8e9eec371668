"""The commands as real subprocesses: exit codes of sync-once, clean start/stop of run and demo."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.agent.processes import agent_env, spawn_agent
from tests.ports import free_port


async def _sync_once(tmp_path: Path, url: str) -> tuple[int, str, str]:
    env = agent_env(
        MT5_AGENT_BRIDGE_URL=url,
        MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        MT5_AGENT_HEALTH_BACKOFF="0.01",
        MT5_AGENT_REQUEST_TIMEOUT="2",
    )
    proc = await spawn_agent("sync-once", env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_sync_once_exit_codes(seed, tmp_path: Path) -> None:
    bridge, url = seed
    code, out, _ = await _sync_once(tmp_path, url)
    assert code == 0, out
    assert out.strip().startswith("sync complete: 7/7 accounts synced in ")

    bridge.behaviour[886066] = "http_500"
    code, out, _ = await _sync_once(tmp_path, url)
    assert code == 1
    assert "6/7 accounts synced" in out and "1 failed" in out

    code, out, _ = await _sync_once(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert code == 2
    assert out.startswith("sync skipped: bridge unavailable")


async def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = await spawn_agent("sync-once", env=agent_env(MT5_AGENT_SCHEDULE="whenever"))
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "MT5_AGENT_SCHEDULE" in lines[0]


async def _wait_http(url: str, pred, timeout: float = 30.0) -> object:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    body = await r.json(content_type=None)
                    if pred(r.status, body):
                        return body
            except (aiohttp.ClientError, json.JSONDecodeError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} never satisfied the condition")
            await asyncio.sleep(0.1)


async def _stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGINT) -> int:
    proc.send_signal(sig)
    await asyncio.wait_for(proc.wait(), 15)
    return proc.returncode


async def test_run_serves_syncs_and_stops_cleanly(seed, tmp_path: Path) -> None:
    _, url = seed
    port = free_port()
    env = agent_env(
        MT5_AGENT_BRIDGE_URL=url,
        MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}",
        MT5_AGENT_SCHEDULE="1s",
        MT5_AGENT_LISTEN=f"127.0.0.1:{port}",
        MT5_AGENT_LOG_FORMAT="json",
    )
    proc = await spawn_agent("run", env=env)
    try:
        await _wait_http(f"http://127.0.0.1:{port}/readyz", lambda st, b: st == 200 and b["ready"])
    finally:
        code = await _stop(proc, signal.SIGTERM)
    assert code == 0
    err = (await proc.stderr.read()).decode()
    summaries = [json.loads(line) for line in err.splitlines() if '"sync complete' in line]
    assert summaries and summaries[0]["msg"].startswith("sync complete: 7/7 accounts synced")


async def test_demo_shows_accounts_syncing_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = await spawn_agent("demo", "--listen", f"127.0.0.1:{port}", "--schedule", "1s", env=agent_env())
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert first.startswith("mt5-agent demo: 9 simulated accounts on two bridges")
        await _wait_http(f"http://127.0.0.1:{port}/readyz", lambda st, b: st == 200 and b["ready"])
    finally:
        code = await _stop(proc, signal.SIGINT)
    assert code == 0


# assign-client (finding 8): the documented way to give an account an owner outside the demo. ---------


async def _assign(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = agent_env(MT5_AGENT_STORE_URL=f"sqlite:///{tmp_path / 'a.db'}")
    proc = await spawn_agent("assign-client", *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def _clients(tmp_path: Path) -> dict[int, str | None]:
    from agent.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "a.db"))
    await store.open()
    try:
        every = {r.account for r in await store.accounts.get_accounts()}
        owned = {
            r.account: client
            for client in ("client_x", "client_y")
            for r in await store.accounts.get_accounts(client_id=client)
        }
    finally:
        await store.close()
    return {a: owned.get(a) for a in every}


async def test_assign_client_assigns_reassigns_and_unassigns(tmp_path: Path) -> None:
    code, out, err = await _assign(tmp_path, "886557", "client_x")
    assert (code, out.strip(), err) == (0, "account 886557 assigned to client_x", "")
    assert await _clients(tmp_path) == {886557: "client_x"}  # a never-synced account gets its document

    assert (await _assign(tmp_path, "886557", "client_y"))[0] == 0
    assert (await _assign(tmp_path, "891215", "client_x"))[0] == 0
    assert await _clients(tmp_path) == {886557: "client_y", 891215: "client_x"}

    code, out, _ = await _assign(tmp_path, "886557", "--unassign")
    assert (code, out.strip()) == (0, "account 886557 unassigned")
    assert await _clients(tmp_path) == {886557: None, 891215: "client_x"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("0", "c"), "ACCOUNT must be a positive integer"),
        (("-5", "c"), "ACCOUNT must be a positive integer"),
        (("abc", "c"), "ACCOUNT must be a positive integer"),
        (("1.5", "c"), "ACCOUNT must be a positive integer"),
        (("²", "c"), "ACCOUNT must be a positive integer"),
        (("١٢٣", "c"), "ACCOUNT must be a positive integer"),
        ((" 7", "c"), "ACCOUNT must be a positive integer"),
        ((str(2**63), "c"), "ACCOUNT must be a positive integer"),
        (("9" * 5000, "c"), "ACCOUNT must be a positive integer"),
        (("7", ""), "CLIENT_ID: client_id must be 1 to 128 printable ASCII characters other than '/'"),
        (("7", "x" * 129), "CLIENT_ID: client_id must be 1 to 128"),
        (("7", "tab\there"), "CLIENT_ID: client_id must be 1 to 128"),
        (("7", "a/b"), "CLIENT_ID: client_id must be 1 to 128"),
        (("7", "café"), "CLIENT_ID: client_id must be 1 to 128"),
        (("7",), "CLIENT_ID is required"),
        (("7", "c", "--unassign"), "not both"),
    ],
)
async def test_assign_client_refuses_bad_input_in_one_line(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    code, out, err = await _assign(tmp_path, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not out and not (tmp_path / "a.db").exists()  # refused before the store was opened


async def test_assign_client_with_the_store_down_is_one_line_exit_2() -> None:
    env = agent_env(MT5_AGENT_STORE_URL=f"mongodb://root:Sup3rSecretPw@127.0.0.1:{free_port()}/")
    proc = await spawn_agent("assign-client", "886557", "client_x", env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mt5-agent assign-client: store unavailable: "), lines
    assert b"Sup3r" not in err and not out
