"""The app builds the positions poller from the settings, and stops it with the agent."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from agent.app import build_agent, build_poller, close_agent
from agent.config import ENV_PREFIX, ConfigError, load_settings


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


async def test_poller_settings_reach_the_poller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT5_AGENT_POSITIONS_INTERVAL", "250ms")
    monkeypatch.setenv("MT5_AGENT_EVENTS_RETENTION", "7")
    agent = build_agent(load_settings(store_url=f"sqlite:///{tmp_path / 'a.db'}"))
    poller = build_poller(agent)
    assert poller is not None
    assert poller.interval == 0.25 and poller.retention == timedelta(days=7)
    assert poller.listener is not None and poller.source is agent.service.source
    assert getattr(poller.listener, "listeners", None) == (agent.metrics, agent.hub)  # metrics, stream
    assert not poller.ready()  # waits for the sync's first cycle to open the store
    agent.poller = poller
    poller.start()
    await close_agent(agent)  # stops the poller before closing the store
    assert poller._task is None


@pytest.mark.parametrize("off", ["0", "off", "OFF"])
async def test_the_poller_can_be_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, off: str) -> None:
    monkeypatch.setenv("MT5_AGENT_POSITIONS_INTERVAL", off)
    agent = build_agent(load_settings(store_url=f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        assert build_poller(agent) is None
    finally:
        await agent.bridge.close()


@pytest.mark.parametrize("bad", ["0.1", "100ms", "soon", "-1"])
def test_a_bad_interval_names_the_setting(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("MT5_AGENT_POSITIONS_INTERVAL", bad)
    with pytest.raises(ConfigError, match="MT5_AGENT_POSITIONS_INTERVAL"):
        load_settings()
