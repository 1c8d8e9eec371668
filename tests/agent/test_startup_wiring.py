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


async def test_close_agent_runs_every_step_when_one_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A part whose stop ends with an error is logged; the parts after it still stop and the store still
    closes (an error there once made `mt5-agent run` exit 1 with its store open)."""
    from agent.app import close_agent, open_agent
    from agent.store.errors import StoreUnavailable

    agent = build_agent(load_settings(store_url=f"sqlite:///{tmp_path / 'a.db'}"))
    await open_agent(agent)
    await agent.store.ping()
    stopped: list[str] = []

    class Part:
        def __init__(self, name: str, fails: bool) -> None:
            self.name, self.fails = name, fails

        async def stop(self) -> None:
            stopped.append(self.name)
            if self.fails:
                raise RuntimeError(f"{self.name} ended badly")

    agent.pollers = [Part("poller", fails=True), Part("poller-2", fails=False)]  # type: ignore[list-item]
    await close_agent(agent)
    assert stopped == ["poller", "poller-2"]
    with pytest.raises(StoreUnavailable, match="closed"):
        await agent.store.ping()
    assert "error stopping a positions poller" in caplog.text and "poller ended badly" in caplog.text
