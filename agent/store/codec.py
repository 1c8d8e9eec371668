"""Conversions between domain types and stored documents, shared by both stores, so SQLite and MongoDB
return identical records.

Both stores keep datetimes at millisecond precision in UTC (BSON's resolution), so a value read back
from either store compares equal to the same value read from the other.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, TypeVar

from agent.domain.accounts import RECORD_FIELDS, AccountRecord, AccountSyncState, Reason
from agent.domain.runs import SyncRun

log = logging.getLogger(__name__)

T = TypeVar("T")


def _datetime_fields(cls: type) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    return frozenset(n for n, h in hints.items() if h in (datetime, datetime | None))


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


def last_per_account(items: Iterable[T]) -> list[T]:
    """One entry per account, the last one winning: a store applies a cycle's writes in no
    guaranteed order (Mongo unordered bulk), so duplicates are resolved before writing."""
    by_account: dict[int, T] = {}
    for item in items:
        by_account[item.account] = item  # type: ignore[attr-defined]
    return list(by_account.values())


SOURCE_FIELD = "source"  # the account document's field naming the source holding it (agent bookkeeping)
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # agent.config's rule for a source name


def valid_source(value: object) -> bool:
    """A stored source name the agent could have written (anything else is read as none)."""
    return isinstance(value, str) and _SOURCE_NAME.fullmatch(value) is not None


def source_items(sources: Mapping[int, str]) -> list[tuple[int, str]]:
    """`set_sources`' input, checked before anything is written (ValueError on a bad account or name)."""
    out = []
    for account, source in sources.items():
        if type(account) is not int or not 1 <= account <= 2**63 - 1:
            raise ValueError(f"account must be an integer from 1 to 2**63-1, got {account!r}")
        if not valid_source(source):
            raise ValueError(f"not a source name: {source!r}")
        out.append((account, source))
    return out


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


def _closed_fields(cls: type) -> dict[str, tuple[frozenset[Any], type[Enum] | None]]:
    """Fields typed with a closed set (an Enum or a Literal, optionally `| None`) -> (the values they
    accept, the Enum to build). A run read back then holds only values its type allows, whatever such
    field the domain adds next, with no change here."""
    out: dict[str, tuple[frozenset[Any], type[Enum] | None]] = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        options = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        if len(options) != 1:
            continue
        kind = options[0]
        if isinstance(kind, type) and issubclass(kind, Enum):
            out[name] = (frozenset(m.value for m in kind), kind)
        elif typing.get_origin(kind) is Literal:
            out[name] = (frozenset(typing.get_args(kind)), None)
    return out


RUN_CLOSED_FIELDS = _closed_fields(SyncRun)


def run_to_doc(run: SyncRun) -> dict[str, Any]:
    doc = dataclasses.asdict(run)
    for name in RUN_CLOSED_FIELDS:
        if isinstance(value := doc[name], Enum):
            doc[name] = value.value
    doc["failures"] = {str(k): str(v) for k, v in run.failures.items()}
    return doc


def run_from_doc(doc: Mapping[str, Any]) -> SyncRun:
    kwargs = {f: doc[f] for f in RUN_FIELDS if f in doc}
    for f in RUN_DATETIME_FIELDS:
        if f in kwargs:
            kwargs[f] = parse_dt(kwargs[f], f)
    for f, (allowed, enum) in RUN_CLOSED_FIELDS.items():
        value = kwargs.get(f)
        if value is None:
            continue
        try:
            known = value in allowed
        except TypeError:  # unhashable garbage
            known = False
        if not known:
            # The field's default instead (None for every such field today), never a value outside its type.
            log.warning("unknown run %s %r stored for run %s; read as none", f, value, doc.get("run_id"))
            del kwargs[f]
        elif enum is not None:
            kwargs[f] = enum(value)
    kwargs["failures"] = dict(kwargs.get("failures") or {})
    return SyncRun(**kwargs)
