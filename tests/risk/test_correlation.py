"""Correlation of open positions (issue 14): the formulas on hand-made series, cross-checked with numpy;
then the tracker against a real bridge (our app over the simulated pool, on loopback, through the agent's
BridgeClient), its results cross-checked with numpy on the bars the bridge serves, and exported."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from agent.domain.freshness import Thresholds
from agent.risk.book import RiskBook
from agent.risk.correlation import (
    CORRELATED_AT,
    MIN_RETURNS,
    TIMEFRAME,
    WINDOW_BARS,
    AccountCorrelation,
    CorrelationTracker,
    account_correlation,
    log_returns,
    pearson,
)
from agent.sources.bridge import BridgeClient
from agent.sync.fleet import AccountState, FleetSnapshot, SyncStatus
from agent.telemetry.exposition import render
from agent.telemetry.registry import AgentMetrics
from bridge.api import create_app as create_bridge_app
from bridge.simulated import DEMO_ACCOUNTS, simulated_pool
from tests.events.factory import position, snapshot
from tests.risk.test_risk_exposition import _same

T0 = datetime(2026, 12, 1, tzinfo=UTC)
NOW = 1_796_000_123.0


def _bars(closes: list[float]) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=5 * i), c) for i, c in enumerate(closes)]


def test_pearson_of_log_returns_equals_numpy() -> None:
    rng = np.random.default_rng(3)
    common = rng.normal(size=200)
    a = 1.1 * np.exp(np.cumsum(0.001 * (common + 0.5 * rng.normal(size=200))))
    b = 1.3 * np.exp(np.cumsum(0.001 * (-common + 0.5 * rng.normal(size=200))))
    ra, rb = log_returns(_bars(list(a))), log_returns(_bars(list(b)))
    assert len(ra) == 199
    assert list(ra.values()) == pytest.approx(list(np.diff(np.log(a))))
    expected = np.corrcoef(np.diff(np.log(a))[-WINDOW_BARS:], np.diff(np.log(b))[-WINDOW_BARS:])[0, 1]
    assert pearson(ra, rb) == pytest.approx(expected, abs=1e-12)
    assert pearson(ra, rb) < -0.5  # built anti-correlated


def test_pearson_pairs_returns_by_time_and_refuses_too_little() -> None:
    a = log_returns(_bars([1.0 + 0.01 * math.sin(i) for i in range(100)]))
    b = dict(list(a.items())[::2])  # half the bars missing: only common times count
    assert pearson(a, b) == pytest.approx(1.0)
    short = dict(list(a.items())[: MIN_RETURNS - 1])
    assert pearson(short, short) is None
    flat = log_returns(_bars([1.0] * 50))
    assert pearson(a, flat) is None  # a constant series has no correlation


def test_account_correlation_by_hand() -> None:
    rho = {("EURUSD", "GBPUSD"): 0.8, ("EURUSD", "USDCHF"): -0.75, ("GBPUSD", "USDCHF"): -0.6}

    def lookup(a: str, b: str) -> float | None:
        return rho.get((a, b), rho.get((b, a)))

    # long EUR, long GBP: they move together (0.8); short USDCHF moves with both (+0.75, +0.6)
    got = account_correlation((("EURUSD", 1.0), ("GBPUSD", 2.0), ("USDCHF", -0.5)), lookup)
    assert got == AccountCorrelation(0.8, 3.5)
    # long EUR, long USDCHF: a hedge (-0.75), nothing moves together
    assert account_correlation((("EURUSD", 1.0), ("USDCHF", 1.0)), lookup) == AccountCorrelation(-0.75, 0.0)
    # long EUR, short GBP: -0.8, so the max is the hedge too
    assert account_correlation((("EURUSD", 1.0), ("GBPUSD", -1.0)), lookup) == AccountCorrelation(-0.8, 0.0)
    assert account_correlation((("EURUSD", 1.0), ("other", 3.0)), lookup) is None  # one named symbol
    assert account_correlation((("EURUSD", 1.0), ("XAUUSD", 1.0)), lookup) is None  # unknown pair
    assert CORRELATED_AT == 0.5


class Fleet:
    def __init__(self, accounts: list[int]) -> None:
        self.snap = FleetSnapshot(
            version=1, accounts={a: AccountState(a, source="bridge") for a in accounts}, failures={}
        )

    def snapshot(self) -> FleetSnapshot:
        return self.snap


@pytest.fixture
async def bridge_client() -> AsyncIterator[BridgeClient]:
    server = TestServer(create_bridge_app(simulated_pool(clock=lambda: NOW)), host="127.0.0.1")
    await server.start_server()
    client = BridgeClient(str(server.make_url("")).rstrip("/"), timeout=10.0)
    try:
        yield client
    finally:
        await client.close()
        await server.close()


async def test_tracker_against_a_real_bridge(bridge_client: BridgeClient) -> None:
    a1, a2, a3 = (entry[0] for entry in DEMO_ACCOUNTS[:3])
    book = RiskBook(clock=lambda: T0)
    # a1: long EURUSD and long GBPUSD; a2: long EURUSD, long USDCHF (a hedge); a3: one symbol only
    book.on_positions(
        snapshot(
            0,
            position(1, account=a1, symbol="EURUSD", volume=1.0),
            position(2, account=a1, symbol="GBPUSD", volume=0.5),
            account=a1,
        )
    )
    book.on_positions(
        snapshot(
            0,
            position(3, account=a2, symbol="EURUSD", volume=1.0),
            position(4, account=a2, symbol="USDCHF", volume=2.0),
            account=a2,
        )
    )
    book.on_positions(snapshot(0, position(5, account=a3, symbol="EURUSD"), account=a3))
    fleet = Fleet([a1, a2, a3])
    tracker = CorrelationTracker(book, fleet.snapshot, {"bridge": bridge_client})
    await tracker.refresh()

    closes = {}
    for symbol in ("EURUSD", "GBPUSD", "USDCHF"):
        bars = await bridge_client.rates(a1, symbol, TIMEFRAME, WINDOW_BARS + 1)
        assert len(bars) == WINDOW_BARS + 1
        closes[symbol] = np.array([c for _, c in bars])

    def rho(a: str, b: str) -> float:
        return float(np.corrcoef(np.diff(np.log(closes[a])), np.diff(np.log(closes[b])))[0, 1])

    results = book.correlations()
    assert set(results) == {a1, a2}  # a3 holds one symbol: nothing to correlate
    assert results[a1].max_ratio == pytest.approx(rho("EURUSD", "GBPUSD"), abs=1e-6)
    assert results[a1].max_ratio > CORRELATED_AT and results[a1].correlated_lots == 1.5
    assert results[a2].max_ratio == pytest.approx(rho("EURUSD", "USDCHF"), abs=1e-6)
    assert results[a2].max_ratio < 0 and results[a2].correlated_lots == 0.0

    metrics = AgentMetrics(runtime=False)

    class Stub:
        snapshot = fleet.snapshot
        status = SyncStatus()

    metrics.attach_fleet(Stub(), Thresholds(), lambda: T0)
    metrics.attach_risk(book)
    _same(metrics)
    text = render(metrics, "")[0].decode()
    assert f'mt5_account_correlated_exposure_lots{{account="{a1}"}} 1.5' in text
    assert f'mt5_account_position_correlation_max_ratio{{account="{a2}"}} ' in text
    assert f'mt5_account_position_correlation_max_ratio{{account="{a3}"}}' not in text


async def test_a_symbol_without_bars_is_left_out(bridge_client: BridgeClient) -> None:
    a1 = DEMO_ACCOUNTS[0][0]
    book = RiskBook(clock=lambda: T0)
    book.on_positions(
        snapshot(
            0,
            position(1, account=a1, symbol="EURUSD"),
            position(2, account=a1, symbol="NOSUCH"),
            account=a1,
        )
    )
    tracker = CorrelationTracker(book, Fleet([a1]).snapshot, {"bridge": bridge_client})
    await tracker.refresh()
    assert book.correlations() == {}  # the only pair has no bars on one side
    assert tracker.refreshes == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "invalid_payload"),
        ({"account_id": 2, "symbol": "EURUSD", "bars": []}, "account_mismatch"),
        ({"account_id": 1, "symbol": "GBPUSD", "bars": []}, "invalid_payload"),
        ({"account_id": 1, "symbol": "EURUSD", "bars": {}}, "invalid_payload"),
        (
            {"account_id": 1, "symbol": "EURUSD", "bars": [{"time": "2026-12-01T00:00:00Z", "close": 0}]},
            "invalid_payload",
        ),
        (
            {"account_id": 1, "symbol": "EURUSD", "bars": [{"time": "2026-12-01T00:00:00Z", "close": True}]},
            "invalid_payload",
        ),
        (
            {
                "account_id": 1,
                "symbol": "EURUSD",
                "bars": [{"time": "2026-12-01T00:00:00Z", "close": 10**400}],
            },
            "invalid_payload",
        ),
        (
            {"account_id": 1, "symbol": "EURUSD", "bars": [{"time": "yesterday", "close": 1.1}]},
            "invalid_payload",
        ),
        (
            {
                "account_id": 1,
                "symbol": "EURUSD",
                "bars": [
                    {"time": "2026-12-01T00:05:00Z", "close": 1.1},
                    {"time": "2026-12-01T00:00:00Z", "close": 1.1},
                ],
            },
            "invalid_payload",
        ),
    ],
)
def test_bad_rates_are_refused(body: object, reason: str) -> None:
    from agent.sources.bridge.parse import PayloadError
    from agent.sources.bridge.parse_rates import parse_rates

    with pytest.raises(PayloadError) as err:
        parse_rates(1, "EURUSD", body)
    assert err.value.reason.value == reason


def test_good_rates_parse() -> None:
    from agent.sources.bridge.parse_rates import parse_rates

    body = {
        "account_id": 1,
        "symbol": "EURUSD",
        "bars": [
            {"time": "2026-12-01T00:00:00Z", "close": 1.1},
            {"time": "2026-12-01T00:05:00Z", "close": 2},
        ],
    }
    assert parse_rates(1, "EURUSD", body) == ((T0, 1.1), (T0 + timedelta(minutes=5), 2.0))


async def test_the_running_agent_exports_its_accounts_correlations(desk_and_agent) -> None:
    """`mt5-agent run` as built (tracker started with the agent) over our simulated bridge: every account
    holding two or more symbols gets its correlation, equal to numpy's on the bars the bridge serves;
    the others get none."""
    import asyncio
    import time

    import aiohttp

    from agent.telemetry import catalog as m
    from bridge.simulated import demo_accounts
    from tests.risk.test_risk_metrics import STEP_S, expected_open, parse, value

    now, client, agent_url = desk_and_agent
    logins = [e.login for e in demo_accounts()]
    for _ in range(12):  # a desk moment at which some account holds two symbols
        held = {
            a: {s for s, lots in expected_open(await client.positions(a))[1].items() if lots} for a in logins
        }
        if any(len(symbols) >= 2 for symbols in held.values()):
            break
        now[0] += STEP_S
    else:
        pytest.fail("no account held two symbols at any of the moments tried")
    many = {a for a, symbols in held.items() if len(symbols) >= 2}
    deadline = time.monotonic() + 30.0
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{agent_url}/metrics") as resp:
                samples = parse(await resp.text())
            shown = {
                a
                for a in logins
                if value(samples, m.ACCOUNT_POSITION_CORRELATION, account=str(a)) is not None
            }
            if shown == many:
                break
            assert time.monotonic() < deadline, f"correlations shown for {shown}, expected {many}"
            await asyncio.sleep(0.2)
    for a in many:
        lots = {s: v for s, v in expected_open(await client.positions(a))[1].items() if v}
        closes = {
            s: np.array([c for _, c in await client.rates(a, s, TIMEFRAME, WINDOW_BARS + 1)]) for s in lots
        }
        best = max(
            float(np.corrcoef(np.diff(np.log(closes[x])), np.diff(np.log(closes[y])))[0, 1])
            * math.copysign(1, lots[x])
            * math.copysign(1, lots[y])
            for i, x in enumerate(sorted(lots))
            for y in sorted(lots)[i + 1 :]
        )
        assert value(samples, m.ACCOUNT_POSITION_CORRELATION, account=str(a)) == pytest.approx(best, abs=1e-5)
