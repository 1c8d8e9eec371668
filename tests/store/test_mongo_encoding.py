"""The MongoDB store builds each cycle's update and sync-state documents field by field (they run for every
account of every cycle): the result must be the generic documents exactly, key order included, so a field
the domain adds later fails here instead of going unwritten."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pymongo import ReplaceOne, UpdateOne

from agent.domain.accounts import AccountSyncState, AccountUpdate, AccountValues, DataSource, Reason
from agent.store.codec import STATE_FIELDS, state_to_doc
from agent.store.mongo.accounts import update_op
from agent.store.mongo.sync_state import state_op

from .factories import T0, update


def _reference_update(u: AccountUpdate) -> UpdateOne:
    change: dict[str, object] = {"$set": u.set_fields()}
    if insert := u.insert_fields():
        change["$setOnInsert"] = insert
    return UpdateOne({"account": u.account}, change, upsert=True)


@pytest.mark.parametrize(
    "u",
    [
        update(886557),
        update(886557, name="Main", server="MEXAtlantic-Real"),
        update(886066, source=DataSource.STORED, name="Only name"),
        update(886067, server="Only server"),
        update(1, leverage=2**63 - 1, currency="EUR", trade_allowed=False, margin_level=None),
        AccountUpdate(
            account=7,
            values=AccountValues(balance=1.5),
            data_source=DataSource.LIVE,
            synced_at=datetime(2026, 1, 1, 1, 2, 3, 456789),  # naive: stored as UTC
            live_data_at=T0 + timedelta(microseconds=999),
            server="S",
        ),
    ],
)
def test_update_op_is_the_generic_update(u: AccountUpdate) -> None:
    op, ref = update_op(u), _reference_update(u)
    assert op == ref  # filter, update document and upsert
    assert list(op._doc) == list(ref._doc)
    for part in ref._doc:
        assert list(op._doc[part]) == list(ref._doc[part]), part


@pytest.mark.parametrize(
    "state",
    [
        AccountSyncState(5),
        AccountSyncState(6, 3, Reason.TIMEOUT, T0, T0 + timedelta(seconds=5), T0 - timedelta(hours=1)),
        AccountSyncState(7, 0, None, None, T0, None),
    ],
)
def test_state_op_is_the_generic_state_document(state: AccountSyncState) -> None:
    op = state_op(state)
    assert op == ReplaceOne({"account": state.account}, state_to_doc(state), upsert=True)
    assert list(op._doc) == list(state_to_doc(state)) == list(STATE_FIELDS)
