"""The broker's margin call and stop-out levels (issue 14), from live_data to /metrics: validated by the
bridge parser (never failing an account's read), kept by the source per account (memory only), and
exported by the risk collector as ratios only in percent mode, byte for byte as prometheus_client would."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.domain.accounts import (
    AccountSnapshot,
    AccountValues,
    BrokerLevels,
    ReadFailure,
    Reason,
    StopOutMode,
)
from agent.domain.freshness import Thresholds
from agent.risk.book import RiskBook
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.sources.bridge.parse import parse_broker_levels, parse_live_data
from agent.telemetry.exposition import render
from tests.risk.test_risk_exposition import T0, StubFleet, _same

LIVE = {
    "login": 1001,
    "balance": 1000.0,
    "equity": 1000.0,
    "profit": 0.0,
    "margin": 10.0,
    "margin_free": 990.0,
    "margin_level": 10000.0,
    "currency": "USD",
}


def _levels(mode: Any, call: Any, stop_out: Any) -> dict[str, Any]:
    return {"margin_so_mode": mode, "margin_so_call": call, "margin_so_so": stop_out}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_levels("percent", 100.0, 50.0), BrokerLevels(StopOutMode.PERCENT, 100.0, 50.0)),
        (_levels("percent", 100, 100), BrokerLevels(StopOutMode.PERCENT, 100.0, 100.0)),  # ints, equal
        (_levels("money", 5000.0, 2500.5), BrokerLevels(StopOutMode.MONEY, 5000.0, 2500.5)),
        ({}, None),  # the seed's bridge: no levels
        (_levels(None, 100.0, 50.0), None),  # a mode MT5 does not define (our bridge sends null)
        (_levels("PERCENT", 100.0, 50.0), None),
        (_levels(0, 100.0, 50.0), None),
        (_levels("percent", 50.0, 100.0), None),  # stop-out above the margin call
        (_levels("percent", 100.0, 0.0), None),
        (_levels("percent", 100.0, -5.0), None),
        (_levels("percent", 20_000.0, 50.0), None),  # beyond any broker's setting
        (_levels("percent", math.inf, 50.0), None),
        (_levels("percent", math.nan, 50.0), None),
        (_levels("percent", 10**400, 50.0), None),  # float() of it would raise
        (_levels("percent", True, True), None),
        (_levels("percent", "100", "50"), None),
        (_levels("percent", 100.0, None), None),
    ],
)
def test_levels_are_validated(data: dict[str, Any], expected: BrokerLevels | None) -> None:
    assert parse_broker_levels(data) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(mode=json_values | st.sampled_from(["percent", "money"]), call=json_values, stop_out=json_values)
def test_any_levels_never_fail_the_read(mode: Any, call: Any, stop_out: Any) -> None:
    """Whatever the levels hold, the account's values are read; levels are kept only when valid."""
    snap = parse_live_data(1001, {**LIVE, **_levels(mode, call, stop_out)}, T0)
    assert snap.values.balance == 1000.0
    levels = snap.broker_levels
    if levels is not None:
        assert levels.mode in (StopOutMode.PERCENT, StopOutMode.MONEY)
        assert 0 < levels.stop_out <= levels.margin_call and math.isfinite(levels.margin_call)


def test_ratios_only_in_percent_mode() -> None:
    assert BrokerLevels(StopOutMode.PERCENT, 120.0, 60.0).ratios() == (1.2, 0.6)
    assert BrokerLevels(StopOutMode.MONEY, 120.0, 60.0).ratios() is None


def _live(levels: BrokerLevels | None) -> AccountSnapshot:
    return AccountSnapshot(AccountValues(balance=1.0), live=True, read_at=T0, broker_levels=levels)


def test_the_source_keeps_the_last_levels_per_listed_account() -> None:
    source = BridgeSource(BridgeClient("http://127.0.0.1:9"))
    a, b = BrokerLevels(StopOutMode.PERCENT, 100.0, 50.0), BrokerLevels(StopOutMode.PERCENT, 120.0, 60.0)
    source._keep_levels([1, 2, 3], {1: _live(a), 2: _live(b), 3: _live(None)})
    assert source.broker_levels == {1: a, 2: b}
    stored = AccountSnapshot(AccountValues(balance=1.0), live=False, read_at=None)
    failed = ReadFailure(Reason.TIMEOUT, "slow")
    source._keep_levels([1, 2], {1: stored, 2: failed})  # not live: the last levels stand; 3 unlisted
    assert source.broker_levels == {1: a, 2: b}
    source._keep_levels([1], {1: _live(None)})  # a live read without levels: none any more; 2 unlisted
    assert source.broker_levels == {}


def test_levels_exported_as_ratios_in_percent_mode_only() -> None:
    from agent.telemetry.registry import AgentMetrics

    metrics = AgentMetrics(runtime=False)
    fleet = StubFleet()
    metrics.attach_fleet(fleet, Thresholds(), lambda: T0)
    book = RiskBook(clock=lambda: T0)
    levels: dict[int, BrokerLevels] = {}
    book.levels_from(levels)
    metrics.attach_risk(book, fleet.snapshot)
    levels[1001] = BrokerLevels(StopOutMode.PERCENT, 120.0, 60.0)
    levels[1002] = BrokerLevels(StopOutMode.MONEY, 500.0, 250.0)
    levels[1009] = BrokerLevels(StopOutMode.PERCENT, 100.0, 50.0)  # not in the fleet: not exported
    fleet.set(1, {1001: 1000.0, 1002: 1000.0, 1003: 1000.0}, T0)
    _same(metrics)
    text = render(metrics, "")[0].decode()
    assert 'mt5_account_margin_call_level_ratio{account="1001"} 1.2' in text
    assert 'mt5_account_margin_stop_out_level_ratio{account="1001"} 0.6' in text
    for other in ("1002", "1003", "1009"):
        assert f'level_ratio{{account="{other}"}}' not in text
    version = book.version
    levels[1001] = BrokerLevels(StopOutMode.PERCENT, 100.0, 50.0)  # the broker changed its settings
    fleet.set(2, {1001: 1000.0, 1002: 1000.0, 1003: 1000.0}, T0 + timedelta(minutes=1))
    _same(metrics)
    assert book.version > version
    assert 'mt5_account_margin_call_level_ratio{account="1001"} 1.0' in render(metrics, "")[0].decode()


def test_what_the_bridge_writes_parses_into_its_levels() -> None:
    """What our bridge writes (bridge.api.live_data) parses into the levels it carries."""
    from bridge.api import live_data
    from bridge.pool import AccountRead
    from bridge.terminal import AccountInfo

    info = AccountInfo(login=1001, leverage=100, currency="USD", margin_so_call=80.0, margin_so_so=40.0)
    doc = json.loads(json.dumps(live_data(AccountRead(info, datetime(2026, 1, 1, tzinfo=UTC)))))
    snap = parse_live_data(1001, doc, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert snap.broker_levels == BrokerLevels(StopOutMode.PERCENT, 80.0, 40.0)
