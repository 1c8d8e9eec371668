"""Dedup keys: built from the terminal's own identities only, so detecting the same change again (restart,
retry, overlapping poll, duplicated delivery) yields the same key and the store keeps it once."""

from __future__ import annotations

from datetime import datetime


def opened_key(account: int, identifier: int) -> str:
    return f"{account}:{identifier}:opened"


def closed_key(account: int, identifier: int) -> str:
    return f"{account}:{identifier}:closed"


def deal_key(account: int, ticket: int) -> str:
    """volume_added, partial_close and reversal: one deal is one change (deal tickets are unique per
    account and never reused)."""
    return f"{account}:deal:{ticket}"


def sltp_key(account: int, identifier: int, time_update: datetime, sl: float, tp: float) -> str:
    """A modification: the position's `time_update` (the terminal bumps it on every change) tells apart
    values that recur (sl 1.1 -> 1.2 -> 1.1 gives two keys); the values guard a source that does not
    bump it (then only an exact A -> B -> A -> B within one `time_update` would collide)."""
    return f"{account}:{identifier}:sltp:{time_update.isoformat()}:{sl!r}:{tp!r}"


def key_identifier(key: str) -> int | None:
    """The position identifier a non-deal key names (`None` for deal keys and foreign shapes)."""
    parts = key.split(":")
    if len(parts) < 3 or parts[1] == "deal":
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


def key_deal_ticket(key: str) -> int | None:
    parts = key.split(":")
    if len(parts) != 3 or parts[1] != "deal":
        return None
    try:
        return int(parts[2])
    except ValueError:
        return None
