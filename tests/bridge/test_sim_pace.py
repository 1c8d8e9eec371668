"""The simulated desk's `pace` (the demo's livelier desk): as many trades per hour as `pace` times the
real-time desk's, each as many times shorter, on the wall clock; pace 1 is the desk every other test
knows."""

from __future__ import annotations

import pytest

from bridge.simulated import MAX_PACE, SimulatedTerminal, demo_accounts

NOW = 1_764_640_000.0  # a fixed instant: the desk is a pure function of (seed, clock)
HOUR_MS = 3_600_000


def _changes(pace: int, hours: float) -> dict[int, list]:
    start = NOW - hours * 3600
    term = SimulatedTerminal(demo_accounts(), clock=lambda: start, pace=pace)
    t0 = int(start * 1000)
    return {
        a.login: [c for c in term.ground_truth(a.login, t0, t0 + int(hours * HOUR_MS)) if c.kind != "balance"]
        for a in demo_accounts()
    }


def test_a_faster_pace_makes_that_many_more_changes_each_as_a_trade_does() -> None:
    slow, fast = _changes(1, 12), _changes(20, 1)  # 12 h at pace 1, 1 h at pace 20
    for login, changes in fast.items():
        per_hour_fast, per_hour_slow = len(changes), len(slow[login]) / 12
        if per_hour_slow == 0:  # the empty account does not trade at any pace
            assert per_hour_fast == 0
            continue
        assert 10 * per_hour_slow < per_hour_fast < 40 * per_hour_slow, (login, per_hour_slow, per_hour_fast)
        by_trade: dict[int, list] = {}
        for c in changes:
            by_trade.setdefault(c.identifier, []).append(c)
        for trade in by_trade.values():
            kinds = [c.kind for c in trade]
            if kinds[0] == "opened":  # within the hour: opened first, closed last, in time order
                assert [c.time_ms for c in trade] == sorted(c.time_ms for c in trade)
                assert "opened" not in kinds[1:] and ("closed" not in kinds or kinds[-1] == "closed")


def test_pace_one_is_the_default_desk_and_a_bad_pace_is_refused() -> None:
    default = SimulatedTerminal(demo_accounts(), clock=lambda: NOW)
    paced = SimulatedTerminal(demo_accounts(), clock=lambda: NOW, pace=1)
    login = demo_accounts()[0].login
    since = int(NOW * 1000) - 2 * 86_400_000
    assert default.ground_truth(login, since) == paced.ground_truth(login, since)
    for bad in (0, MAX_PACE + 1, 2.5):
        with pytest.raises(ValueError, match="pace"):
            SimulatedTerminal(demo_accounts(), clock=lambda: NOW, pace=bad)  # type: ignore[arg-type]
