"""The positions poller over real HTTP against our simulated bridge, time-accelerated by a clock the test
moves: the trading desk's changes become stored events, each once, and every trade the simulator closed
in the window is stored as closed with its realised P&L to the cent."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from agent.domain.trades import EventType
from agent.events.poller import PositionsPoller
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from bridge.api import create_app
from bridge.simulated import SimulatedTerminal, demo_accounts, simulated_pool

STEP_S = 5.0  # simulated seconds between two polls
ROUNDS = 540  # 45 simulated minutes (the desk opens some 6 trades an hour per account)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    await s.open()
    yield s
    await s.close()


BEHIND_3H = 3 * 3600.0


@pytest.mark.parametrize(
    ("restart", "bridge_behind"),
    [(False, 0.0), (True, 0.0), (False, BEHIND_3H), (True, BEHIND_3H), (False, -4.0)],
    ids=[
        "steady",
        "down-2min-and-restarted",
        "bridge-3h-behind",
        "bridge-3h-behind-restarted",
        "bridge-4s-ahead",
    ],
)
async def test_events_from_the_simulated_desk_are_stored_once(
    store: Store, restart: bool, bridge_behind: float
) -> None:
    """`bridge_behind`: how far the desk's clock (deal and position times) is behind the poller's; the deal
    window is in the terminal's time, so every close is swept whatever the difference (4 s ahead is within
    the clock-skew tolerance, which the client checks against the wall clock)."""
    sim_now = [float(int(time.time())) - 6 * 3600]  # behind the wall clock: no clock-skew rejections
    start = sim_now[0]
    pool = simulated_pool(clock=lambda: sim_now[0], seed=7)
    server = TestServer(create_app(pool), host="127.0.0.1")
    await server.start_server()
    client = BridgeClient(str(server.make_url("")), timeout=5.0)
    try:
        logins = [e.login for e in demo_accounts()]

        def new_poller() -> PositionsPoller:
            return PositionsPoller(
                store,
                BridgeSource(client),
                lambda: logins,
                interval=1.0,
                deadline=10.0,
                hold=10.0,  # every account's poll inside its tick (the test moves the clock between ticks)
                clock=lambda: datetime.fromtimestamp(sim_now[0] + bridge_behind, UTC),
            )

        poller = new_poller()
        failures: Counter[str] = Counter()
        for i in range(ROUNDS):
            if restart and i == ROUNDS // 2:  # the agent is down two minutes, then starts over the store
                sim_now[0] += 120
                poller = new_poller()
            result = await poller.tick()
            assert result is not None
            failures.update(r.split(":", 1)[0] for r in result.failed.values())
            sim_now[0] += STEP_S
        assert not failures, failures

        events = await store.events.list_events(limit=100_000)
        assert events, "no event in 45 simulated minutes"
        assert len({e.dedup_key for e in events}) == len(events)
        assert [e.id for e in events] == sorted({e.id for e in events})
        per_trade = Counter(
            (e.account, e.identifier, e.type) for e in events if e.type != EventType.TRADE_UPDATED
        )
        assert max(per_trade.values()) == 1  # one OPENED and one CLOSED per trade at most

        # every trade the desk closed inside the window (its deal visible a minute before the end) was
        # stored as closed, with the simulator's realised P&L
        closed = {(e.account, e.identifier): e for e in events if e.type == EventType.TRADE_CLOSED}
        end_ms = int((sim_now[0] - 60) * 1000)
        expected = deal_changes = 0
        updates: Counter[tuple[int, int, str]] = Counter(
            (e.account, e.identifier, e.data["change"]) for e in events if e.type == EventType.TRADE_UPDATED
        )
        for login in logins:
            term = pool.terminal(login)
            assert isinstance(term, SimulatedTerminal)
            truth = term.ground_truth(login, int(start * 1000), end_ms)
            whole = term.ground_truth(login, int((start - 3 * 86_400) * 1000), end_ms)
            for c in truth:  # trades open at the start included: their history is swept at first sight
                if c.kind != "closed":
                    continue
                if c.data.get("deal_visible_ms", c.time_ms) > end_ms:
                    continue
                expected += 1
                event = closed.get((login, c.identifier))
                assert event is not None, (login, c)
                # its deal-borne changes, each once (its history before the window swept at first sight)
                for kind in ("volume_added", "partial_close", "reversal"):
                    n = sum(1 for t in whole if t.identifier == c.identifier and t.kind == kind)
                    assert updates[(login, c.identifier, kind)] == n, (login, c.identifier, kind)
                    deal_changes += n
                assert Decimal(event.data["pnl_exact"]).quantize(Decimal("0.01")) == Decimal(
                    str(c.data["realised"])
                ).quantize(Decimal("0.01")), (login, c, event.data)
        assert expected > 0, "the window held no complete trade: the test would prove nothing"
        assert deal_changes > 0, "no scale-in, partial close or reversal among them"
        snapshots = await store.positions.get_all_positions()
        assert set(snapshots) == set(logins)
    finally:
        await client.close()
        await server.close()
        pool.close()
        pool.join(5.0)
