"""The demo's scripted story: its steps, in order, at their scaled times, acting through its controls."""

from __future__ import annotations

import pytest

from agent.demo_story import MIN_LENGTH, STOPPED_ACCOUNT, STORED_ACCOUNT, Story, StoryTiming, script


class Controls:
    def __init__(self) -> None:
        self.log: list[tuple[float, str]] = []
        self.now = 0.0

    def set_fault(self, login: int, fault: str | None) -> None:
        self.log.append((self.now, f"{login}={fault}"))

    async def restart_bridge(self, down_seconds: float) -> None:
        self.log.append((self.now, f"restart {down_seconds:g}"))


def test_thresholds_and_schedule_scale_with_the_length() -> None:
    t = StoryTiming(120)
    assert t.thresholds == (20, 40, 60) and t.freshness == "20,40,60" and t.schedule_seconds == 5
    assert StoryTiming(30).freshness == "5,10,15"
    # the stopped terminal's account reaches critical before the recovery
    assert t.stopped_at + t.thresholds[2] < t.recover_at
    with pytest.raises(ValueError):
        StoryTiming(MIN_LENGTH - 1)


def test_every_alert_named_comes_with_its_runbook_link() -> None:
    steps = script(StoryTiming(), "https://runbooks.example.invalid/{alertname}")
    text = "\n".join(s.say for s in steps)
    for alert in (
        "MT5AccountDataDegraded",
        "MT5AccountSyncFailing",
        "MT5AccountDataCritical",
        "MT5BridgeDown",
    ):
        assert f"{alert} (https://runbooks.example.invalid/{alert})" in text
    assert [s.at for s in steps] == sorted(s.at for s in steps)


async def test_the_story_acts_at_its_times() -> None:
    controls = Controls()
    said: list[str] = []

    async def sleep(seconds: float) -> None:
        controls.now += seconds

    story = Story(controls, StoryTiming(120), say=said.append, clock=lambda: controls.now, sleep=sleep)
    await story.run()
    assert controls.log == [
        (12.0, f"{STORED_ACCOUNT}=no_live_data"),
        (24.0, f"{STOPPED_ACCOUNT}=disconnected"),
        (90.0, "restart 4.8"),
        (102.0, f"{STORED_ACCOUNT}=None"),
        (102.0, f"{STOPPED_ACCOUNT}=None"),
    ]
    assert len(said) == 6 and said[-1].startswith("[120.0 s] story: over")
    assert story.current == said[-1].split("] ", 1)[1]
