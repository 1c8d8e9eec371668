"""Settings reach the objects that apply them: a setting read but never passed on is silently ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.app import build_agent
from agent.config import ENV_PREFIX, load_settings


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


async def test_bridge_limits_come_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT5_AGENT_MAX_RESPONSE_BYTES", "4096")
    monkeypatch.setenv("MT5_AGENT_CLOCK_SKEW_TOLERANCE", "1.5")
    agent = build_agent(load_settings(store_url=f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        assert agent.bridge.max_response_bytes == 4096
        assert agent.bridge.clock_skew_tolerance == 1.5
    finally:
        await agent.bridge.close()
