"""Recorded equity through the wired agent: each sync cycle against a real HTTP server speaking the seed
bridge's JSON records the accounts' live equity (sampled), never a stored fallback; the analytics answer
reads the recorded points for drawdown from equity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.domain.accounts import DataSource
from agent.domain.equity import EquityPoint
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.analytics.deals import Deals
from tests.analytics.test_stats_fixture import history
from tests.api.conftest import ALL_TOKENS, READ, MakeApi
from tests.api.test_sync_endpoints import bridge_api


async def test_each_cycle_records_live_equity_sampled(make_api: MakeApi, fake_bridge) -> None:
    bridge, url = fake_bridge
    api = await bridge_api(make_api, url)
    agent, equity = api.agent, api.store.equity
    assert agent.equity is not None

    await agent.service.run_cycle()
    await agent.equity.flush()
    fleet = agent.fleet.snapshot().accounts
    for account, seed in SEED_ACCOUNTS.items():
        state = fleet[account]
        assert state.data_source == DataSource.LIVE.value
        points = await equity.get_equity(account)
        assert [(p.time, p.equity, p.balance) for p in points] == [
            (state.live_data_at, seed["balance"], seed["balance"])
        ]

    await agent.service.run_cycle()  # seconds later, nothing moved: no new point (one a minute)
    await agent.equity.flush()
    assert [len(await equity.get_equity(a)) for a in SEED_ACCOUNTS] == [1] * len(SEED_ACCOUNTS)

    bridge.accounts[886557]["equity"] = 79_000.0  # -1.25 %: recorded within the minute
    bridge.accounts[886066]["equity"] = 5_000.0
    bridge.behaviour[886066] = "no_live_data"  # the bridge's stored fallback: not a live value
    await agent.service.run_cycle()
    await agent.equity.flush()
    moved = await equity.get_equity(886557)
    assert [p.equity for p in moved] == [80_000.0, 79_000.0]
    assert moved[-1].time == agent.fleet.snapshot().accounts[886557].live_data_at
    assert agent.fleet.snapshot().accounts[886066].data_source == DataSource.STORED.value
    assert [p.equity for p in await equity.get_equity(886066)] == [10_000.0]
    others = [a for a in SEED_ACCOUNTS if a not in (886557, 886066)]
    assert [len(await equity.get_equity(a)) for a in others] == [1] * len(others)


A1 = 100001  # CLIENT_A's (tests/api/conftest.py)
APRIL = "from=2026-04-01T00:00:00Z&to=2026-04-10T00:00:00Z"


def _at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 4, day, hour, tzinfo=UTC)


async def test_drawdown_from_recorded_equity_hand_computed(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    await api.store.deals.put_deals(history(A1).deals)  # March: no deal and no balance operation in April
    series = [(1, 10_000.0), (2, 10_500.0), (3, 9_450.0), (4, 9_800.0), (5, 9_135.0), (6, 11_000.0),
              (7, 10_450.0)]  # fmt: skip
    await api.store.equity.put_equity(
        [EquityPoint(A1, _at(day), eq, eq) for day, eq in series]
        + [EquityPoint(A1, datetime(2026, 3, 31, 23, 59, tzinfo=UTC), 20_000.0)]  # before `from`: not read
        + [EquityPoint(A1, _at(10), 1_000.0)]  # at `to` (exclusive): not read
        + [EquityPoint(200001, _at(3), 1.0)]  # another account's
    )
    _, body = await api.json("GET", f"/api/v1/accounts/{A1}/analytics?{APRIL}", READ)
    # peak 10,500 (2 April), trough 9,135 (5 April): 1 - 9135/10500 = 13 %; 10,450 after 11,000 is 5 %
    assert body["max_drawdown_equity_percent"] == pytest.approx(13.0, rel=1e-12)
    assert "max_drawdown_equity_percent" not in body["undefined"]
    assert body["trades"] == 0  # the figures of trades stay undefined: there are none in the range

    one = "from=2026-04-06T12:00:00Z&to=2026-04-07T12:00:00Z"  # one point only
    _, body = await api.json("GET", f"/api/v1/accounts/{A1}/analytics?{one}", READ)
    assert body["max_drawdown_equity_percent"] is None
    assert body["undefined"]["max_drawdown_equity_percent"] == "no_equity_history"


async def test_a_withdrawal_between_points_is_not_a_drawdown(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    d = Deals(A1)
    d.balance(_at(1), 10_000.0)
    d.balance(_at(3, 12), -5_000.0)  # a withdrawal of half the account
    await api.store.deals.put_deals(d.deals)
    await api.store.equity.put_equity(
        [
            EquityPoint(A1, _at(2), 10_000.0),
            EquityPoint(A1, _at(4), 4_900.0),
            EquityPoint(A1, _at(5), 5_100.0),
        ]
    )
    _, body = await api.json("GET", f"/api/v1/accounts/{A1}/analytics?{APRIL}", READ)
    # 10,000 -> 4,900 of which 5,000 withdrawn: a 1 % fall, not 51 %
    assert body["max_drawdown_equity_percent"] == pytest.approx(1.0, rel=1e-9)
    assert (body["withdrawals"], body["deposits"]) == (5_000.0, 10_000.0)
