"""What a store accepts of positions, deals and trade events: integers within 64 bits, finite numbers, text
that encodes as UTF-8 and event `data` that is a JSON object both backends hold exactly. Checked before
anything is written, so SQLite and MongoDB refuse the same input the same way (StoreRejected naming the
accounts, nothing written), as checks.py does for account writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from agent.domain.trades import Deal, EventType, Position, PositionsSnapshot, TradeEvent
from agent.store.checks import INT64_MAX, INT64_MIN
from agent.store.errors import StoreRejected

MAX_DATA_DEPTH = 32  # nesting of an event's data (BSON allows 100; a detector needs 2 or 3)

_POSITION_FIELDS = tuple(f.name for f in dataclasses.fields(Position))
_DEAL_FIELDS = tuple(f.name for f in dataclasses.fields(Deal))
_EVENT_FIELDS = ("account", "identifier", "dedup_key", "time", "detected_at", "symbol")


def _value_problem(value: object) -> str | None:
    """Why one scalar field cannot be stored, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else "does not fit in 64 bits"
    if isinstance(value, float):
        return None if value - value == 0.0 else "is not a finite number"
    if isinstance(value, str):
        return None if value.isascii() or _utf8(value) else "is not valid Unicode text"
    if isinstance(value, datetime):
        return None
    return f"is a {type(value).__name__}, not a storable value"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def data_problem(data: object, path: str = "data", depth: int = 0) -> str | None:
    """Why an event's `data` is not a JSON object both stores hold exactly, or None. Keys are text not
    starting with '$' and without NUL (MongoDB field names); values JSON's own types (a tuple is an
    array and reads back as a list)."""
    if depth > MAX_DATA_DEPTH:
        return f"{path} is nested deeper than {MAX_DATA_DEPTH} levels"
    if isinstance(data, Mapping):
        for key, value in data.items():
            if not isinstance(key, str):
                return f"{path} has a non-text key {key!r}"
            if key.startswith("$") or "\x00" in key or not _utf8(key):
                return f"{path} has a key MongoDB cannot hold: {key!r}"
            if (why := data_problem(value, f"{path}.{key}", depth + 1)) is not None:
                return why
        return None
    if depth == 0:
        return "data is not a JSON object"
    if isinstance(data, list | tuple):
        for i, value in enumerate(data):
            if (why := data_problem(value, f"{path}[{i}]", depth + 1)) is not None:
                return why
        return None
    if isinstance(data, datetime):
        return f"{path} is a datetime: data holds JSON values only (ISO text for a time)"
    if (why := _value_problem(data)) is not None:
        return f"{path} {why}"
    return None


def _account_problem(account: object) -> str | None:
    if type(account) is not int or not INT64_MIN <= account <= INT64_MAX:
        return "account does not fit in 64 bits"
    return None


def _fields_problem(item: object, names: Iterable[str], what: str) -> str | None:
    for name in names:
        if (why := _value_problem(getattr(item, name))) is not None:
            return f"{what} {name} {why}"
    return None


def _reject(bad: dict[Any, str], what: str) -> None:
    if bad:
        shown = "; ".join(f"account {str(a)[:24]}: {why}" for a, why in list(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise StoreRejected(f"{what} of {len(bad)} account(s) refused, nothing written: {shown}{more}", bad)


def check_snapshot(account: int, snapshot: PositionsSnapshot) -> None:
    """ValueError when the snapshot or a position in it is another account's (the caller's bug);
    StoreRejected naming the account for a value the store cannot hold."""
    if snapshot.account != account or any(p.account != account for p in snapshot.positions):
        raise ValueError(f"positions snapshot for account {account} holds another account's data")
    if (why := _value_problem(snapshot.as_of_event_id)) is not None:
        _reject({account: f"as_of_event_id {why}"}, "positions")
    for p in snapshot.positions:
        why = _account_problem(p.account) or _fields_problem(p, _POSITION_FIELDS, f"position {p.identifier}")
        if why is not None:
            _reject({account: why}, "positions")


def check_deals(deals: Iterable[Deal]) -> None:
    bad: dict[Any, str] = {}
    for d in deals:
        if d.account in bad:
            continue
        why = _account_problem(d.account) or _fields_problem(d, _DEAL_FIELDS, f"deal {d.ticket}")
        if why is not None:
            bad[d.account] = why
    _reject(bad, "deals")


def check_events(events: Iterable[TradeEvent]) -> None:
    """StoreRejected naming the accounts whose events cannot be stored; ValueError for an event no
    detector should build (an empty dedup key, an unknown type)."""
    bad: dict[Any, str] = {}
    for e in events:
        if not isinstance(e.dedup_key, str) or not e.dedup_key:
            raise ValueError(f"event of account {e.account} needs a non-empty text dedup_key")
        if not isinstance(e.type, EventType):
            raise ValueError(f"event {e.dedup_key!r} has type {e.type!r}, not an EventType")
        if e.account in bad:
            continue
        why = (
            _account_problem(e.account)
            or _fields_problem(e, _EVENT_FIELDS, f"event {e.dedup_key!r}")
            or data_problem(e.data)
        )
        if why is not None:
            bad[e.account] = why
    _reject(bad, "events")


def validate_listing(after: int, limit: int) -> None:
    """`list_events` arguments (ValueError: the caller's bug)."""
    if type(after) is not int or after < 0:
        raise ValueError(f"after must be an integer >= 0, got {after!r}")
    if type(limit) is not int or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit!r}")


def validate_pruning(max_events: int | None) -> None:
    if max_events is not None and (type(max_events) is not int or max_events < 0):
        raise ValueError(f"max_events must be an integer >= 0, got {max_events!r}")
