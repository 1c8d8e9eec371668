"""The accounts contract (`store.accounts`, DESIGN.md section 5): what a sync writes into `mt5_accounts`,
what provisioning and client assignment do, and that reads carry allow-listed fields only."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.accounts import (
    RECORD_FIELDS,
    SYNCED_FIELDS,
    AccountRecord,
    AccountUpdate,
    AccountValues,
    DataSource,
)
from agent.store.base import Store

from ..conftest import Backend
from ..factories import PASSWORD, T0, ms, provisioned, update
from .expect import MINUTE, expected_synced, synced_of


async def test_write_cycle_stores_the_update_values(store: Store) -> None:
    ups = [
        update(1002, 200.25, leverage=500, currency="EUR", trade_allowed=False, margin_level=1234.5),
        update(1001, 100.5, name="Interest Earnings", server="MEXAtlantic-Real"),
    ]
    await store.write_cycle(ups, [])

    records = await store.accounts.get_accounts()
    assert [r.account for r in records] == [1001, 1002]  # ordered by account number
    by_account = {r.account: r for r in records}
    for u in ups:
        assert synced_of(by_account[u.account]) == expected_synced(u)
    assert (by_account[1001].name, by_account[1001].server) == ("Interest Earnings", "MEXAtlantic-Real")
    assert by_account[1002].name is None
    r = by_account[1002]
    assert type(r.leverage) is int and type(r.trade_allowed) is bool and type(r.balance) is float
    assert r.updated_at is not None and r.updated_at.utcoffset() == timedelta(0)
    assert synced_of(await store.accounts.get_account(1002)) == expected_synced(ups[0])


async def test_sync_never_touches_non_sync_fields(store: Store, backend: Backend) -> None:
    doc = provisioned(891215, "client_alejandro", investor_password=PASSWORD)
    await store.accounts.put_account_documents([doc])
    u = update(891215, 27047.52, at=T0 + MINUTE, name="Renamed by the bridge", server="Other-Server")
    await store.write_cycle([u], [])

    raw = backend.raw_account(891215)
    assert raw is not None
    for key, value in doc.items():
        assert raw[key] == value, key
    assert set(raw) == set(doc) | set(SYNCED_FIELDS)  # the sync added its fields and nothing else
    record = await store.accounts.get_account(891215)
    assert synced_of(record) == expected_synced(u)
    assert record is not None and record.client_id == "client_alejandro"


async def test_insert_only_fields_are_written_on_creation_only(store: Store) -> None:
    await store.write_cycle([update(7, 1.0, name="First name", server="Server-A")], [])
    await store.write_cycle([update(7, 2.0, at=T0 + MINUTE, name="Second name", server="Server-B")], [])
    await store.write_cycle([update(7, 3.0, at=T0 + 2 * MINUTE)], [])

    record = await store.accounts.get_account(7)
    assert record is not None
    assert (record.name, record.server, record.balance) == ("First name", "Server-A", 3.0)


async def test_stored_fallback_does_not_move_live_data_at(store: Store) -> None:
    live = update(5, 100.0, at=T0)
    await store.write_cycle([live], [])
    fallback = update(5, 90.0, at=T0 + 5 * MINUTE, source=DataSource.STORED)
    await store.write_cycle([fallback], [])

    record = await store.accounts.get_account(5)
    assert live.live_data_at is not None
    assert synced_of(record) == expected_synced(fallback, live_data_at=ms(live.live_data_at))
    assert record is not None and record.data_source == "VPS_STORED"

    await store.write_cycle([update(6, source=DataSource.STORED)], [])
    new = await store.accounts.get_account(6)
    assert new is not None and new.live_data_at is None and new.balance == 27047.52


async def test_records_never_carry_credentials(store: Store) -> None:
    docs = [
        provisioned(1, "c1", api_key=PASSWORD, investor_password=PASSWORD),
        provisioned(2, "c2", credentials={"password": PASSWORD}),
    ]
    await store.accounts.put_account_documents(docs)
    await store.write_cycle([update(1), update(2), update(3, name="unprovisioned")], [])

    records = [
        *await store.accounts.get_accounts(),
        *await store.accounts.get_accounts(client_id="c1"),
        await store.accounts.get_account(2),
    ]
    assert len(records) == 5
    for record in records:
        assert record is not None
        assert set(vars(record)) == set(RECORD_FIELDS)
        assert all(value != PASSWORD and not isinstance(value, dict) for value in vars(record).values())
        assert PASSWORD not in repr(record) and "password" not in repr(record)


async def test_get_accounts_filters_by_client(store: Store) -> None:
    await store.accounts.put_account_documents(
        [
            provisioned(3, "c1"),
            provisioned(1, "c1"),
            provisioned(2, "c2"),
            {"account": 4, "name": "no client"},
        ]
    )
    await store.write_cycle([update(n) for n in (1, 2, 3, 4)], [])  # a sync keeps client_id

    assert [r.account for r in await store.accounts.get_accounts(client_id="c1")] == [1, 3]
    assert [r.account for r in await store.accounts.get_accounts(client_id="c2")] == [2]
    assert await store.accounts.get_accounts(client_id="nobody") == []
    assert [r.account for r in await store.accounts.get_accounts()] == [1, 2, 3, 4]
    assert {r.client_id for r in await store.accounts.get_accounts()} == {"c1", "c2", None}


async def test_get_account_of_an_unknown_account_is_none(store: Store) -> None:
    await store.write_cycle([update(1)], [])
    assert await store.accounts.get_account(2) is None


async def test_datetimes_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    at = datetime(2025, 1, 1, 12, 0, 0, 654321, tzinfo=timezone(timedelta(hours=3)))
    await store.write_cycle([update(1, at=at)], [])

    record = await store.accounts.get_account(1)
    assert record is not None and record.updated_at is not None
    assert record.updated_at == ms(at)
    assert record.updated_at.tzinfo is not None and record.updated_at.utcoffset() == timedelta(0)
    assert (record.updated_at.hour, record.updated_at.microsecond) == (9, 654000)


async def test_provisioning_inserts_or_replaces_whole_documents(store: Store, backend: Backend) -> None:
    await store.accounts.put_account_documents([])
    await store.accounts.put_account_documents([provisioned(1, "c1", legacy_field=1)])
    await store.write_cycle([update(1)], [])
    await store.accounts.put_account_documents([provisioned(1, "c9", target_amount=10.0)])

    raw = backend.raw_account(1)
    assert raw is not None
    assert "legacy_field" not in raw and "balance" not in raw
    assert (raw["client_id"], raw["target_amount"], raw["password"]) == ("c9", 10.0, PASSWORD)
    assert [r.account for r in await store.accounts.get_accounts(client_id="c9")] == [1]
    with pytest.raises(ValueError, match="account"):
        await store.accounts.put_account_documents([{"name": "no account number"}])


# -- set_client: assigning accounts to clients (issue 10 finding 8) ---------------------------------


async def test_set_client_assigns_a_synced_account_touching_nothing_else(
    store: Store, backend: Backend
) -> None:
    await store.accounts.put_account_documents([provisioned(891215, "old_client")])
    u = update(891215, 27047.52)
    await store.write_cycle([u], [])
    before = backend.raw_account(891215)
    assert before is not None

    await store.accounts.set_client(891215, "client_alejandro")

    assert backend.raw_account(891215) == {**before, "client_id": "client_alejandro"}
    assert [r.account for r in await store.accounts.get_accounts(client_id="client_alejandro")] == [891215]
    assert await store.accounts.get_accounts(client_id="old_client") == []
    assert synced_of(await store.accounts.get_account(891215)) == expected_synced(u)


async def test_set_client_creates_a_never_synced_account_with_only_its_client(
    store: Store, backend: Backend
) -> None:
    await store.accounts.set_client(886557, "client_a")

    assert backend.raw_account(886557) == {"account": 886557, "client_id": "client_a"}
    record = await store.accounts.get_account(886557)
    assert record == AccountRecord(account=886557, client_id="client_a")  # every value None, none invented
    assert [r.account for r in await store.accounts.get_accounts(client_id="client_a")] == [886557]

    # The first sync then adds its fields and keeps the assignment.
    u = update(886557, 80000.0, name="Main Balance Account")
    await store.write_cycle([u], [])
    record = await store.accounts.get_account(886557)
    assert record is not None and record.client_id == "client_a"
    assert synced_of(record) == expected_synced(u)


async def test_set_client_none_unassigns_and_never_creates(store: Store, backend: Backend) -> None:
    await store.accounts.put_account_documents([provisioned(5, "client_a")])
    before = backend.raw_account(5)
    assert before is not None

    await store.accounts.set_client(5, None)
    await store.accounts.set_client(6, None)  # no document: nothing to unassign, nothing created

    assert backend.raw_account(5) == {k: v for k, v in before.items() if k != "client_id"}
    assert backend.raw_account(6) is None
    assert await store.accounts.get_accounts(client_id="client_a") == []
    assert [r.account for r in await store.accounts.get_accounts()] == [5]
    await store.accounts.set_client(5, "client_b")  # and reassigns
    assert [r.account for r in await store.accounts.get_accounts(client_id="client_b")] == [5]


@pytest.mark.parametrize(
    ("account", "client_id"),
    [
        (0, "c"),
        (-1, "c"),
        (2**63, "c"),
        (True, "c"),
        ("7", "c"),
        (7, ""),
        (7, "x" * 129),
        (7, "a/b"),
        (7, "trailing newline\n"),
        (7, "tab\there"),
        (7, "caf\u00e9"),
        (7, "\ud800"),
        (7, 42),
    ],
)
async def test_set_client_refuses_bad_input_and_writes_nothing(
    store: Store, backend: Backend, account: Any, client_id: Any
) -> None:
    with pytest.raises(ValueError, match=r"account|client_id"):
        await store.accounts.set_client(account, client_id)
    assert await store.accounts.get_accounts() == []


# -- property: any sequence of updates leaves the last value per account ---------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
account_values = st.builds(
    AccountValues,
    balance=finite,
    equity=finite,
    profit=finite,
    margin=finite,
    margin_free=finite,
    margin_level=finite,
    leverage=st.integers(0, 2**31 - 1),
    currency=st.text(max_size=6),
    trade_allowed=st.booleans(),
)
# Each cycle: (account index, values, live?, name) entries; accounts repeat within and across cycles.
cycles_strategy = st.lists(
    st.lists(
        st.tuples(st.integers(0, 3), account_values, st.booleans(), st.sampled_from([None, "A", "B"])),
        max_size=5,
    ),
    min_size=1,
    max_size=4,
)
_example_ids = itertools.count(1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cycles=cycles_strategy)
async def test_any_sequence_of_updates_leaves_the_last_value_per_account(
    store: Store, cycles: list[list[tuple[int, AccountValues, bool, str | None]]]
) -> None:
    base = next(_example_ids) * 100  # the store outlives one example: each example gets its own accounts
    model: dict[int, dict[str, Any]] = {}
    for i, cycle in enumerate(cycles):
        at = T0 + i * MINUTE
        ups = [
            AccountUpdate(
                account=base + k,
                values=vals,
                data_source=DataSource.LIVE if live else DataSource.STORED,
                synced_at=at,
                live_data_at=at - timedelta(seconds=k) if live else None,
                name=name,
            )
            for k, vals, live, name in cycle
        ]
        await store.write_cycle(ups, [])
        for u in {u.account: u for u in ups}.values():  # within a cycle the last update wins
            previous = model.get(u.account)
            kept_live = previous["synced"]["live_data_at"] if previous else None
            name = previous["name"] if previous else u.name
            model[u.account] = {"synced": expected_synced(u, live_data_at=kept_live), "name": name}

    got = [r for r in await store.accounts.get_accounts() if base <= r.account < base + 100]
    assert [r.account for r in got] == sorted(model)
    for record in got:
        assert synced_of(record) == model[record.account]["synced"]
        assert record.name == model[record.account]["name"]
