"""The MetaAPI source wired in the composition root (issue 15): a `[[sources]]` entry of kind `metaapi`
is built with the agent's log scrubber, checked with the cloud at start (`verify`), synced beside a real
bridge into the one store and fleet, and closed at stop.

The cloud cannot run here: the SDK is the fake of tests/sources/metaapi/fake_sdk.py (no network at all).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from agent.api.admin import _source_health
from agent.app import build_agent, close_agent, verify_sources
from agent.config import ENV_PREFIX, ConfigError, load_settings
from agent.domain.runs import RunResult
from agent.sources.metaapi import MetaApiSource
from bridge.api import create_app
from bridge.simulated import simulated_pool
from tests.sources.metaapi.fake_sdk import FakeCloud

TOKEN = "metaapi-token-SENTINEL-6f1d2c"
LOGIN = 7001


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _config(tmp_path: Path, bridge_url: str) -> Path:
    token = tmp_path / "metaapi_token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
store_url = "sqlite:///{tmp_path / "agent.db"}"
health_retries = 1
positions_interval = "off"

[[sources]]
name = "vps"
kind = "bridge"
url = "{bridge_url}"

[[sources]]
name = "cloud"
kind = "metaapi"
token_file = "{token}"
accounts = {{ "{LOGIN}" = "acc-7001" }}
bounds = {{ sync_timeout = 5, check_interval = 0.05, backoff_base = 0.05, backoff_cap = 0.2 }}
""",
        encoding="utf-8",
    )
    return path


async def test_metaapi_source_syncs_beside_a_bridge(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = simulated_pool([5001, 5002], seed=3)
    server = TestServer(create_app(pool, call_timeout=0.5), host="127.0.0.1")
    await server.start_server()
    cloud = FakeCloud()
    cloud.add("acc-7001", LOGIN)
    agent = build_agent(
        load_settings(_config(tmp_path, str(server.make_url("")).rstrip("/"))), metaapi_factory=cloud.factory
    )
    try:
        vps, meta = agent.services
        assert isinstance(meta.source, MetaApiSource) and meta.source.name == "cloud"
        with caplog.at_level(logging.DEBUG):
            await verify_sources(agent)  # the account exists, the token is accepted
            assert await vps.ensure_ready()
            assert (await vps.run_cycle()).result is RunResult.SUCCESS
            run = None
            for _ in range(100):  # the streaming connection synchronizes on the event loop
                run = await meta.run_cycle()
                if run.result is RunResult.SUCCESS:
                    break
            assert run is not None and run.result is RunResult.SUCCESS, run
        snap = agent.fleet.snapshot()
        assert {a: snap.accounts[a].source for a in (5001, 5002, LOGIN)} == {
            5001: "vps",
            5002: "vps",
            LOGIN: "cloud",
        }
        assert snap.accounts[LOGIN].values is not None
        assert set(agent.fleet.sources) == {"vps", "cloud"}
        assert TOKEN not in caplog.text
        assert agent.metrics is not None
        text = generate_latest(agent.metrics.registry).decode()  # connection health at scrape time
        for series in ("connected", "broker_connected", "synchronized"):
            assert f'mt5_metaapi_{series}{{account="{LOGIN}"}} 1.0' in text, series
        assert f'mt5_metaapi_connections_recreated_total{{account="{LOGIN}"}} 0.0' in text
        assert 'mt5_bridge_up{source="cloud"} 1.0' in text and 'mt5_bridge_up{source="vps"} 1.0' in text
        assert TOKEN not in text and "acc-7001" not in text
        health = _source_health(meta)  # what /api/admin/mt5-health lists for it
        [connection] = health["connections"]
        assert connection["account"] == LOGIN and connection["synchronized"] is True
        assert TOKEN not in repr(health) and "acc-7001" not in repr(health)
    finally:
        await close_agent(agent)  # closes the MetaAPI source's connections too
        await server.close()
        pool.close()
    assert all(not s._task or s._task.done() for s in meta.source.streams().values())  # type: ignore[attr-defined]


async def test_an_account_the_cloud_does_not_know_fails_the_start_naming_it(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-7001", LOGIN, unknown=True)
    agent = build_agent(load_settings(_config(tmp_path, "http://127.0.0.1:9")), metaapi_factory=cloud.factory)
    try:
        with pytest.raises(ConfigError) as err:
            await verify_sources(agent)
        line = str(err.value)
        assert line == (
            f"invalid setting sources: source 'cloud': metaapi.accounts.{LOGIN}: "
            "MetaAPI account 'acc-7001' does not exist"
        )
    finally:
        await close_agent(agent)


async def test_without_the_sdk_the_start_is_one_line(tmp_path: Path) -> None:
    try:
        import metaapi_cloud_sdk  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("metaapi-cloud-sdk is installed here")
    with pytest.raises(ConfigError, match=r"source 'cloud': .*metaapi-cloud-sdk package is not installed"):
        build_agent(load_settings(_config(tmp_path, "http://127.0.0.1:9")))
