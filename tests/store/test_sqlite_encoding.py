"""The SQLite store builds each cycle's account documents without the generic dicts (it runs for every
account of every cycle): the result must be the generic document exactly, key order included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.domain.accounts import AccountUpdate, AccountValues, DataSource
from agent.store.base import StoreError
from agent.store.codec import iso_ms
from agent.store.sqlite.accounts import account_doc as _account_doc
from agent.store.sqlite.encoding import IsoMemo as _IsoMemo

from .factories import T0, update


def _reference(u: AccountUpdate) -> dict[str, Any]:
    doc = {"account": u.account, **u.insert_fields(), **u.set_fields()}
    return {k: iso_ms(v) if isinstance(v, datetime) else v for k, v in doc.items()}


@pytest.mark.parametrize(
    "u",
    [
        update(886557),
        update(886557, name="Main", server="MEXAtlantic-Real"),
        update(886066, source=DataSource.STORED, name="Only name"),
        update(1, leverage=2**63 - 1, currency="EUR", trade_allowed=False, margin_level=None),
        AccountUpdate(
            account=7,
            values=AccountValues(balance=1.5),
            data_source=DataSource.LIVE,
            synced_at=datetime(2026, 1, 1, 1, 2, 3, 456789),  # naive: UTC
            live_data_at=T0 + timedelta(microseconds=999),
            server="S",
        ),
    ],
)
def test_account_doc_is_the_generic_document(u: AccountUpdate) -> None:
    doc = _account_doc(u, _IsoMemo())
    assert doc == _reference(u)
    assert list(doc) == list(_reference(u))


@pytest.mark.parametrize("field", ["account", "leverage"])
def test_integers_past_64_bits_are_refused(field: str) -> None:
    u = update(886557, **({"leverage": 2**63} if field == "leverage" else {}))
    if field == "account":
        u = AccountUpdate(2**64, u.values, u.data_source, u.synced_at, u.live_data_at)
    with pytest.raises(StoreError, match=f"{field} does not fit in 64 bits"):
        _account_doc(u, _IsoMemo())


def test_iso_text_is_utc_milliseconds() -> None:
    u = update(3, at=datetime(2026, 11, 22, 14, 0, 0, 123999, tzinfo=UTC))
    assert _account_doc(u, _IsoMemo())["updated_at"] == "2026-11-22T14:00:00.123+00:00"
