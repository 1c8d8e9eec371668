"""The batch read's hot path keeps its answers: the simulator's reused account_info (no open position,
same balance) and terminal_info are what a fresh terminal computes at the same instant, and the timed
terminal counts what it counted before its per-call lookups were cached."""

from __future__ import annotations

from bridge.metrics import BridgeMetrics
from bridge.simulated import SimulatedTerminal, demo_accounts

START = 1_796_000_000.0


def _fields(info: object) -> list[str]:
    """Every field with its exact repr (0.0 and -0.0, 0 and 0.0 differ)."""
    return [repr(v) for v in info]  # type: ignore[attr-defined]


def test_account_info_reused_only_while_nothing_moved() -> None:
    """Walk a trading desk through six hours a minute at a time: at every step each account's answer is
    the one a new terminal (same start, nothing reused yet) gives at that instant, and idle accounts do
    get the reused answer."""
    now = [START]
    accounts = demo_accounts()
    term = SimulatedTerminal(accounts, clock=lambda: now[0])
    term.initialize()
    reused = changed = 0
    last: dict[int, object] = {}
    for step in range(6 * 60):
        now[0] = START + 60.0 * step
        then = [START]  # a terminal started when `term` was (the history depends on the start)
        fresh = SimulatedTerminal(accounts, clock=lambda then=then: then[0])  # type: ignore[misc]
        then[0] = now[0]
        fresh.initialize()
        for a in accounts:
            assert term.login(a.login, password=a.password.get_secret_value())
            assert fresh.login(a.login, password=a.password.get_secret_value())
            got, want = term.account_info(), fresh.account_info()
            assert got is not None and want is not None
            assert _fields(got) == _fields(want), (step, a.login)
            if last.get(a.login) is got:
                reused += 1
            elif a.login in last:
                changed += 1
            last[a.login] = got
        fresh.release()
    assert reused > 100 and changed > 100, (reused, changed)


def test_terminal_info_follows_the_connection() -> None:
    accounts = demo_accounts()[:2]
    term = SimulatedTerminal(accounts, static=True)
    term.initialize()
    assert term.login(accounts[0].login, password=accounts[0].password.get_secret_value())
    up = term.terminal_info()
    assert up is not None and up.connected and up.ping_last == 35_000
    term.set_fault(accounts[0].login, "disconnected")
    down = term.terminal_info()
    assert down is not None and not down.connected and down.ping_last == 0
    term.set_fault(accounts[0].login, None)
    term.company = "Other Co"
    renamed = term.terminal_info()
    assert renamed is not None and renamed.company == "Other Co" and renamed.name.startswith("Other Co")


def test_metrics_call_observer_is_the_function_series() -> None:
    metrics = BridgeMetrics(runtime=False)
    metrics.call_observer("login")(0.002)
    metrics.observe_call("login", 0.004)
    count = metrics.registry.get_sample_value(
        "mt5_bridge_terminal_call_duration_seconds_count", {"function": "login"}
    )
    total = metrics.registry.get_sample_value(
        "mt5_bridge_terminal_call_duration_seconds_sum", {"function": "login"}
    )
    assert count == 2 and total is not None and abs(total - 0.006) < 1e-12
