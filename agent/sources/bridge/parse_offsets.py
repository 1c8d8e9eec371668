"""Each account's broker UTC offset, from the bridge's authenticated health document (issue 14).

MT5 bakes the broker server's offset into every time it reports; the bridge converts deal and position
times to UTC (`Z`) with its terminal's configured `utc_offset_hours`, so the agent cannot see the offset
in them. The health document lists it per terminal (`terminals.items[]`: `accounts`, `utc_offset_hours`),
which is what broker days (the analytics' `daily`) need. Validated like any value from a source: an
offset outside [-14 h, +14 h], not a number, or an account listed by two terminals with different offsets
is left out (unknown), never guessed.
"""

from __future__ import annotations

import math
from typing import Any

MAX_TERMINALS = 1000
MAX_ACCOUNTS_PER_TERMINAL = 100_000
OFFSET_MAX_MINUTES = 14 * 60


def terminal_offsets(terminals: Any) -> dict[int, int] | None:
    """account -> its terminal's UTC offset in whole minutes; None when `terminals` is not a terminals
    object (an unauthenticated health document has none: what was learned before is kept)."""
    if type(terminals) is not dict or type(terminals.get("items")) is not list:
        return None
    out: dict[int, int] = {}
    clashing: set[int] = set()
    for item in terminals["items"][:MAX_TERMINALS]:
        if type(item) is not dict:
            continue
        hours, accounts = item.get("utc_offset_hours"), item.get("accounts")
        if not isinstance(hours, int | float) or isinstance(hours, bool) or type(accounts) is not list:
            continue
        if not math.isfinite(hours):
            continue
        minutes = round(hours * 60)
        if abs(minutes) > OFFSET_MAX_MINUTES:
            continue
        for account in accounts[:MAX_ACCOUNTS_PER_TERMINAL]:
            if type(account) is not int or account <= 0:
                continue
            if out.get(account, minutes) != minutes:
                clashing.add(account)
            out[account] = minutes
    for account in clashing:
        del out[account]
    return out
