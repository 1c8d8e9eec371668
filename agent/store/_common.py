"""Conversions shared by both stores, so SQLite and MongoDB return identical records.

Both stores keep datetimes at millisecond precision in UTC (BSON's resolution), so a value read back
from either store compares equal to the same value read from the other.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import typing
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from agent.models import (
    RECORD_FIELDS,
    VALUE_FIELDS,
    AccountRecord,
    AccountSyncState,
    AccountUpdate,
    Reason,
    RunResult,
    SyncRun,
)
from agent.store.base import StoreRejected

log = logging.getLogger(__name__)

T = TypeVar("T")


def _datetime_fields(cls: type) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    return frozenset(n for n, h in hints.items() if h in (datetime, datetime | None))


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what both stores hold exactly (BSON int64, SQLite INTEGER)
ACCOUNT_MAX = INT64_MAX
CLIENT_ID_MAX_LENGTH = 128
# Printable ASCII without '/': the client paths (/api/client/{client_id}/...) cannot carry a '/', and a
# client id shows up in logs and URLs, where control or look-alike characters only cause trouble.
CLIENT_ID_PATTERN = "^[ -.0-~]+$"
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)

RECORD_DATETIME_FIELDS = _datetime_fields(AccountRecord)
STATE_DATETIME_FIELDS = _datetime_fields(AccountSyncState)
RUN_DATETIME_FIELDS = _datetime_fields(SyncRun)
STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AccountSyncState))
RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SyncRun))
_RECORD_VALUE_FIELDS = tuple(f for f in RECORD_FIELDS if f != "account")


def utc_ms(dt: datetime) -> datetime:
    """Aware UTC, floored to the millisecond like BSON; a naive value is taken as UTC (as pymongo does)."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def iso_ms(dt: datetime) -> str:
    """Fixed-width ISO-8601 UTC text: sorts lexicographically in time order (used for run ordering)."""
    if dt.tzinfo is not UTC:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.isoformat(timespec="milliseconds")  # truncates, like utc_ms


def parse_dt(value: Any, field: str) -> datetime | None:
    """Read a stored datetime (BSON date or ISO text) back as aware UTC; garbage becomes None, logged."""
    if value is None:
        return None
    dt = value
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass
    if isinstance(dt, datetime):
        if dt.tzinfo is UTC and not dt.microsecond % 1000:
            return dt  # what both stores normally hold: skip the conversion (10,000-account reads)
        return utc_ms(dt)
    log.warning("stored field %s is not a datetime (%s); read as missing", field, type(value).__name__)
    return None


def check_account(account: object) -> int:
    """An account number a store can key on (ValueError otherwise)."""
    if type(account) is not int or not 1 <= account <= ACCOUNT_MAX:
        raise ValueError(f"account must be an integer from 1 to {ACCOUNT_MAX}, got {account!r}")
    return account


def client_id_problem(client_id: object) -> str | None:
    """Why `client_id` cannot be assigned, or None when it can (the API and the CLI apply this rule)."""
    if not isinstance(client_id, str):
        return "client_id must be a string"
    if not 1 <= len(client_id) <= CLIENT_ID_MAX_LENGTH or not _CLIENT_ID.fullmatch(client_id):
        return f"client_id must be 1 to {CLIENT_ID_MAX_LENGTH} printable ASCII characters other than '/'"
    return None


def check_client_id(client_id: str | None) -> str | None:
    if client_id is not None and (problem := client_id_problem(client_id)) is not None:
        raise ValueError(problem)
    return client_id


def _refusal(value: object) -> str | None:
    kind = type(value)
    if kind is int and not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        return "does not fit in 64 bits"
    if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
        return "is not a finite number"
    return None


