"""`GET /api/v1/accounts/{account}/analytics` (DESIGN.md section 12) against a real app and a real SQLite
store: the hand-computed history's figures over HTTP, allow-listed keys only, null + reason for what
cannot be computed, scores with their rules, clear 4xx for bad ranges, unknown accounts and another
client's account, and a stored balance that analytics never change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agent.api.analytics import AnalyticsBody, Day, DayUtc, FlagBody, RuleBody, ScoreBody, cache_of
from agent.domain.trades import DealEntry, EventType, Position, PositionsSnapshot, PositionType, TradeEvent
from tests.analytics.deals import Deals, at
from tests.analytics.test_stats_fixture import history
from tests.api.conftest import ALL_TOKENS, CLIENT_A, CLIENT_B, READ, Api, MakeApi, make_jwt

A1, B1 = 100001, 200001  # CLIENT_A's, CLIENT_B's (tests/api/conftest.py)
RANGE = "from=2026-03-01T00:00:00Z&to=2026-03-10T00:00:00Z"
PATH = f"/api/v1/accounts/{A1}/analytics"


def _keys(model: type) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    await api.store.deals.put_deals(history(A1).deals)
    opened = datetime(2026, 3, 3, 14, tzinfo=UTC)
    events = [
        TradeEvent(A1, 106, EventType.TRADE_OPENED, "o106", opened, opened, "EURUSD", {"sl": 1.2, "tp": 1.0}),
        TradeEvent(A1, 106, EventType.TRADE_UPDATED, "u106", opened + timedelta(hours=1), opened, "EURUSD",
                   {"change": "sl_tp", "changes": {"sl": [1.2, 1.3]}, "sl": 1.3, "tp": 1.0}),
    ]  # fmt: skip
    assert len(await api.store.events.append_events(events)) == 2
    live = Position(
        account=A1, ticket=900, identifier=900, time=opened, time_update=opened, type=PositionType.BUY,
        magic=0, reason=0, volume=0.1, price_open=1.1, sl=1.095, tp=1.11, price_current=1.102, swap=0.0,
        profit=20.0, symbol="EURUSD",
    )  # fmt: skip
    await api.store.positions.replace_positions(A1, PositionsSnapshot(A1, opened, (live,)))
    return api


async def test_the_hand_computed_history_over_http(api: Api) -> None:
    _, body = await api.json("GET", f"{PATH}?{RANGE}&broker_utc_offset_minutes=120", READ)
    assert set(body) == _keys(AnalyticsBody)
    assert (body["account"], body["from"], body["to"]) == (
        A1,
        "2026-03-01T00:00:00.000Z",
        "2026-03-10T00:00:00.000Z",
    )
    assert body["balance_anchor"] == "first_deposit" and body["broker_utc_offset_minutes"] == 120
    assert (body["trades"], body["won_trades"], body["lost_trades"], body["breakeven_trades"]) == (6, 3, 2, 1)
    assert body["won_trades_percent"] == 50.0 and body["lost_trades_percent"] == pytest.approx(100 / 3)
    assert (body["profit"], body["gross_profit"], body["gross_loss"]) == (125.3, 203.3, 78.0)
    assert body["profit_factor"] == pytest.approx(203.3 / 78) and body["profit_factor_infinite"] is False
    assert (body["best_trade"], body["worst_trade"], body["average_loss"]) == (93.0, -54.0, -39.0)
    assert (body["commissions"], body["swaps"], body["fees"]) == (-40.5, -6.1, -0.1)
    assert (body["deposits"], body["withdrawals"]) == (15000.0, 1000.0)
    assert body["sharpe_ratio"] is None and body["undefined"]["sharpe_ratio"] == "fewer_than_30_trades"
    assert body["max_drawdown_equity_percent"] is None
    assert body["undefined"]["max_drawdown_equity_percent"] == "no_equity_history"
    assert [(d["date"], d["date_utc"], d["profit"], d["balance"]) for d in body["daily"]] == [
        ("2026-03-02", "2026-03-01T22:00:00.000Z", 39.0, 10068.5),
        ("2026-03-03", "2026-03-02T22:00:00.000Z", 60.8, 14099.8),
        ("2026-03-05", "2026-03-04T22:00:00.000Z", 25.5, 14125.3),
    ]
    assert [(d["date"], d["profit"]) for d in body["daily_utc"]] == [
        ("2026-03-02", 123.8), ("2026-03-03", -24.0), ("2026-03-05", 25.5),
    ]  # fmt: skip
    assert all(set(d) == _keys(Day) for d in body["daily"])
    assert all(set(d) == _keys(DayUtc) for d in body["daily_utc"])
    assert all(set(f) == _keys(FlagBody) for f in body["behaviour"])
    assert {f["flag"] for f in body["behaviour"]} == {
        "revenge_trading", "martingale_sizing", "holding_losers_longer", "trading_without_stops",
        "over_trading",
    }  # fmt: skip


async def test_scores_carry_their_rules_and_the_r_multiple_beside(api: Api) -> None:
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    assert [s["identifier"] for s in body["scores"]] == [106, 105, 104, 103, 102, 101]  # newest first
    assert body["scores_truncated"] is False
    s106 = body["scores"][0]
    assert set(s106) == _keys(ScoreBody) and all(set(r) == _keys(RuleBody) for r in s106["rules"])
    rules = {r["rule"]: (r["points"], r["passed"]) for r in s106["rules"]}
    # a sell with SL 1.2 at open, moved to 1.3 (away from price for a sell)
    assert rules["stop_loss_set"] == (2, True) and rules["stop_never_widened"] == (0, False)
    assert rules["margin_level_after_open"] == (0, None)
    s101 = body["scores"][-1]  # no events stored for it: its stops were never seen
    assert {r["rule"]: r["passed"] for r in s101["rules"]}["stop_loss_set"] is None
    (live,) = body["open_scores"]
    assert live["identifier"] == 900 and live["close_time"] is None and live["result"] == 20.0
    live_rules = {r["rule"]: (r["points"], r["passed"]) for r in live["rules"]}
    assert live_rules["not_stopped_out"] == (0, None) and live_rules["reward_risk"] == (2, True)
    # 0.1 lot at 1.1, +20 at 1.102: 100,000 per 1.0 of price per lot; SL 1.095: 50 at risk, R = 0.4;
    # balance before its open: 14,099.8
    assert live["r_multiple"] == pytest.approx(0.4)
    assert live["risk_percent"] == pytest.approx(50 / 14099.8 * 100)


async def test_an_empty_range_is_nulls_with_reasons(api: Api) -> None:
    _, body = await api.json("GET", f"{PATH}?from=2026-04-01T00:00:00Z&to=2026-04-01T00:00:00Z", READ)
    assert body["trades"] == 0 and body["daily"] == [] and body["scores"] == []
    for name in ("won_trades_percent", "profit_factor", "expectancy", "max_drawdown_balance_percent"):
        assert body[name] is None and body["undefined"][name] == "no_trades"


async def test_analytics_never_change_a_stored_balance(api: Api) -> None:
    before = await api.store.accounts.get_account(A1)
    deals_before = await api.store.deals.get_deals(A1)
    await api.json("GET", f"{PATH}?{RANGE}", READ)
    after = await api.store.accounts.get_account(A1)
    assert before is not None and after is not None and after.balance == before.balance == 10000.10
    assert await api.store.deals.get_deals(A1) == deals_before


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("from=2026-03-10T00:00:00Z&to=2026-03-01T00:00:00Z", 400, "invalid_range"),
        ("from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", 400, "range_too_large"),
        ("from=2026-03-01T00:00:00&to=2026-03-02T00:00:00Z", 400, "invalid_parameter"),  # naive
        ("from=yesterday", 400, "invalid_parameter"),
        ("from=2026-03-01T00:00:00Z&from=2026-03-02T00:00:00Z", 400, "invalid_parameter"),
        ("broker_utc_offset_minutes=841", 400, "invalid_parameter"),
        ("broker_utc_offset_minutes=--5", 400, "invalid_parameter"),
    ],
)
async def test_bad_input_is_a_clear_400(api: Api, query: str, status: int, code: str) -> None:
    _, body = await api.json("GET", f"{PATH}?{query}", READ, status=status)
    assert (
        body["error"]["code"] == code
        if "error" in body and isinstance(body["error"], dict)
        else code in str(body)
    )


async def test_access_unknown_account_other_client_and_no_credentials(api: Api) -> None:
    await api.json("GET", f"/api/v1/accounts/999999/analytics?{RANGE}", READ, status=404)
    await api.json("GET", f"{PATH}?{RANGE}", make_jwt(CLIENT_B), status=403)
    await api.json("GET", f"/api/v1/accounts/{B1}/analytics?{RANGE}", make_jwt(CLIENT_A), status=403)
    await api.json("GET", f"{PATH}?{RANGE}", None, status=401)
    _, body = await api.json("GET", f"{PATH}?{RANGE}&broker_utc_offset_minutes=-300", make_jwt(CLIENT_A))
    assert body["trades"] == 6 and body["broker_utc_offset_minutes"] == -300


async def test_new_deals_are_added_to_the_cached_ledger_and_a_late_one_rebuilds_it(api: Api) -> None:
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    entry = cache_of(api.client.app).entry(A1)
    assert body["trades"] == 6 and entry.rebuilds == 1
    more = Deals(A1)
    more.deals.clear()
    base = 1000  # tickets after the history's
    d1 = more.trade(107, at(6, 9), "buy", DealEntry.IN, 0.1)
    d2 = more.trade(107, at(6, 10), "sell", DealEntry.OUT, 0.1, profit=12.5)
    await api.store.deals.put_deals([replace(d1, ticket=base + 1), replace(d2, ticket=base + 2)])
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    assert body["trades"] == 7 and body["profit"] == pytest.approx(137.8) and entry.rebuilds == 1  # added
    # a deal stored late, earlier than the last one taken: the ledger is built again, nothing is lost
    late_in = more.trade(108, at(6, 9, 55), "sell", DealEntry.IN, 0.1)
    late_out = more.trade(108, at(6, 9, 58), "buy", DealEntry.OUT, 0.1, profit=-2.5)
    await api.store.deals.put_deals([replace(late_in, ticket=base + 3), replace(late_out, ticket=base + 4)])
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    assert body["trades"] == 8 and body["profit"] == pytest.approx(135.3) and entry.rebuilds == 2


async def test_without_a_first_deposit_balances_are_anchored_on_the_synced_balance(make_api: MakeApi) -> None:
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    d = Deals(A1)
    d.trade(1, at(2, 9), "buy", DealEntry.IN, 0.1, commission=-0.1)
    d.trade(1, at(2, 10), "sell", DealEntry.OUT, 0.1, profit=10.2)
    await api.store.deals.put_deals(d.deals)
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    # the synced balance (10,000.10) includes the trade: 9,990.00 before it, 10,000.10 after
    assert body["balance_anchor"] == "synced_balance"
    assert [x["balance"] for x in body["daily_utc"]] == [pytest.approx(10000.10)]
