"""The sync state contract (`store.sync_state`): per-account failure counts and times, replaced whole."""

from __future__ import annotations

from agent.domain.accounts import AccountSyncState, Reason
from agent.store.base import Store

from ..conftest import Backend
from ..factories import T0, update
from .expect import MINUTE, expected_synced, ms_state, synced_of


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
    assert await store.sync_state.get_sync_states() == expected

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.sync_state.get_sync_states() == expected
        assert synced_of(await reopened.accounts.get_account(1)) == expected_synced(update(1))
    finally:
        await reopened.close()


async def test_a_sync_state_is_replaced_whole(store: Store) -> None:
    failing = AccountSyncState(1, 4, Reason.CONNECTION, T0, T0, None)
    other = AccountSyncState(2, 1, Reason.NOT_FOUND, T0, T0, None)
    await store.write_cycle([], [failing, other])
    recovered = AccountSyncState(1, 0, None, None, T0 + MINUTE, T0 + MINUTE)
    await store.write_cycle([], [recovered])

    assert await store.sync_state.get_sync_states() == {1: recovered, 2: other}
