"""Scores on real detected events: the positions poller over real HTTP against the simulated desk, the
accounts' values read from the same bridge each round (as the sync would give them). Every TRADE_OPENED
carries its live score, every TRADE_CLOSED its final score and R-multiple; the rules that need only the
stored deals and stop history agree with the analytics' own scoring of the same trade (agent.api.analytics
path: a ledger of the stored deals and the stop history of the stored events)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from agent.analytics import Ledger
from agent.analytics.score import AT_OPEN, RULES, facts_for_closed, score, stop_histories
from agent.domain.accounts import AccountValues
from agent.domain.trades import EventType
from agent.events.poller import PositionsPoller
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from bridge.api import create_app
from bridge.simulated import demo_accounts, simulated_pool

STEP_S = 5.0
ROUNDS = 360  # 30 simulated minutes
RULE_NAMES = [name for name, _, _ in RULES]
# rules that read only the trade's deals and its stop history (the same in the detector and the analytics)
SHARED = ("stop_loss_set", "reward_risk", "stop_never_widened", "not_stopped_out")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    await s.open()
    yield s
    await s.close()


def check_shape(score: dict, names: list[str]) -> None:
    assert set(score) == {"score", "rules", "complete"}
    assert score["score"] is None or 1 <= score["score"] <= 10
    assert [r["rule"] for r in score["rules"]] == names
    for r in score["rules"]:
        assert set(r) == {"rule", "points", "max_points", "passed", "reason"}
        assert 0 <= r["points"] <= r["max_points"] and r["passed"] in (True, False, None)
        assert isinstance(r["reason"], str) and r["reason"]
        assert r["passed"] is not None or r["points"] == 0


async def test_detected_events_carry_their_scores(store: Store) -> None:
    sim_now = [float(int(time.time())) - 6 * 3600]
    pool = simulated_pool(clock=lambda: sim_now[0], seed=11)
    server = TestServer(create_app(pool), host="127.0.0.1")
    await server.start_server()
    client = BridgeClient(str(server.make_url("")), timeout=5.0)
    try:
        logins = [e.login for e in demo_accounts()]
        values: dict[int, AccountValues] = {}
        poller = PositionsPoller(
            store,
            BridgeSource(client),
            lambda: logins,
            interval=1.0,
            deadline=10.0,
            hold=10.0,
            clock=lambda: datetime.fromtimestamp(sim_now[0], UTC),
            values=values.get,
        )
        for _ in range(ROUNDS):
            for login in logins:  # the sync's view of the account: its live values
                values[login] = (await client.account_info(login)).values
            result = await poller.tick()
            assert result is not None and not result.failed, result
            sim_now[0] += STEP_S

        events = await store.events.list_events(limit=100_000)
        opened = [e for e in events if e.type is EventType.TRADE_OPENED]
        closed = [e for e in events if e.type is EventType.TRADE_CLOSED]
        assert opened and closed, "no trade in 30 simulated minutes: the test would prove nothing"
        for e in opened:
            check_shape(e.data["score"], list(AT_OPEN))
            assert e.data["score"]["complete"] is False and "r_multiple" not in e.data
        for e in closed:
            check_shape(e.data["score"], RULE_NAMES)
            r, why = e.data["r_multiple"], e.data["r_multiple_reason"]
            assert (r is None) != (why is None), e.data
            if r is not None and e.data["pnl"]:
                assert (r > 0) == (e.data["pnl"] > 0), e.data  # the outcome's sign is the result's
        judged_at_open = [
            e for e in opened if any(r["passed"] is not None for r in e.data["score"]["rules"][:3])
        ]
        assert judged_at_open, "no opened trade had its stops judged"
        assert any(e.data["r_multiple"] is not None for e in closed), "no R-multiple at all"
        margins = [
            r for e in opened for r in e.data["score"]["rules"] if r["rule"] == "margin_level_after_open"
        ]
        assert any(r["passed"] is not None for r in margins), "the margin level at detection was never used"

        # the analytics' scoring of the same trades, from what the store keeps, agrees on the shared rules
        compared = 0
        opened_sl = {(e.account, e.identifier) for e in opened if e.data.get("sl") is not None}
        for login in logins:
            book = Ledger()
            book.add(await store.deals.get_deals(login))
            stops = stop_histories(e for e in events if e.account == login)
            by_id = {t.identifier: t for t in book.closed}
            for e in closed:
                trade = by_id.get(e.identifier)
                if e.account != login or trade is None or (login, e.identifier) not in opened_sl:
                    continue
                if not e.data["pnl_complete"]:
                    continue
                theirs = score(facts_for_closed(trade, book, stops.get(e.identifier, ())))
                mine = {r["rule"]: (r["points"], r["passed"]) for r in e.data["score"]["rules"]}
                for r in theirs.rules:
                    if r.rule in SHARED:
                        assert mine[r.rule] == (r.points, r.passed), (login, e.identifier, r, e.data["score"])
                compared += 1
        assert compared >= 3, compared
    finally:
        await client.close()
        await server.close()
        pool.close()
        pool.join(5.0)
