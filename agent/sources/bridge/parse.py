"""Validation of what a bridge sends: a payload becomes typed values or a `PayloadError`.

Nothing here defaults a missing number to 0: the terminal is the source of truth, so a missing or
invalid value is an error that the sync counts, never a value that gets stored.

Every value is validated into a bounded domain before it can reach a store or a metric: numbers are
finite and within +-1e15, ids are ASCII-digit integers that fit int64 (what SQLite and BSON hold),
leverage fits 2**53 (exact in JSON and in a float), timestamps lie between 2000-01-01 and the receive
time plus a small tolerance, strings are short. Checks on the common shapes come first (`type(x) is
float` and one chained comparison), so a 10,000-account batch pays almost nothing for them. Nothing
here may raise anything but `PayloadError` for any JSON value (tests/agent/test_hostile_property.py
drives it with hypothesis).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent.domain.accounts import AccountSnapshot, AccountValues, BrokerLevels, Reason, StopOutMode

# Fields the seed's bridge always sends in live_data; the rest are written only when present.
LIVE_REQUIRED = ("balance", "equity", "profit", "margin", "margin_free", "currency")
STORED_REQUIRED = ("balance",)
_NUMBERS = ("balance", "equity", "profit", "margin", "margin_free", "margin_level")
_EXACT_INT = 2**53  # every int below converts to float and back unchanged
MAX_ABS_VALUE = 1e15  # no balance, margin or margin level (percent) of a real account comes near it
_MAX_ABS_INT = 10**15
MAX_ACCOUNT_ID = 2**63 - 1  # int64: the largest key SQLite and BSON hold
_MAX_ID_DIGITS = len(str(MAX_ACCOUNT_ID))
MAX_TEXT = 256  # name, server: longer ones are ignored (descriptive only, never required)
MAX_CURRENCY = 16
_MAX_TIMESTAMP_TEXT = 64
MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2200, 1, 1, tzinfo=UTC)  # beyond any skewed clock: a plainly bad value
_MIN_EPOCH = MIN_TIMESTAMP.timestamp()
_MAX_EPOCH = MAX_TIMESTAMP.timestamp()
CLOCK_SKEW_TOLERANCE = 5.0  # seconds a source timestamp may be ahead of the receive time

# The bridge's error codes (bridge/errors.py, DESIGN.md section 4) -> the closed set of reasons.
_CODE_REASONS: dict[str, Reason] = {
    "login_failed": Reason.LOGIN_FAILED,
    "terminal_unavailable": Reason.NO_LIVE_DATA,
    "terminal_timeout": Reason.TIMEOUT,
    "account_mismatch": Reason.ACCOUNT_MISMATCH,
    "unknown_account": Reason.NOT_FOUND,
}


class PayloadError(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ClockSkewError(PayloadError):
    """A live_data timestamp ahead of the receive time by more than the tolerance: the values may be
    real, but when they were read is unknown (a bridge clock or time zone is wrong, e.g. naive broker
    time), so they must not make the account look fresh."""

    def __init__(self, ahead_seconds: float, tolerance: float) -> None:
        super().__init__(
            Reason.INVALID_PAYLOAD,
            f"live_data.timestamp is {ahead_seconds:.0f}s ahead of the receive time (tolerance "
            f"{tolerance:g}s): the bridge clock or time zone is wrong (naive broker time?); "
            "not trusted for freshness",
        )
        self.ahead_seconds = ahead_seconds


def _invalid(message: str) -> PayloadError:
    return PayloadError(Reason.INVALID_PAYLOAD, message)


def _show(value: Any) -> str:
    """A short, safe description of a hostile value for a message (never a huge repr)."""
    t = type(value)
    if t is int and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    if t is dict:
        return "an object"
    if t is list:
        return "an array"
    if t is str:
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    return repr(value)[:60]


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def reason_for_code(code: Any, default: Reason) -> Reason:
    """The reason for a bridge error code (`{"error": {"code"}}`), `default` for any other."""
    return _CODE_REASONS.get(code, default) if type(code) is str else default


def error_code(body: Any) -> str | None:
    """The `error.code` of a bridge error body, when it is a short string."""
    err = body.get("error") if type(body) is dict else None
    code = err.get("code") if type(err) is dict else None
    return code if type(code) is str and len(code) <= 64 else None


def error_text(err: Any) -> str:
    """`code: message` of a bridge error object, from strings only (never str() of a structure,
    which could be nested thousands deep)."""
    if type(err) is dict:
        code, message = err.get("code"), err.get("message")
        parts = [p[:200] for p in (code, message) if type(p) is str]
        return ": ".join(parts) or "error"
    return err[:200] if type(err) is str else "error"


def parse_account_id(value: Any) -> int:
    """An MT5 login: a positive integer that fits int64. A JSON number, or a string of ASCII digits
    (the seed's JSON varies); no sign, no spaces, no other digits (`"²"`, `"١٢٣"`), no exponent."""
    t = type(value)
    if t is int:  # what JSON gives (bool is not int here): 4 calls per account
        if 0 < value <= MAX_ACCOUNT_ID:
            return value
    elif t is str:
        if 0 < len(value) <= _MAX_ID_DIGITS and value.isascii() and value.isdigit():
            n = int(value)
            if 0 < n <= MAX_ACCOUNT_ID:
                return n
    elif t is float:
        if value.is_integer() and 0 < value <= _EXACT_INT:
            return int(value)
    raise _invalid(f"account id {_show(value)} is not a positive 64-bit integer")


def _number(name: str, value: Any) -> float:
    t = type(value)
    if t is float:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return value
        if value != value or value in (float("inf"), float("-inf")):
            raise _invalid(f"{name} is not finite ({value!r})")
        raise _invalid(f"{name} {value!r} is beyond +-{MAX_ABS_VALUE:g}")
    if t is int:
        if -_MAX_ABS_INT <= value <= _MAX_ABS_INT:
            return float(value)
        raise _invalid(f"{name} is {_show(value)}, beyond +-{MAX_ABS_VALUE:g}")
    raise _invalid(f"{name} is {_json_type(value)}, not a number")


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 (naive means UTC) or epoch seconds, as a tz-aware UTC datetime within
    2000-01-01..2200-01-01 (anything else is not a time a terminal read)."""
    t = type(value)
    if t is float or t is int:
        if _MIN_EPOCH <= value < _MAX_EPOCH:  # NaN fails both
            return datetime.fromtimestamp(value, UTC)
        raise _invalid(f"timestamp {_show(value)} is not between 2000-01-01 and 2200-01-01")
    if t is str:
        if len(value) > _MAX_TIMESTAMP_TEXT:
            raise _invalid(f"timestamp {_show(value)} is not ISO-8601")
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        except (ValueError, OverflowError):  # "0001-01-01T00:00:00+01:00" overflows on conversion
            raise _invalid(f"timestamp {_show(value)} is not an ISO-8601 time") from None
        if not MIN_TIMESTAMP <= ts < MAX_TIMESTAMP:
            raise _invalid(f"timestamp {_show(value)} is not between 2000-01-01 and 2200-01-01")
        return ts
    raise _invalid(f"timestamp is {_json_type(value)}, not a time")


def parse_values(data: Any, *, required: tuple[str, ...]) -> AccountValues:
    if type(data) is not dict:
        raise _invalid("account data is not an object")
    get = data.get
    missing = [f for f in required if get(f) is None]
    if missing:
        raise _invalid(f"missing {', '.join(missing)}")
    out: dict[str, Any] = {}
    lo, hi = -MAX_ABS_VALUE, MAX_ABS_VALUE
    for name in _NUMBERS:
        value = get(name)
        if value is not None:
            # A float in range is what JSON usually gives, and what _number would return unchanged.
            out[name] = value if type(value) is float and lo <= value <= hi else _number(name, value)
    leverage = get("leverage")
    if leverage is not None:
        if type(leverage) is int and 0 < leverage < _EXACT_INT:
            out["leverage"] = leverage
        elif type(leverage) is float and leverage.is_integer() and 0 < leverage < _EXACT_INT:
            out["leverage"] = int(leverage)
        else:
            raise _invalid(f"leverage {_show(leverage)} is not a positive integer below 2**53")
    cur = get("currency")
    if cur is not None:
        if type(cur) is not str or not (cur := cur.strip()) or len(cur) > MAX_CURRENCY:
            raise _invalid(f"currency {_show(cur)} is not a currency code")
        out["currency"] = cur
    trade_allowed = get("trade_allowed")
    if trade_allowed is not None:
        if type(trade_allowed) is not bool:
            raise _invalid("trade_allowed is not a boolean")
        out["trade_allowed"] = trade_allowed
    return AccountValues(**out)


_STOPOUT_MODES = {mode.value: mode for mode in StopOutMode}
MAX_PERCENT_LEVEL = 10_000.0  # a margin call above 10,000 % (equity 100x the used margin) is no setting
_LEVELS: dict[tuple[StopOutMode, float, float], BrokerLevels] = {}  # the few levels brokers use, shared
_MAX_LEVELS = 1024


def parse_broker_levels(data: dict[str, Any]) -> BrokerLevels | None:
    """The broker's margin call and stop-out levels of a live_data object (issue 14), or None when they
    are absent (the seed's bridge) or invalid: an unknown mode, a level that is not a finite positive
    number, a stop-out above the margin call, a percent beyond MAX_PERCENT_LEVEL. Invalid levels never
    fail the account's read (its values are still good): the alert falls back to its rendered levels."""
    raw_mode: Any = data.get("margin_so_mode")
    mode = _STOPOUT_MODES.get(raw_mode) if type(raw_mode) is str else None
    raw_call: Any = data.get("margin_so_call")
    raw_stop_out: Any = data.get("margin_so_so")
    if mode is None or type(raw_call) not in (int, float) or type(raw_stop_out) not in (int, float):
        return None
    if not (-_MAX_ABS_INT <= raw_call <= _MAX_ABS_INT and -_MAX_ABS_INT <= raw_stop_out <= _MAX_ABS_INT):
        return None  # (also keeps float() of a huge JSON integer from raising)
    call, stop_out = float(raw_call), float(raw_stop_out)
    top = MAX_PERCENT_LEVEL if mode is StopOutMode.PERCENT else MAX_ABS_VALUE
    if not 0.0 < stop_out <= call <= top:  # False for NaN too
        return None
    key = (mode, call, stop_out)
    levels = _LEVELS.get(key)
    if levels is None:
        levels = BrokerLevels(mode, call, stop_out)
        if len(_LEVELS) < _MAX_LEVELS:
            _LEVELS[key] = levels
    return levels


def text_field(value: Any) -> str | None:
    """A descriptive string (name, server) when it is one of sane length; otherwise not sent."""
    return value if type(value) is str and len(value) <= MAX_TEXT else None


def parse_live_data(
    account: int, live: Any, received_at: datetime, *, tolerance: float = CLOCK_SKEW_TOLERANCE
) -> AccountSnapshot:
    if type(live) is not dict:
        raise _invalid("live_data is not an object")
    login = live.get("login")
    if login is not None:
        try:
            got = parse_account_id(login)
        except PayloadError:
            raise _invalid(f"live_data.login {_show(login)} is not an account number") from None
        if got != account:
            raise PayloadError(
                Reason.ACCOUNT_MISMATCH, f"bridge returned account {got}'s data for account {account}"
            )
    values = parse_values(live, required=LIVE_REQUIRED)
    read_at = received_at
    ahead = 0.0
    ts = live.get("timestamp")
    if ts is not None:
        source = parse_timestamp(ts)
        ahead = (source - received_at).total_seconds()
        if ahead > tolerance:
            raise ClockSkewError(ahead, tolerance)
        # A lead within the tolerance is ordinary clock jitter: the data is as new as its receipt.
        read_at = min(source, received_at)
    return AccountSnapshot(
        values=values,
        live=True,
        read_at=read_at,
        name=text_field(live.get("name")),
        server=text_field(live.get("server")),
        ahead_seconds=max(ahead, 0.0),
        broker_levels=parse_broker_levels(live),
    )


def parse_info(
    account: int, payload: Any, received_at: datetime, *, tolerance: float = CLOCK_SKEW_TOLERANCE
) -> AccountSnapshot:
    """`/api/mt5/account/{id}/info` as the seed's bridge and ours send it."""
    if type(payload) is not dict:
        raise _invalid("response is not a JSON object")
    live = payload.get("live_data")
    if "error" in payload and not live:
        err = payload["error"]
        code = err.get("code") if type(err) is dict else None
        raise PayloadError(
            reason_for_code(code, Reason.INVALID_PAYLOAD), f"bridge reported an error: {error_text(err)}"
        )
    account_id = payload.get("account_id")
    if account_id is not None:
        try:
            got = parse_account_id(account_id)
        except PayloadError:
            raise _invalid(f"account_id {_show(account_id)} is not an account number") from None
        if got != account:
            raise PayloadError(
                Reason.ACCOUNT_MISMATCH, f"bridge answered for account {got} when asked for {account}"
            )
    if live:
        return parse_live_data(account, live, received_at, tolerance=tolerance)
    stored = payload.get("stored_data")
    if stored:
        values = parse_values(stored, required=STORED_REQUIRED)
        return AccountSnapshot(values=values, live=False, read_at=None)
    if "live_data" in payload or "live_error" in payload:
        # The bridge answered for the account, but its terminal gave no data and it has none stored.
        live_error = payload.get("live_error")
        detail = f" ({error_text(live_error)})" if live_error is not None else ""
        raise PayloadError(Reason.NO_LIVE_DATA, f"no live data and no stored data{detail}")
    raise _invalid("neither live_data nor stored_data in response")
