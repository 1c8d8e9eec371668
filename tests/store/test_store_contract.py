"""The one contract both stores pass (DESIGN.md section 5): run against SQLite and a real MongoDB server."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.accounts import (
    RECORD_FIELDS,
    SYNCED_FIELDS,
    VALUE_FIELDS,
    AccountRecord,
    AccountSyncState,
    AccountUpdate,
    AccountValues,
    DataSource,
    Reason,
)
from agent.domain.runs import RunResult, SyncRun
from agent.store.base import Store, StoreError, StoreRejected

from .conftest import Backend
from .factories import PASSWORD, T0, ms, provisioned, update

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


async def test_satisfies_the_store_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    await store.ping()


async def test_write_cycle_stores_the_update_values(store: Store) -> None:
    ups = [
        update(1002, 200.25, leverage=500, currency="EUR", trade_allowed=False, margin_level=1234.5),
        update(1001, 100.5, name="Interest Earnings", server="MEXAtlantic-Real"),
    ]
    await store.write_cycle(ups, [])

    records = await store.get_accounts()
    assert [r.account for r in records] == [1001, 1002]  # ordered by account number
    by_account = {r.account: r for r in records}
    for u in ups:
        assert synced_of(by_account[u.account]) == expected_synced(u)
    assert (by_account[1001].name, by_account[1001].server) == ("Interest Earnings", "MEXAtlantic-Real")
    assert by_account[1002].name is None
    r = by_account[1002]
    assert type(r.leverage) is int and type(r.trade_allowed) is bool and type(r.balance) is float
    assert r.updated_at is not None and r.updated_at.utcoffset() == timedelta(0)
    assert synced_of(await store.get_account(1002)) == expected_synced(ups[0])


async def test_sync_never_touches_non_sync_fields(store: Store, backend: Backend) -> None:
    doc = provisioned(891215, "client_alejandro", investor_password=PASSWORD)
    await store.put_account_documents([doc])
    u = update(891215, 27047.52, at=T0 + MINUTE, name="Renamed by the bridge", server="Other-Server")
    await store.write_cycle([u], [])

    raw = backend.raw_account(891215)
    assert raw is not None
    for key, value in doc.items():
        assert raw[key] == value, key
    assert set(raw) == set(doc) | set(SYNCED_FIELDS)  # the sync added its fields and nothing else
    record = await store.get_account(891215)
    assert synced_of(record) == expected_synced(u)
    assert record is not None and record.client_id == "client_alejandro"


async def test_insert_only_fields_are_written_on_creation_only(store: Store) -> None:
    await store.write_cycle([update(7, 1.0, name="First name", server="Server-A")], [])
    await store.write_cycle([update(7, 2.0, at=T0 + MINUTE, name="Second name", server="Server-B")], [])
    await store.write_cycle([update(7, 3.0, at=T0 + 2 * MINUTE)], [])

    record = await store.get_account(7)
    assert record is not None
    assert (record.name, record.server, record.balance) == ("First name", "Server-A", 3.0)


async def test_stored_fallback_does_not_move_live_data_at(store: Store) -> None:
    live = update(5, 100.0, at=T0)
    await store.write_cycle([live], [])
    fallback = update(5, 90.0, at=T0 + 5 * MINUTE, source=DataSource.STORED)
    await store.write_cycle([fallback], [])

    record = await store.get_account(5)
    assert live.live_data_at is not None
    assert synced_of(record) == expected_synced(fallback, live_data_at=ms(live.live_data_at))
    assert record is not None and record.data_source == "VPS_STORED"

    await store.write_cycle([update(6, source=DataSource.STORED)], [])
    new = await store.get_account(6)
    assert new is not None and new.live_data_at is None and new.balance == 27047.52


async def test_records_never_carry_credentials(store: Store) -> None:
    docs = [
        provisioned(1, "c1", api_key=PASSWORD, investor_password=PASSWORD),
        provisioned(2, "c2", credentials={"password": PASSWORD}),
    ]
    await store.put_account_documents(docs)
    await store.write_cycle([update(1), update(2), update(3, name="unprovisioned")], [])

    records = [
        *await store.get_accounts(),
        *await store.get_accounts(client_id="c1"),
        await store.get_account(2),
    ]
    assert len(records) == 5
    for record in records:
        assert record is not None
        assert set(vars(record)) == set(RECORD_FIELDS)
        assert all(value != PASSWORD and not isinstance(value, dict) for value in vars(record).values())
        assert PASSWORD not in repr(record) and "password" not in repr(record)


async def test_get_accounts_filters_by_client(store: Store) -> None:
    await store.put_account_documents(
        [
            provisioned(3, "c1"),
            provisioned(1, "c1"),
            provisioned(2, "c2"),
            {"account": 4, "name": "no client"},
        ]
    )
    await store.write_cycle([update(n) for n in (1, 2, 3, 4)], [])  # a sync keeps client_id

    assert [r.account for r in await store.get_accounts(client_id="c1")] == [1, 3]
    assert [r.account for r in await store.get_accounts(client_id="c2")] == [2]
    assert await store.get_accounts(client_id="nobody") == []
    assert [r.account for r in await store.get_accounts()] == [1, 2, 3, 4]
    assert {r.client_id for r in await store.get_accounts()} == {"c1", "c2", None}


async def test_get_account_of_an_unknown_account_is_none(store: Store) -> None:
    await store.write_cycle([update(1)], [])
    assert await store.get_account(2) is None


async def test_sync_states_round_trip_and_survive_a_restart(store: Store, backend: Backend) -> None:
    states = [
        AccountSyncState(1),
        AccountSyncState(
            2,
            consecutive_failures=3,
            last_reason=Reason.TIMEOUT,
            last_failure_at=T0.replace(microsecond=123456),
            last_attempt_at=T0 + MINUTE,
            last_live_at=T0 - 10 * MINUTE,
        ),
        AccountSyncState(3, consecutive_failures=1, last_reason=Reason.ACCOUNT_MISMATCH, last_failure_at=T0),
    ]
    await store.write_cycle([update(1)], states)
    expected = {s.account: ms_state(s) for s in states}
    assert await store.get_sync_states() == expected

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.get_sync_states() == expected
        assert synced_of(await reopened.get_account(1)) == expected_synced(update(1))
    finally:
        await reopened.close()


async def test_a_sync_state_is_replaced_whole(store: Store) -> None:
    failing = AccountSyncState(1, 4, Reason.CONNECTION, T0, T0, None)
    other = AccountSyncState(2, 1, Reason.NOT_FOUND, T0, T0, None)
    await store.write_cycle([], [failing, other])
    recovered = AccountSyncState(1, 0, None, None, T0 + MINUTE, T0 + MINUTE)
    await store.write_cycle([], [recovered])

    assert await store.get_sync_states() == {1: recovered, 2: other}


async def test_runs_are_listed_newest_first_with_paging(store: Store) -> None:
    runs = [SyncRun(f"run-{i}", started_at=T0 + i * MINUTE, result=RunResult.SUCCESS) for i in range(7)]
    for run in random.Random(4).sample(runs, len(runs)):
        await store.record_run(run)

    assert await store.count_runs() == 7

    async def ids(**kw: int) -> list[str]:
        return [r.run_id for r in await store.list_runs(**kw)]

    assert await ids() == [f"run-{i}" for i in range(6, -1, -1)]
    assert await ids(limit=3) == ["run-6", "run-5", "run-4"]
    assert await ids(limit=3, offset=3) == ["run-3", "run-2", "run-1"]
    assert await ids(limit=3, offset=6) == ["run-0"]
    assert await ids(offset=10) == []
    assert await ids(limit=0) == []


async def test_a_run_round_trips(store: Store) -> None:
    run = SyncRun(
        run_id="0b7c7c4e",
        started_at=T0.replace(microsecond=987654),
        trigger="manual",
        finished_at=T0 + timedelta(seconds=2, microseconds=345678),
        duration_seconds=2.358024,
        result=RunResult.PARTIAL,
        accounts_total=7,
        synced_live=5,
        synced_stored=1,
        failed=1,
        failures={"891215": Reason.TIMEOUT.value},
        error="1 account timed out",
        bridge_batch=True,
    )
    await store.record_run(run)

    [got] = await store.list_runs()
    assert run.finished_at is not None
    assert got == SyncRun(
        **{**vars(run), "started_at": ms(run.started_at), "finished_at": ms(run.finished_at)}
    )
    assert got.result is RunResult.PARTIAL


async def test_recording_a_run_again_replaces_it(store: Store) -> None:
    await store.record_run(SyncRun("r1", started_at=T0))
    await store.record_run(SyncRun("r1", started_at=T0, finished_at=T0 + MINUTE, result=RunResult.FAILED))

    assert await store.count_runs() == 1
    [got] = await store.list_runs()
    assert (got.result, got.finished_at) == (RunResult.FAILED, T0 + MINUTE)


async def test_an_empty_write_cycle_changes_nothing(store: Store) -> None:
    await store.write_cycle([], [])
    assert await store.get_accounts() == []
    assert await store.get_sync_states() == {}

    await store.write_cycle([update(1)], [AccountSyncState(1, 2)])
    before = (await store.get_accounts(), await store.get_sync_states())
    await store.write_cycle([], [])
    assert (await store.get_accounts(), await store.get_sync_states()) == before


async def test_the_last_update_for_an_account_in_a_cycle_wins(store: Store) -> None:
    await store.write_cycle(
        [update(1, 1.0), update(2, 5.0), update(1, 2.0)],
        [AccountSyncState(1, 1), AccountSyncState(1, 2)],
    )
    assert [(r.account, r.balance) for r in await store.get_accounts()] == [(1, 2.0), (2, 5.0)]
    assert (await store.get_sync_states())[1].consecutive_failures == 2


async def test_datetimes_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    at = datetime(2025, 1, 1, 12, 0, 0, 654321, tzinfo=timezone(timedelta(hours=3)))
    await store.write_cycle([update(1, at=at)], [])

    record = await store.get_account(1)
    assert record is not None and record.updated_at is not None
    assert record.updated_at == ms(at)
    assert record.updated_at.tzinfo is not None and record.updated_at.utcoffset() == timedelta(0)
    assert (record.updated_at.hour, record.updated_at.microsecond) == (9, 654000)


async def test_provisioning_inserts_or_replaces_whole_documents(store: Store, backend: Backend) -> None:
    await store.put_account_documents([])
    await store.put_account_documents([provisioned(1, "c1", legacy_field=1)])
    await store.write_cycle([update(1)], [])
    await store.put_account_documents([provisioned(1, "c9", target_amount=10.0)])

    raw = backend.raw_account(1)
    assert raw is not None
    assert "legacy_field" not in raw and "balance" not in raw
    assert (raw["client_id"], raw["target_amount"], raw["password"]) == ("c9", 10.0, PASSWORD)
    assert [r.account for r in await store.get_accounts(client_id="c9")] == [1]
    with pytest.raises(ValueError, match="account"):
        await store.put_account_documents([{"name": "no account number"}])


async def test_a_value_the_store_cannot_hold_is_refused(store: Store) -> None:
    await store.write_cycle([update(1, 1.0)], [])
    with pytest.raises(StoreError, match=r"64 bits|8-byte ints"):
        await store.write_cycle([update(1, 2.0), update(2, leverage=2**70)], [])
    assert [r.account for r in await store.get_accounts()] == [1]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (lambda: update(2**63, 5.0), "account does not fit in 64 bits"),
        (lambda: update(3, leverage=2**64), "leverage does not fit in 64 bits"),
        (lambda: update(3, float("nan")), "balance is not a finite number"),
        (lambda: update(3, margin_level=float("inf")), "margin_level is not a finite number"),
    ],
    ids=["account-2**63", "leverage-2**64", "nan-balance", "inf-margin-level"],
)
async def test_a_refused_value_is_store_rejected_naming_the_account(store: Store, bad: Any, why: str) -> None:
    """Issue 10 finding 2: a value the store cannot hold is the data's fault, not the store's: a typed
    StoreRejected naming the account (so the sync can fail only it), nothing written, store still up."""
    await store.write_cycle([update(1, 1.0)], [])
    refused = bad()
    with pytest.raises(StoreRejected, match=why) as err:
        await store.write_cycle([update(1, 2.0), refused], [AccountSyncState(1)])
    assert err.value.accounts == {refused.account}
    assert [(r.account, r.balance) for r in await store.get_accounts()] == [(1, 1.0)]  # nothing written
    assert await store.get_sync_states() == {}
    await store.ping()
    await store.write_cycle([update(1, 2.0)], [])  # the others, written without it, go through
    assert [(r.account, r.balance) for r in await store.get_accounts()] == [(1, 2.0)]


# -- set_client: assigning accounts to clients (issue 10 finding 8) ---------------------------------


async def test_set_client_assigns_a_synced_account_touching_nothing_else(
    store: Store, backend: Backend
) -> None:
    await store.put_account_documents([provisioned(891215, "old_client")])
    u = update(891215, 27047.52)
    await store.write_cycle([u], [])
    before = backend.raw_account(891215)
    assert before is not None

    await store.set_client(891215, "client_alejandro")

    assert backend.raw_account(891215) == {**before, "client_id": "client_alejandro"}
    assert [r.account for r in await store.get_accounts(client_id="client_alejandro")] == [891215]
    assert await store.get_accounts(client_id="old_client") == []
    assert synced_of(await store.get_account(891215)) == expected_synced(u)


async def test_set_client_creates_a_never_synced_account_with_only_its_client(
    store: Store, backend: Backend
) -> None:
    await store.set_client(886557, "client_a")

    assert backend.raw_account(886557) == {"account": 886557, "client_id": "client_a"}
    record = await store.get_account(886557)
    assert record == AccountRecord(account=886557, client_id="client_a")  # every value None, none invented
    assert [r.account for r in await store.get_accounts(client_id="client_a")] == [886557]

    # The first sync then adds its fields and keeps the assignment.
    u = update(886557, 80000.0, name="Main Balance Account")
    await store.write_cycle([u], [])
    record = await store.get_account(886557)
    assert record is not None and record.client_id == "client_a"
    assert synced_of(record) == expected_synced(u)


async def test_set_client_none_unassigns_and_never_creates(store: Store, backend: Backend) -> None:
    await store.put_account_documents([provisioned(5, "client_a")])
    before = backend.raw_account(5)
    assert before is not None

    await store.set_client(5, None)
    await store.set_client(6, None)  # no document: nothing to unassign, nothing created

    assert backend.raw_account(5) == {k: v for k, v in before.items() if k != "client_id"}
    assert backend.raw_account(6) is None
    assert await store.get_accounts(client_id="client_a") == []
    assert [r.account for r in await store.get_accounts()] == [5]
    await store.set_client(5, "client_b")  # and reassigns
    assert [r.account for r in await store.get_accounts(client_id="client_b")] == [5]


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
        await store.set_client(account, client_id)
    assert await store.get_accounts() == []


async def test_a_closed_store_raises_store_error(backend: Backend) -> None:
    s = backend.make()
    with pytest.raises(StoreError):
        await s.ping()  # never opened
    await s.open()
    await s.close()
    with pytest.raises(StoreError):
        await s.ping()
    with pytest.raises(StoreError):
        await s.write_cycle([update(1)], [])
    with pytest.raises(StoreError):
        await s.get_accounts()
    await s.close()  # closing twice is harmless


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

    got = [r for r in await store.get_accounts() if base <= r.account < base + 100]
    assert [r.account for r in got] == sorted(model)
    for record in got:
        assert synced_of(record) == model[record.account]["synced"]
        assert record.name == model[record.account]["name"]


async def test_timestamps_are_aware_utc_even_from_naive_input(store: Store) -> None:
    naive = datetime(2025, 3, 1, 8, 30, 15, 500999)  # taken as UTC, as pymongo does
    await store.record_run(SyncRun("naive", started_at=naive))
    [got] = await store.list_runs()
    assert got.started_at == datetime(2025, 3, 1, 8, 30, 15, 500000, tzinfo=UTC)
