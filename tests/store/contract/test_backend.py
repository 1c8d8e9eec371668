"""The backend contract: its concerns, a cycle's write across accounts and sync states (all or nothing, the
last entry per account winning, values it cannot hold refused with a typed error), and its lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from agent.domain.accounts import AccountSyncState, Reason
from agent.domain.runs import SyncRun
from agent.store.base import (
    AccountStore,
    DealStore,
    EventStore,
    PositionStore,
    RunStore,
    Store,
    StoreBackend,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    SyncStateStore,
)

from ..conftest import Backend
from ..factories import T0, update
from ..trade_factories import deal, event, snapshot


async def test_satisfies_the_store_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    await store.ping()


async def test_an_empty_write_cycle_changes_nothing(store: Store) -> None:
    await store.write_cycle([], [])
    assert await store.accounts.get_accounts() == []
    assert await store.sync_state.get_sync_states() == {}

    await store.write_cycle([update(1)], [AccountSyncState(1, 2)])
    before = (await store.accounts.get_accounts(), await store.sync_state.get_sync_states())
    await store.write_cycle([], [])
    assert (await store.accounts.get_accounts(), await store.sync_state.get_sync_states()) == before


async def test_the_last_update_for_an_account_in_a_cycle_wins(store: Store) -> None:
    await store.write_cycle(
        [update(1, 1.0), update(2, 5.0), update(1, 2.0)],
        [AccountSyncState(1, 1), AccountSyncState(1, 2)],
    )
    assert [(r.account, r.balance) for r in await store.accounts.get_accounts()] == [(1, 2.0), (2, 5.0)]
    assert (await store.sync_state.get_sync_states())[1].consecutive_failures == 2


async def test_a_value_the_store_cannot_hold_is_refused(store: Store) -> None:
    await store.write_cycle([update(1, 1.0)], [])
    with pytest.raises(StoreError, match=r"64 bits|8-byte ints"):
        await store.write_cycle([update(1, 2.0), update(2, leverage=2**70)], [])
    assert [r.account for r in await store.accounts.get_accounts()] == [1]


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
    assert [(r.account, r.balance) for r in await store.accounts.get_accounts()] == [
        (1, 1.0)
    ]  # nothing written
    assert await store.sync_state.get_sync_states() == {}
    await store.ping()
    await store.write_cycle([update(1, 2.0)], [])  # the others, written without it, go through
    assert [(r.account, r.balance) for r in await store.accounts.get_accounts()] == [(1, 2.0)]


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
        await s.accounts.get_accounts()
    await s.close()  # closing twice is harmless


# -- issue 11: concerns and typed errors -------------------------------


async def test_each_concern_satisfies_its_protocol(store: Store) -> None:
    assert isinstance(store, StoreBackend)
    assert isinstance(store.accounts, AccountStore)
    assert isinstance(store.sync_state, SyncStateStore)
    assert isinstance(store.runs, RunStore)
    assert isinstance(store.positions, PositionStore)
    assert isinstance(store.deals, DealStore)
    assert isinstance(store.events, EventStore)


async def test_a_closed_store_is_unavailable_for_every_concern(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    await s.close()
    calls = (
        s.ping,
        lambda: s.write_cycle([update(1)], []),
        lambda: s.accounts.write_updates([update(1)]),
        s.accounts.get_accounts,
        lambda: s.accounts.get_account(1),
        lambda: s.accounts.set_client(1, "c"),
        lambda: s.accounts.put_account_documents([{"account": 1}]),
        s.sync_state.get_sync_states,
        lambda: s.sync_state.write_states([AccountSyncState(1)]),
        lambda: s.runs.record_run(SyncRun("r", started_at=T0)),
        s.runs.list_runs,
        s.runs.count_runs,
        lambda: s.positions.replace_positions(1, snapshot(1)),
        lambda: s.positions.get_positions(1),
        s.positions.get_all_positions,
        lambda: s.deals.put_deals([deal(1, 1)]),
        lambda: s.deals.get_deals(1),
        lambda: s.deals.latest_deal_time(1),
        lambda: s.events.append_events([event(1, "k")]),
        lambda: s.events.list_events(limit=1),
        s.events.latest_id,
        s.events.dedup_keys,
        s.events.oldest_available,
        lambda: s.events.prune_events(max_events=1),
    )
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call()


async def test_a_cycle_written_by_halves_reads_back_the_same(store: Store) -> None:
    """Each concern writes on its own too (one transaction or bulk write each); the backend's write_cycle
    is the two in one."""
    ups = [update(1, 1.0), update(2, 2.0, name="Two"), update(1, 3.0)]
    states = [AccountSyncState(1, 1, Reason.TIMEOUT, T0), AccountSyncState(2), AccountSyncState(1, 2)]
    await store.accounts.write_updates(ups)
    await store.sync_state.write_states(states)
    halves = (await store.accounts.get_accounts(), await store.sync_state.get_sync_states())
    assert [(r.account, r.balance, r.name) for r in halves[0]] == [(1, 3.0, None), (2, 2.0, "Two")]
    assert halves[1] == {1: AccountSyncState(1, 2), 2: AccountSyncState(2)}  # the last one per account

    await store.write_cycle(ups, states)
    assert (await store.accounts.get_accounts(), await store.sync_state.get_sync_states()) == halves
    await store.accounts.write_updates([])  # nothing to write: no error, nothing changed
    await store.sync_state.write_states([])
    assert (await store.accounts.get_accounts(), await store.sync_state.get_sync_states()) == halves


async def test_each_half_refuses_what_the_store_cannot_hold(store: Store) -> None:
    await store.accounts.write_updates([update(1, 1.0)])
    with pytest.raises(StoreRejected, match="balance is not a finite number") as err:
        await store.accounts.write_updates([update(1, 2.0), update(3, float("nan"))])
    assert err.value.accounts == {3}
    with pytest.raises(StoreRejected, match="sync state consecutive_failures does not fit") as err:
        await store.sync_state.write_states([AccountSyncState(1), AccountSyncState(4, 2**64)])
    assert err.value.accounts == {4}
    assert [(r.account, r.balance) for r in await store.accounts.get_accounts()] == [(1, 1.0)]
    assert await store.sync_state.get_sync_states() == {}


async def test_every_operation_is_reported_once_to_the_observer(backend: Backend) -> None:
    """Telemetry times the store through this hook (no proxy): the backend's and each concern's
    operations, failed ones included, by name."""
    seen: list[tuple[str, float]] = []
    s = backend.make()
    s.observe_operations(lambda op, seconds: seen.append((op, seconds)))
    await s.open()
    try:
        await s.ping()
        await s.write_cycle([update(1)], [AccountSyncState(1)])
        await s.accounts.write_updates([update(2)])
        await s.sync_state.write_states([AccountSyncState(2)])
        await s.accounts.get_accounts()
        await s.accounts.get_accounts(client_id="c")
        await s.accounts.get_account(1)
        await s.accounts.set_client(1, "c")
        await s.accounts.put_account_documents([{"account": 3}])
        await s.sync_state.get_sync_states()
        await s.runs.record_run(SyncRun("r", started_at=T0))
        await s.runs.list_runs()
        await s.runs.count_runs()
        await s.positions.replace_positions(1, snapshot(1))  # reads the latest event id: one operation
        await s.positions.get_positions(1)
        await s.positions.get_all_positions()
        await s.deals.put_deals([deal(1, 1)])
        await s.deals.get_deals(1)
        await s.deals.latest_deal_time(1)
        await s.events.append_events([event(1, "k")])
        await s.events.list_events(limit=1)
        await s.events.latest_id()
        await s.events.dedup_keys()
        await s.events.oldest_available()
        await s.events.prune_events(max_events=1)
        await s.write_cycle([], [])  # pings inside: one operation all the same
        with pytest.raises(StoreRejected):
            await s.write_cycle([update(4, float("nan"))], [])
        s.observe_operations(None)
        await s.ping()  # no longer reported
    finally:
        await s.close()
    assert [op for op, _ in seen] == [
        "open",
        "ping",
        "write_cycle",
        "write_updates",
        "write_states",
        "get_accounts",
        "get_accounts",
        "get_account",
        "set_client",
        "put_account_documents",
        "get_sync_states",
        "record_run",
        "list_runs",
        "count_runs",
        "replace_positions",
        "get_positions",
        "get_all_positions",
        "put_deals",
        "get_deals",
        "latest_deal_time",
        "append_events",
        "list_events",
        "latest_id",
        "dedup_keys",
        "oldest_available",
        "prune_events",
        "write_cycle",
        "write_cycle",
    ]
    assert all(seconds >= 0 for _, seconds in seen)
