"""The source holding an account, recorded in its document (issue 15): both stores, documents written
before it (no `source`) still load, only existing documents get it, bad input is refused before writing,
and it never shows in an account record (the API's allow-list)."""

from __future__ import annotations

import pytest

from agent.domain.accounts import RECORD_FIELDS
from agent.store.base import Store

from .conftest import Backend
from .factories import provisioned, update


async def test_sources_round_trip_on_existing_documents_only(store: Store, backend: Backend) -> None:
    await store.write_cycle([update(1001, 1.0), update(1002, 2.0)], [])
    assert await store.accounts.get_sources() == {}  # an old document has none, and still loads
    await store.accounts.set_sources({1001: "vps-a", 1002: "vps-b", 1003: "vps-b"})
    assert await store.accounts.get_sources() == {1001: "vps-a", 1002: "vps-b"}
    assert backend.raw_account(1003) is None  # no document is created for a source alone
    raw = backend.raw_account(1001)
    assert raw is not None and raw["source"] == "vps-a"
    records = await store.accounts.get_accounts()
    assert [r.account for r in records] == [1001, 1002] and "source" not in RECORD_FIELDS
    await store.accounts.set_sources({1001: "vps-b"})  # another source holds it now
    await store.write_cycle([update(1001, 3.0)], [])  # a sync's $set leaves it alone
    assert (await store.accounts.get_sources())[1001] == "vps-b"


async def test_a_provisioned_document_keeps_its_fields(store: Store, backend: Backend) -> None:
    doc = provisioned(891215, "client_a")
    await store.accounts.put_account_documents([doc])
    await store.accounts.set_sources({891215: "bridge"})
    raw = backend.raw_account(891215)
    assert raw is not None and {k: raw[k] for k in doc} == doc and raw["source"] == "bridge"


async def test_garbage_is_refused_or_read_as_none(store: Store) -> None:
    await store.write_cycle([update(1001, 1.0)], [])
    for bad in ({1001: "Not A Name"}, {1001: ""}, {0: "vps-a"}, {1001: 5}):
        with pytest.raises(ValueError):
            await store.accounts.set_sources(bad)  # type: ignore[arg-type]
    await store.accounts.put_account_documents([{"account": 1002, "source": "BAD name!"}])
    await store.accounts.put_account_documents([{"account": 1004, "source": 7}])
    assert await store.accounts.get_sources() == {}