def refused(updates: Iterable[AccountUpdate], states: Iterable[AccountSyncState]) -> dict[int, str]:
    """Account -> why its data cannot be stored (an integer beyond 64 bits, NaN or infinity), found
    before anything is written, so both stores refuse the same writes the same way. Inputs are already
    validated by the sync: this is the store's own guard, so one such value is never mistaken for the
    store being down. (Inlined type checks: it runs over every account of every cycle.)"""
    out: dict[int, str] = {}
    lo, hi = INT64_MIN, INT64_MAX
    for u in updates:
        if type(u.account) is not int or not lo <= u.account <= hi:
            out[u.account] = "account does not fit in 64 bits"
            continue
        values = u.values
        for key in VALUE_FIELDS:
            v = getattr(values, key)
            kind = type(v)
            if kind is float:
                if v - v != 0.0:  # NaN or infinity (x - x is NaN for both)
                    out[u.account] = f"{key} is not a finite number"
                    break
            elif kind is int and not lo <= v <= hi:
                out[u.account] = f"{key} does not fit in 64 bits"
                break
    for s in states:
        for key in ("account", "consecutive_failures"):
            if (why := _refusal(getattr(s, key))) is not None:
                out.setdefault(s.account, f"sync state {key} {why}")
                break
    return out


def _short(account: int) -> str:
    text = str(account)
    return text if len(text) <= 24 else f"{text[:20]}...({len(text)} digits)"


def check_storable(updates: Iterable[AccountUpdate], states: Iterable[AccountSyncState]) -> None:
    """StoreRejected naming every refused account (the first few in the message) when any is."""
    bad = refused(updates, states)
    if bad:
        shown = "; ".join(f"account {_short(a)}: {why}" for a, why in list(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise StoreRejected(f"{len(bad)} account(s) refused, nothing written: {shown}{more}", bad)


def last_per_account(items: Iterable[T]) -> list[T]:
    """One entry per account, the last one winning: a store applies a cycle's writes in no
    guaranteed order (Mongo unordered bulk), so duplicates are resolved before writing."""
    by_account: dict[int, T] = {}
    for item in items:
        by_account[item.account] = item  # type: ignore[attr-defined]
    return list(by_account.values())


def record_from(account: int, values: Mapping[str, Any]) -> AccountRecord:
    """Build a record from allow-listed fields only: whatever else the document holds stays behind."""
    kwargs = {name: values[name] for name in _RECORD_VALUE_FIELDS if name in values}
    for name in RECORD_DATETIME_FIELDS:
        if kwargs.get(name) is not None:
            kwargs[name] = parse_dt(kwargs[name], name)
    if kwargs.get("client_id") is not None and not isinstance(kwargs["client_id"], str):
        kwargs["client_id"] = str(kwargs["client_id"])
    return AccountRecord(account=int(account), **kwargs)


def state_to_doc(state: AccountSyncState) -> dict[str, Any]:
    doc = {f: getattr(state, f) for f in STATE_FIELDS}  # not asdict: it deep-copies, 10x slower
    doc["last_reason"] = state.last_reason.value if state.last_reason is not None else None
    return doc


def state_from_doc(doc: Mapping[str, Any]) -> AccountSyncState:
    reason = doc.get("last_reason")
    try:
        last_reason = Reason(reason) if reason is not None else None
    except ValueError:
        log.warning("unknown failure reason %r stored for account %s; read as none", reason, doc["account"])
        last_reason = None
    return AccountSyncState(
        account=int(doc["account"]),
        consecutive_failures=int(doc.get("consecutive_failures") or 0),
        last_reason=last_reason,
        **{f: parse_dt(doc.get(f), f) for f in STATE_DATETIME_FIELDS},
    )


def run_to_doc(run: SyncRun) -> dict[str, Any]:
    doc = dataclasses.asdict(run)
    doc["result"] = run.result.value if run.result is not None else None
    doc["failures"] = {str(k): str(v) for k, v in run.failures.items()}
    return doc


def run_from_doc(doc: Mapping[str, Any]) -> SyncRun:
    kwargs = {f: doc[f] for f in RUN_FIELDS if f in doc}
    for f in RUN_DATETIME_FIELDS:
        if f in kwargs:
            kwargs[f] = parse_dt(kwargs[f], f)
    result = kwargs.get("result")
    try:
        kwargs["result"] = RunResult(result) if result is not None else None
    except ValueError:
        log.warning("unknown run result %r stored for run %s; read as none", result, doc.get("run_id"))
        kwargs["result"] = None
    kwargs["failures"] = dict(kwargs.get("failures") or {})
    return SyncRun(**kwargs)
