"""Validation of our bridge's bars (`/api/mt5/account/{id}/rates/{symbol}`, issue 14): the closes, in time
order, as the risk correlation uses them. A bar with a bad time or close is an invalid payload (never a
made-up price); nothing here raises anything but `PayloadError`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from agent.domain.accounts import Reason
from agent.sources.bridge.parse import MAX_ABS_VALUE, PayloadError, parse_account_id, parse_timestamp

MAX_BARS = 5000  # the bridge's own limit


def _invalid(message: str) -> PayloadError:
    return PayloadError(Reason.INVALID_PAYLOAD, message)


def parse_rates(account: int, symbol: str, body: Any) -> tuple[tuple[datetime, float], ...]:
    """(bar open time UTC, close) of every bar, strictly increasing in time; closes finite and positive."""
    if type(body) is not dict:
        raise _invalid("rates: response is not a JSON object")
    if parse_account_id(body.get("account_id")) != account:
        raise PayloadError(Reason.ACCOUNT_MISMATCH, f"rates: answer for another account than {account}")
    if body.get("symbol") != symbol:
        raise _invalid(f"rates: answer for another symbol than {symbol}")
    bars = body.get("bars")
    if type(bars) is not list or len(bars) > MAX_BARS:
        raise _invalid("rates: no bars list, or too long")
    out: list[tuple[datetime, float]] = []
    for bar in bars:
        if type(bar) is not dict:
            raise _invalid("rates: a bar is not an object")
        at = parse_timestamp(bar.get("time"))
        close: Any = bar.get("close")
        if type(close) not in (int, float) or not 0 < close <= MAX_ABS_VALUE or not math.isfinite(close):
            raise _invalid(f"rates: bar close {close!r:.40} is not a positive price")
        if out and at <= out[-1][0]:
            raise _invalid("rates: bars not in increasing time order")
        out.append((at, float(close)))
    return tuple(out)
