"""The account's fields are defined once (`AccountDocument`): the store's synced and insert-only fields,
the fast dataclasses, the API's allow-list and its OpenAPI schema all follow it."""

from __future__ import annotations

import dataclasses

from agent.api.schema import Account
from agent.api.serialize import ACCOUNT_FIELDS
from agent.domain.accounts import (
    INSERT_ONLY_FIELDS,
    RECORD_FIELDS,
    SYNC_META_FIELDS,
    SYNCED_FIELDS,
    VALUE_FIELDS,
    AccountDocument,
    AccountValues,
)
from agent.domain.runs import SyncRun, Trigger

DOCUMENT = tuple(AccountDocument.model_fields)


def test_store_fields_derive_from_the_document() -> None:
    assert set(VALUE_FIELDS) | set(SYNC_META_FIELDS) | set(INSERT_ONLY_FIELDS) == set(DOCUMENT) - {"account"}
    assert SYNCED_FIELDS == VALUE_FIELDS + SYNC_META_FIELDS
    assert not set(VALUE_FIELDS) & set(SYNC_META_FIELDS)
    assert INSERT_ONLY_FIELDS == ("name", "server")


def test_the_fast_containers_hold_exactly_the_documents_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(AccountValues)) == VALUE_FIELDS
    # A record is the document plus the one private field used for access checks, never shown.
    assert set(RECORD_FIELDS) == set(DOCUMENT) | {"client_id"}


def test_the_api_allow_list_is_the_document_plus_freshness() -> None:
    assert tuple(Account.model_fields) == (*DOCUMENT, "freshness")
    assert tuple(ACCOUNT_FIELDS) == tuple(Account.model_fields)
    schema = Account.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "client_id" not in schema["properties"]


def test_every_trigger_the_agent_passes_is_in_the_closed_set() -> None:
    assert {t.value for t in Trigger} == {"schedule", "manual", "cli", "bench"}
    assert SyncRun("r", started_at=None).trigger in set(Trigger)  # type: ignore[arg-type]
