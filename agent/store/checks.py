"""What a store accepts: account numbers, client ids and values both backends hold exactly. Checked before
anything is written, so SQLite and MongoDB refuse the same input the same way."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from agent.domain.accounts import VALUE_FIELDS, AccountSyncState, AccountUpdate
from agent.store.errors import StoreRejected

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what both stores hold exactly (BSON int64, SQLite INTEGER)
ACCOUNT_MAX = INT64_MAX
CLIENT_ID_MAX_LENGTH = 128
# Printable ASCII without '/': the client paths (/api/client/{client_id}/...) cannot carry a '/', and a
# client id shows up in logs and URLs, where control or look-alike characters only cause trouble.
CLIENT_ID_PATTERN = "^[ -.0-~]+$"
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


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
