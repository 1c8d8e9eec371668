"""GET /api/mt5/account/{id}/rates/{symbol} (issue 14): the account's terminal's last bars, on a real
bridge over the simulated pool. Shape against the served OpenAPI schema, times converted from broker time
to UTC, inputs validated (400), unknown symbol and account (404), bars stable for a given clock, and the
simulated market's correlations (EURUSD with GBPUSD positive, with USDCHF negative) checked with numpy."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from bridge.openapi import build_document
from bridge.simulated import DEMO_ACCOUNTS

A = DEMO_ACCOUNTS[0][0]
NOW = 1_796_000_123.0  # a fixed clock: bars are a pure function of it


def _closes(body: dict) -> np.ndarray:
    return np.array([b["close"] for b in body["bars"]], dtype=float)


async def test_bars_shape_times_and_stability(make_bridge) -> None:
    br = await make_bridge(clock=lambda: NOW, utc_offset_hours=2.0)
    status, body = await br.get(f"/api/mt5/account/{A}/rates/EURUSD?timeframe=M5&count=100")
    assert status == 200, body
    schema = {"$ref": "#/components/schemas/RatesResponse", "components": build_document()["components"]}
    assert not list(Draft202012Validator(schema).iter_errors(body))
    assert (body["account_id"], body["symbol"], body["timeframe"]) == (A, "EURUSD", "M5")
    bars = body["bars"]
    assert len(bars) == 100
    times = [datetime.fromisoformat(b["time"]).timestamp() for b in bars]
    assert all(b["time"].endswith("Z") for b in bars)
    assert np.all(np.diff(times) == 300)
    assert times[-1] <= NOW < times[-1] + 300  # UTC (the +2 h broker offset taken off): the bar in progress
    for b in bars:
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
        assert 1.0 < b["close"] < 1.2 and b["tick_volume"] > 0
    _, again = await br.get(f"/api/mt5/account/{A}/rates/EURUSD?count=100")  # M5 is the default
    assert again == body
    _, longer = await br.get(f"/api/mt5/account/{A}/rates/EURUSD?timeframe=M5&count=150")
    assert longer["bars"][-100:] == bars  # a bar is the same in every answer


async def test_simulated_market_correlates_as_currencies_do(make_bridge) -> None:
    br = await make_bridge(clock=lambda: NOW)
    returns = {}
    for symbol in ("EURUSD", "GBPUSD", "USDCHF"):
        status, body = await br.get(f"/api/mt5/account/{A}/rates/{symbol}?timeframe=M5&count=500")
        assert status == 200
        returns[symbol] = np.diff(np.log(_closes(body)))
    assert np.corrcoef(returns["EURUSD"], returns["GBPUSD"])[0, 1] > 0.4
    assert np.corrcoef(returns["EURUSD"], returns["USDCHF"])[0, 1] < -0.4


@pytest.mark.parametrize(
    "query",
    [
        "EURUSD?timeframe=M2",
        "EURUSD?timeframe=m5",
        "EURUSD?count=0",
        "EURUSD?count=5001",
        "EURUSD?count=-1",
        "EURUSD?count=1e3",
        "EURUSD?count=%EF%BC%91",  # a full-width digit: isdigit() but not ASCII
        "EUR%20USD",
        "-EURUSD",
        "EUR%2FUSD",
        "X" * 33,
    ],
)
async def test_bad_input_is_a_400(make_bridge, query: str) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/rates/{query}")
    assert status == 400, (query, body)
    assert body["error"]["code"] == "bad_request"


async def test_unknown_symbol_and_account_are_404s_and_the_terminal_stays_healthy(make_bridge) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/rates/NOSUCH")
    assert (status, body["error"]["code"]) == (404, "unknown_symbol")
    status, body = await br.get("/api/mt5/account/999999999/rates/EURUSD")
    assert (status, body["error"]["code"]) == (404, "unknown_account")
    status, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "healthy" and "rates" in health["features"]


def test_real_adapter_maps_mt5s_structured_array() -> None:
    """MetaTrader5.copy_rates_from_pos answers a numpy structured array (a stand-in module here: no
    terminal runs on this machine); the symbol is put in Market Watch first."""
    import types

    from bridge.mt5_terminal import MetaTrader5Terminal
    from bridge.terminal import Rate

    dtype = [
        (f, "<i8" if f in ("time", "tick_volume", "spread", "real_volume") else "<f8") for f in Rate._fields
    ]
    calls: list[tuple] = []
    module = types.ModuleType("MetaTrader5")

    def symbol_select(symbol: str, enable: bool) -> bool:
        calls.append(("select", symbol, enable))
        return True

    module.symbol_select = symbol_select  # type: ignore[attr-defined]

    def copy_rates_from_pos(symbol: str, timeframe: int, start: int, count: int) -> object:
        calls.append(("copy", symbol, timeframe, start, count))
        if symbol != "EURUSD":
            return None
        return np.array([(1_796_000_100, 1.1, 1.2, 1.0, 1.15, 42, 8, 0)], dtype=dtype)

    module.copy_rates_from_pos = copy_rates_from_pos  # type: ignore[attr-defined]
    term = MetaTrader5Terminal(module=module)
    assert term.copy_rates_from_pos("EURUSD", 5, 0, 1) == (
        Rate(1_796_000_100, 1.1, 1.2, 1.0, 1.15, 42, 8, 0),
    )
    assert calls == [("select", "EURUSD", True), ("copy", "EURUSD", 5, 0, 1)]
    assert term.copy_rates_from_pos("NOSUCH", 5, 0, 1) is None
    rate = term.copy_rates_from_pos("EURUSD", 5, 0, 1)[0]  # type: ignore[index]
    assert type(rate.time) is int and type(rate.close) is float
