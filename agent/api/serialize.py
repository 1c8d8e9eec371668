"""The one place records become JSON: an explicit allow-list, never a dumped document.

The allow-list is `agent.api.schema.Account`: exactly its fields are copied, in its order, each through
a converter chosen once from the field's declared type. Credentials and private fields (password,
client_id, fund_type, broker, target_amount, ...) cannot leave through here because nothing is copied
that the model does not name. Freshness is computed at request time from `live_data_at` and the
configured thresholds, by the domain's one function.
"""

from __future__ import annotations

import logging
import math
import types
import typing
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from agent.api import schema
from agent.domain.accounts import AccountRecord
from agent.domain.freshness import STATES, State, Thresholds, age_seconds
from agent.domain.runs import SyncRun

log = logging.getLogger("mt5_agent.api")

# The public account fields, in response order: the model's (DESIGN.md sections 5 and 8).
ACCOUNT_FIELDS: tuple[str, ...] = schema.ACCOUNT_FIELDS


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 UTC with `Z`, millisecond precision (what both stores keep)."""
    if dt is None:
        return None
    if dt.tzinfo is not UTC:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: Any) -> float | int | None:
    # bool is an int in Python; NaN/inf are not JSON. Either in a store is a bad value: shown as missing.
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _integer(value: Any) -> int | None:
    num = _number(value)
    if isinstance(num, float):
        return int(num) if num.is_integer() else None
    return num


def _typed(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) else None


def freshness(live_data_at: datetime | None, now: datetime, thresholds: Thresholds) -> dict[str, Any]:
    age = age_seconds(live_data_at, now)
    return {
        "state": thresholds.classify(age).value,
        "age_seconds": round(age, 3) if age is not None else None,
    }


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _instant(value: Any) -> str | None:
    return iso(value if isinstance(value, datetime) else None)


def _member_of(enum: type[StrEnum]) -> Callable[[Any], str | None]:
    """Only a value of the closed set passes (anything else in a store is malformed: null)."""
    values = frozenset(e.value for e in enum)
    return lambda v: v if isinstance(v, str) and v in values else None


def _converter(field: str) -> Callable[[Any], Any]:
    """The converter for a field, from its declared type (`X | None`)."""
    declared = schema.Account.model_fields[field].annotation
    kinds = [k for k in typing.get_args(declared) if k is not types.NoneType] or [declared]
    (kind,) = kinds
    if kind is float:
        return _number
    if kind is bool:
        return _boolean
    if kind is int:
        return _integer
    if kind is datetime:
        return _instant
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _member_of(kind)
    if kind is str:
        return _string
    raise TypeError(f"no converter for Account.{field}: {declared}")


# Field -> converter, decided once: this runs for every account of every response. The first field is
# the account number (always an int) and the last the computed freshness.
_CONVERTERS: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(
    (f, _converter(f)) for f in ACCOUNT_FIELDS[1:-1]
)
assert ACCOUNT_FIELDS[0] == "account" and ACCOUNT_FIELDS[-1] == "freshness"


def account_fields(record: AccountRecord) -> dict[str, Any]:
    """An account's allow-listed fields, all but the freshness (which moves with time): values that are
    absent or malformed are null, never 0."""
    out: dict[str, Any] = {"account": record.account}
    for f, convert in _CONVERTERS:
        out[f] = convert(getattr(record, f))
    return out


def account_json(record: AccountRecord, now: datetime, thresholds: Thresholds) -> dict[str, Any]:
    """An account as every endpoint shows it: its allow-listed fields, then its freshness now."""
    out = account_fields(record)
    out["freshness"] = freshness(_typed(record.live_data_at, datetime), now, thresholds)
    return out


def live_time(record: AccountRecord) -> datetime | None:
    """The time the freshness is computed from (a malformed one counts as never synced)."""
    return _typed(record.live_data_at, datetime)


def accounts_json(
    records: Iterable[AccountRecord], now: datetime, thresholds: Thresholds
) -> list[dict[str, Any]]:
    return [account_json(r, now, thresholds) for r in records]


def thresholds_json(thresholds: Thresholds) -> dict[str, float]:
    return {
        "acceptable_after": thresholds.acceptable_after,
        "degraded_after": thresholds.degraded_after,
        "critical_after": thresholds.critical_after,
    }


def state_counts(accounts: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = {s.value: 0 for s in STATES}
    for a in accounts:
        counts[a["freshness"]["state"]] += 1
    return counts


def worst_state(accounts: Iterable[dict[str, Any]]) -> State | None:
    states = [State(a["freshness"]["state"]) for a in accounts]
    return max(states, key=STATES.index) if states else None


def run_json(run: SyncRun) -> dict[str, Any]:
    """A sync run record; `summary` is the same line the agent logs."""
    return {
        "run_id": run.run_id,
        "trigger": run.trigger,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_seconds": round(run.duration_seconds, 6) if run.duration_seconds is not None else None,
        "result": run.result.value if run.result is not None else None,
        "accounts_total": run.accounts_total,
        "synced_live": run.synced_live,
        "synced_stored": run.synced_stored,
        "failed": run.failed,
        "failures": {str(k): str(v) for k, v in run.failures.items()},
        "error": run.error,
        "source": run.source,
        "fetch_mode": run.fetch_mode,
        "bridge_batch": run.bridge_batch,
        "summary": run.summary_line(),
    }


def portfolio_totals(accounts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Per-currency sums of the stored balance, equity and profit; nothing recalculated.

    An account is summed only when it has a currency and all three values: a partial sum would
    look like a real total. The others are returned so the caller can list and count them.
    """
    sums: dict[str, dict[str, Any]] = {}
    not_summed: list[int] = []
    for a in accounts:
        values = [a["balance"], a["equity"], a["profit"]]
        if a["currency"] is None or any(v is None for v in values):
            not_summed.append(a["account"])
            continue
        t = sums.setdefault(
            a["currency"],
            {"accounts": 0, "balance": Decimal(0), "equity": Decimal(0), "profit": Decimal(0)},
        )
        t["accounts"] += 1
        for f, v in zip(("balance", "equity", "profit"), values, strict=True):
            t[f] += Decimal(repr(v))  # decimal sums: 0.1 + 0.2 is 0.3, as the terminal shows it
    totals = [
        {
            "currency": cur,
            "accounts": t["accounts"],
            "balance": float(t["balance"]),
            "equity": float(t["equity"]),
            "profit": float(t["profit"]),
        }
        for cur, t in sorted(sums.items())
    ]
    return totals, not_summed


def humanize_age(age: float | None) -> str:
    """The seed's `oldest_update` text, e.g. "2 minutes ago"."""
    if age is None:
        return "never"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if age >= size:
            n = int(age // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    n = int(age)
    return f"{n} second{'s' if n != 1 else ''} ago"
