"""What the contract expects a store to give back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agent.domain.accounts import SYNCED_FIELDS, VALUE_FIELDS, AccountRecord, AccountSyncState, AccountUpdate

from ..factories import ms

MINUTE = timedelta(minutes=1)


def expected_synced(u: AccountUpdate, live_data_at: datetime | None = None) -> dict[str, Any]:
    """The synced fields a record must show after `u` (live_data_at: the one kept from earlier)."""
    exp: dict[str, Any] = {f: getattr(u.values, f) for f in VALUE_FIELDS}
    exp.update(
        updated_at=ms(u.synced_at),
        synced_from_vps=True,
        vps_sync_timestamp=ms(u.synced_at),
        data_source=u.data_source.value,
        live_data_at=ms(u.live_data_at) if u.live_data_at is not None else live_data_at,
    )
    return exp


def synced_of(record: AccountRecord | None) -> dict[str, Any]:
    assert record is not None
    return {f: getattr(record, f) for f in SYNCED_FIELDS}


def ms_state(s: AccountSyncState) -> AccountSyncState:
    def norm(dt: datetime | None) -> datetime | None:
        return ms(dt) if dt is not None else None

    return AccountSyncState(
        s.account,
        s.consecutive_failures,
        s.last_reason,
        norm(s.last_failure_at),
        norm(s.last_attempt_at),
        norm(s.last_live_at),
    )
