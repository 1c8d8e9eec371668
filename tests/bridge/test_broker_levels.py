"""The broker's margin call and stop-out levels in live_data (issue 14): MT5's margin_so_mode, margin_so_call
and margin_so_so as the terminal reports them, encoded by the batch path exactly as json.dumps writes the
single-account dict; the simulator's levels are a realistic pair per server, stable across runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.api import encode_read, live_data, stopout_mode
from bridge.pool import AccountRead
from bridge.simulated import BROKER_LEVELS, SERVER, broker_levels
from bridge.terminal import AccountInfo
from tests.bridge.test_batch_encoding import numbers

modes = st.integers(min_value=-3, max_value=3) | st.sampled_from([True, 0.0, 1.0, "0", None])


@settings(max_examples=300, deadline=None)
@given(mode=modes, call=numbers, stop_out=numbers)
def test_levels_are_encoded_as_json_dumps(mode: object, call: float, stop_out: float) -> None:
    info = AccountInfo(login=7, margin_so_mode=mode, margin_so_call=call, margin_so_so=stop_out)  # type: ignore[arg-type]
    read = AccountRead(info, datetime(2026, 12, 2, tzinfo=UTC))
    for _ in range(2):  # the second time from the cache of encoded levels
        live, _stored = encode_read(read)
        assert live == json.dumps(live_data(read))
    doc = json.loads(live)
    expected = {0: "percent", 1: "money"}.get(mode) if type(mode) is int else None
    assert doc["margin_so_mode"] == expected


def test_stopout_modes_are_mt5s() -> None:
    assert stopout_mode(0) == "percent"  # ACCOUNT_STOPOUT_MODE_PERCENT
    assert stopout_mode(1) == "money"  # ACCOUNT_STOPOUT_MODE_MONEY
    assert stopout_mode(2) is None and stopout_mode(True) is None and stopout_mode("0") is None


def test_simulated_levels_are_realistic_and_stable_per_server() -> None:
    assert broker_levels(SERVER) == (100.0, 50.0)
    seen = {broker_levels(f"Broker{i}-Live") for i in range(50)}
    assert seen == set(BROKER_LEVELS)  # every pair is used by some server
    for call, stop_out in BROKER_LEVELS:
        assert 0 < stop_out < call <= 150
    assert all(broker_levels(f"Broker{i}-Live") == broker_levels(f"Broker{i}-Live") for i in range(5))
