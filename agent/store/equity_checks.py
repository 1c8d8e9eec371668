"""What a store accepts of equity points: an account within 64 bits, a finite equity, a finite balance or
none, an aware or naive datetime. Checked before anything is written, so SQLite and MongoDB refuse the same
input the same way (StoreRejected naming the accounts, nothing written)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from agent.domain.equity import EquityPoint
from agent.store.checks import INT64_MAX, INT64_MIN
from agent.store.errors import StoreRejected


def equity_problem(p: EquityPoint) -> str | None:
    if type(p.account) is not int or not INT64_MIN <= p.account <= INT64_MAX:
        return "account does not fit in 64 bits"
    if not isinstance(p.time, datetime):
        return "time is not a datetime"
    if type(p.equity) not in (int, float) or not math.isfinite(p.equity):
        return "equity is not a finite number"
    if p.balance is not None and (type(p.balance) not in (int, float) or not math.isfinite(p.balance)):
        return "balance is not a finite number"
    return None


def check_equity_points(points: Iterable[EquityPoint]) -> None:
    bad: dict[object, str] = {}
    for p in points:
        if p.account not in bad and (why := equity_problem(p)) is not None:
            bad[p.account] = why
    if bad:
        shown = "; ".join(f"account {str(a)[:24]}: {why}" for a, why in list(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        accounts = [a for a in bad if isinstance(a, int)]
        message = f"equity of {len(bad)} account(s) refused, nothing written: {shown}{more}"
        raise StoreRejected(message, accounts)
