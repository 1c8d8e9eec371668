"""Validation of what a bridge sends: a payload becomes typed values or a `PayloadError`.

Nothing here defaults a missing number to 0: the terminal is the source of truth, so a missing or
invalid value is an error that the sync counts, never a value that gets stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.models import AccountValues, Reason

# Fields the seed's bridge always sends in live_data; the rest are written only when present.
LIVE_REQUIRED = ("balance", "equity", "profit", "margin", "margin_free", "currency")
STORED_REQUIRED = ("balance",)
_NUMBERS = ("balance", "equity", "profit", "margin", "margin_free", "margin_level")
_EXACT_INT = 2**53  # every int below converts to float and back unchanged


class PayloadError(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _invalid(message: str) -> PayloadError:
    return PayloadError(Reason.INVALID_PAYLOAD, message)


def parse_account_id(value: Any) -> int:
    """An MT5 login: a positive integer (numeric strings accepted, as the seed's JSON varies)."""
    if type(value) is int and value > 0:  # what JSON gives (bool is not int here): 4 calls per account
        return value
    if isinstance(value, bool):
        raise _invalid(f"account id {value!r} is not a number")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    else:
        raise _invalid(f"account id {value!r} is not a positive integer")
    if n <= 0:
        raise _invalid(f"account id {value!r} is not a positive integer")
    return n


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} is {type(value).__name__}, not a number")
    f = float(value)
    if not math.isfinite(f):
        raise _invalid(f"{name} is not finite ({value!r})")
    return f


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 (naive means UTC) or epoch seconds, as a tz-aware UTC datetime."""
    if isinstance(value, bool):
        raise _invalid("timestamp is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _invalid("timestamp is not finite")
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _invalid(f"timestamp {value!r} is not ISO-8601") from None
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    raise _invalid("timestamp is not a time")


def parse_values(data: Any, *, required: tuple[str, ...]) -> AccountValues:
    if not isinstance(data, dict):
        raise _invalid("account data is not an object")
    get = data.get
    missing = [f for f in required if get(f) is None]
    if missing:
        raise _invalid(f"missing {', '.join(missing)}")
    out: dict[str, Any] = {}
    isfinite = math.isfinite
    for name in _NUMBERS:
        value = get(name)
        if value is not None:
            # A finite float is what JSON usually gives, and what _number would return unchanged.
            out[name] = value if type(value) is float and isfinite(value) else _number(name, value)
    leverage = get("leverage")
    if leverage is not None:
        if type(leverage) is int and 0 < leverage < _EXACT_INT:  # int(float(x)) == x: same as below
            out["leverage"] = leverage
        else:
            lev = _number("leverage", leverage)
            if not lev.is_integer() or lev <= 0:
                raise _invalid(f"leverage {data['leverage']!r} is not a positive integer")
            out["leverage"] = int(lev)
    if data.get("currency") is not None:
        cur = data["currency"]
        if not isinstance(cur, str) or not cur.strip() or len(cur) > 16:
            raise _invalid(f"currency {cur!r} is not a currency code")
        out["currency"] = cur.strip()
    if data.get("trade_allowed") is not None:
        if not isinstance(data["trade_allowed"], bool):
            raise _invalid("trade_allowed is not a boolean")
        out["trade_allowed"] = data["trade_allowed"]
    return AccountValues(**out)


@dataclass(frozen=True)
class AccountData:
    """What one account's response gave: live values, or (seed fallback) stored values."""

    values: AccountValues
    live: bool
    read_at: datetime | None  # terminal read time for live data, clamped to the receive time
    name: str | None = None
    server: str | None = None


def parse_live_data(account: int, live: Any, received_at: datetime) -> AccountData:
    if not isinstance(live, dict):
        raise _invalid("live_data is not an object")
    login = live.get("login")
    if login is not None:
        try:
            got = parse_account_id(login)
        except PayloadError:
            raise _invalid(f"live_data.login {login!r} is not an account number") from None
        if got != account:
            raise PayloadError(
                Reason.ACCOUNT_MISMATCH, f"bridge returned account {got}'s data for account {account}"
            )
    values = parse_values(live, required=LIVE_REQUIRED)
    read_at = received_at
    if live.get("timestamp") is not None:
        # Trust the terminal's read time but never let it claim to be newer than what we received.
        read_at = min(parse_timestamp(live["timestamp"]), received_at)
    name = live.get("name") if isinstance(live.get("name"), str) else None
    server = live.get("server") if isinstance(live.get("server"), str) else None
    return AccountData(values=values, live=True, read_at=read_at, name=name, server=server)


def parse_info(account: int, payload: Any, received_at: datetime) -> AccountData:
    """`/api/mt5/account/{id}/info` as the seed's bridge and ours send it."""
    if not isinstance(payload, dict):
        raise _invalid("response is not a JSON object")
    if "error" in payload and not payload.get("live_data"):
        raise _invalid(f"bridge reported an error: {str(payload['error'])[:200]}")
    if payload.get("account_id") is not None:
        try:
            got = parse_account_id(payload["account_id"])
        except PayloadError:
            raise _invalid(f"account_id {payload['account_id']!r} is not an account number") from None
        if got != account:
            raise PayloadError(
                Reason.ACCOUNT_MISMATCH, f"bridge answered for account {got} when asked for {account}"
            )
    live = payload.get("live_data")
    if live:
        return parse_live_data(account, live, received_at)
    stored = payload.get("stored_data")
    if stored:
        values = parse_values(stored, required=STORED_REQUIRED)
        return AccountData(values=values, live=False, read_at=None)
    raise _invalid("neither live_data nor stored_data in response")
