"""Issue 10: the sync cycle against a real HTTP bridge (the seed's JSON on loopback) serving hostile
values, in /info, in the batch and in the summary. Whatever one account's data holds, the cycle
finishes, that account fails with a reason from the closed set (and its counters move), and every
other account is written."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import agent.sources.bridge.client as bridge_client
from agent.domain.accounts import REASONS, DataSource, Reason
from agent.domain.runs import RunResult
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import SyncService
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS, SeedBridge

PRE_BALANCE = -1.0  # a value no bridge sends: shows when an account was NOT written
BAD = 891215
GOOD = [a for a in SEED_ACCOUNTS if a != BAD]
HUGE = 10**400
DEEP = 100_000


def deep_json(depth: int = DEEP) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    await st.open()
    await st.accounts.put_account_documents(
        [{"account": a, "name": v["name"], "balance": PRE_BALANCE} for a, v in SEED_ACCOUNTS.items()]
    )
    yield st
    await st.close()


MakeService = Callable[..., Awaitable[SyncService]]
SOURCE_OPTIONS = ("use_batch", "concurrency")  # BridgeSource's; the rest are SyncService's


@pytest.fixture
async def make_service(store: Store) -> AsyncIterator[MakeService]:
    clients: list[BridgeClient] = []

    async def make(url: str, *, timeout: float = 5.0, client: dict[str, Any] | None = None, **kw: Any):
        bc = BridgeClient(url, timeout=timeout, **(client or {}))
        clients.append(bc)
        kw.setdefault("health_backoff", 0.01)
        kw.setdefault("health_retries", 1)
        source = BridgeSource(bc, **{k: kw.pop(k) for k in SOURCE_OPTIONS if k in kw})
        svc = SyncService(store, source, **kw)
        assert await svc.ensure_ready()
        return svc

    yield make
    for c in clients:
        await c.close()


async def assert_only_bad_failed(
    svc: SyncService, store: Store, bridge: SeedBridge, run: Any, reason: Reason = Reason.INVALID_PAYLOAD
) -> None:
    """The cycle finished; BAD failed with `reason` (counted), nothing of it was written; every other
    account was written live with what the bridge served."""
    assert run.result is RunResult.PARTIAL, (run.result, run.error)
    assert (run.synced_live, run.failed) == (len(GOOD), 1)
    assert run.failures == {str(BAD): reason.value}
    stored = {a.account: a for a in await store.accounts.get_accounts()}
    assert stored[BAD].balance == PRE_BALANCE and stored[BAD].live_data_at is None
    for account in GOOD:
        assert stored[account].balance == bridge.accounts[account]["balance"], account
        assert stored[account].data_source == DataSource.LIVE.value
    assert svc.fleet.snapshot().failures[(BAD, reason)] == 1
    assert svc.fleet.snapshot().accounts[BAD].consecutive_failures == 1
    assert svc.fleet.status.store_up is True


# Finding 1 (and 2 for leverage): one value nobody foresaw, in one account's live data.
BAD_LIVE_VALUES = {
    "balance_400_digits": {"balance": HUGE},
    "balance_negative_400_digits": {"balance": -HUGE},
    "margin_level_400_digits": {"margin_level": HUGE},
    "balance_1e300": {"balance": 1e300},
    "equity_2_63": {"equity": 2**63},
    "timestamp_1e20": {"timestamp": 1e20},
    "timestamp_minus_1e20": {"timestamp": -1e20},
    "timestamp_year_1_with_offset": {"timestamp": "0001-01-01T00:00:00+01:00"},
    "timestamp_year_9999_negative_offset": {"timestamp": "9999-12-31T23:59:59-23:59"},
    "timestamp_1970": {"timestamp": 0},
    "login_superscript_digit": {"login": "²"},
    "login_arabic_indic_digits": {"login": "٨٩١٢١٥"},
    "login_2_64": {"login": 2**64},
    "leverage_2_64": {"leverage": 2**64},
    "leverage_float_2_64": {"leverage": float(2**64)},
    "currency_huge": {"currency": "X" * 100_000},
}


@pytest.mark.parametrize("batch", [False, True], ids=["per_account", "batch"])
@pytest.mark.parametrize("patch", list(BAD_LIVE_VALUES.values()), ids=list(BAD_LIVE_VALUES))
async def test_one_bad_value_fails_only_its_account(seed, store, make_service, patch, batch):
    bridge, url = seed
    bridge.batch = batch
    bridge.live_patch[BAD] = patch
    svc = await make_service(url)
    run = await svc.run_cycle()
    assert run.bridge_batch is batch
    await assert_only_bad_failed(svc, store, bridge, run)


@pytest.mark.parametrize("batch", [False, True], ids=["per_account", "batch"])
async def test_superscript_account_id_in_info_or_batch(seed, store, make_service, batch):
    bridge, url = seed
    bridge.batch = batch
    bridge.info_patch[BAD] = {"account_id": "²"}
    svc = await make_service(url)
    run = await svc.run_cycle()
    await assert_only_bad_failed(svc, store, bridge, run)
    # In the batch the entry names no valid account: skipped and counted, then /info is asked.
    assert svc.fleet.status.invalid_entries["live"] == (1 if batch else 0)


async def test_json_nested_100000_deep_in_one_info(seed, store, make_service):
    bridge, url = seed
    bridge.raw_info[BAD] = b'{"account_id": %d, "live_data": %s}' % (BAD, deep_json())
    svc = await make_service(url)
    run = await svc.run_cycle()
    await assert_only_bad_failed(svc, store, bridge, run)


async def test_json_nested_100000_deep_in_the_batch_falls_back_to_info(seed, store, make_service):
    bridge, url = seed
    bridge.batch = True
    bridge.raw_batch = b'{"accounts": %s}' % deep_json()
    svc = await make_service(url)
    run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS and run.synced_live == len(SEED_ACCOUNTS)
    assert run.bridge_batch is False
    assert sum(r.startswith("info:") for r in bridge.requests) == len(SEED_ACCOUNTS)


@pytest.mark.parametrize(
    "body",
    [
        deep_json(),
        b'{"status": "healthy", "mt5": ' + deep_json() + b"}",
        b'{"status": ' + deep_json() + b"}",
        b'{"status": "healthy", "features": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"status": 12}',
        b"[]",
    ],
    ids=["deep", "deep_mt5", "deep_status", "deep_features", "status_number", "array"],
)
async def test_hostile_health_is_a_failed_health_check(seed, store, make_service, body):
    bridge, url = seed
    bridge.raw_health = body
    svc = await make_service(url, health_retries=2)
    run = await svc.run_cycle()
    if run.result is RunResult.SUCCESS:  # a body that still says "healthy" after parsing, harmlessly
        assert body.startswith(b'{"status": "healthy", "features"')
        return
    assert run.result is RunResult.SKIPPED and (run.error or "").startswith("bridge unavailable")
    assert svc.fleet.status.bridge_up is False
    assert bridge.requests == ["health", "health"]  # retried, then skipped: nothing else asked
    assert all(a.balance == PRE_BALANCE for a in await store.accounts.get_accounts())


# Finding 2: values that fit no store (int64) must never reach it.
async def test_account_id_beyond_int64_in_summary_does_not_fail_the_store(seed, store, make_service):
    bridge, url = seed
    bridge.summary_extra = [{"account": 2**63}, {"account": 2**64}, {"account": str(2**63)}]
    bridge.live_patch[BAD] = {"leverage": 2**64}
    svc = await make_service(url)
    run = await svc.run_cycle()
    await assert_only_bad_failed(svc, store, bridge, run)
    assert svc.fleet.status.invalid_entries["summary"] == 3
    assert not any(r.startswith(f"info:{2**63}") for r in bridge.requests)
    assert svc.fleet.snapshot().failures[(BAD, Reason.STORE)] == 0


# Finding 3: malformed summary entries are skipped and counted; the others sync.
MALFORMED_ENTRIES = [{"account": "abc"}, 1.5, True, -5, 0, None, "1e3", [], {"account": -5}, {"account": 0}]
MALFORMED_ENTRIES += [{"account": "1e3"}, {"account": 1.5}, {"account": True}, {"account": None}, {}]
MALFORMED_ENTRIES += [{"account": "١٢٣"}, {"account": " 7 "}, {"account": "²"}, {"account": "+7"}]


async def test_malformed_summary_entries_are_skipped_and_counted(seed, store, make_service, caplog):
    bridge, url = seed
    bridge.summary_extra = list(MALFORMED_ENTRIES)
    svc = await make_service(url)
    with caplog.at_level(logging.WARNING, logger="mt5_agent.bridge"):
        run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS, run.error
    assert (run.accounts_total, run.synced_live) == (len(SEED_ACCOUNTS), len(SEED_ACCOUNTS))
    assert svc.fleet.status.invalid_entries["summary"] == len(MALFORMED_ENTRIES)
    assert f"skipped {len(MALFORMED_ENTRIES)} malformed account entries" in caplog.text
    # "١٢٣" and " 7 " are not accounts 123 and 7: never asked for, never in the fleet.
    assert "info:123" not in bridge.requests and "info:7" not in bridge.requests
    assert set(svc.fleet.snapshot().accounts) == set(SEED_ACCOUNTS)
    # The count accumulates over cycles.
    await svc.run_cycle()
    assert svc.fleet.status.invalid_entries["summary"] == 2 * len(MALFORMED_ENTRIES)


@pytest.mark.parametrize("entry", MALFORMED_ENTRIES, ids=[repr(e) for e in MALFORMED_ENTRIES])
async def test_each_malformed_summary_entry_alone(seed, store, make_service, entry):
    bridge, url = seed
    bridge.summary_extra = [entry]
    svc = await make_service(url)
    run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS and run.synced_live == len(SEED_ACCOUNTS)
    assert svc.fleet.status.invalid_entries["summary"] == 1


async def test_malformed_batch_entries_are_skipped_and_counted(seed, store, make_service):
    bridge, url = seed
    bridge.batch = True
    bridge.batch_extra = [1.5, None, [], {"account_id": "²"}, {"account_id": 2**64}, {"live_data": {}}]
    svc = await make_service(url)
    run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS and run.bridge_batch
    assert svc.fleet.status.invalid_entries["live"] == 6


# Whatever raised it: an exception type nobody expected stays one account's failure.
async def test_unexpected_exception_is_that_accounts_failure(seed, store, make_service, monkeypatch):
    bridge, url = seed
    real = bridge_client.parse_info

    def exploding(account: int, *args: Any, **kw: Any) -> Any:
        if account == BAD:
            raise ZeroDivisionError("a bug")
        return real(account, *args, **kw)

    monkeypatch.setattr(bridge_client, "parse_info", exploding)
    svc = await make_service(url)
    run = await svc.run_cycle()
    await assert_only_bad_failed(svc, store, bridge, run)


async def test_unexpected_exception_in_the_cycle_ends_it_failed_not_raised(seed, store, make_service):
    _, url = seed
    svc = await make_service(url)

    def broken(*args: Any, **kw: Any) -> Any:
        raise KeyError("a bug")

    svc._next_states = broken  # type: ignore[method-assign]
    run = await svc.run_cycle()  # must not raise
    assert run.result is RunResult.FAILED and run.error == "cycle error: KeyError"
    assert svc.fleet.status.running is None and svc.fleet.status.runs[RunResult.FAILED] == 1
    assert (await store.runs.list_runs(limit=1))[0].run_id == run.run_id


# Finding 5: a timestamp ahead of the receive time.
def _naive_broker_time(ago: timedelta, utc_offset_hours: int = 3) -> str:
    """What a bridge sending naive broker time (UTC+3) writes for a read `ago` in the past."""
    return (datetime.now(UTC) - ago + timedelta(hours=utc_offset_hours)).replace(tzinfo=None).isoformat()


@pytest.mark.parametrize("batch", [False, True], ids=["per_account", "batch"])
async def test_timestamp_ahead_of_receive_time_is_counted_and_not_trusted(seed, store, make_service, batch):
    bridge, url = seed
    bridge.batch = batch
    svc = await make_service(url)
    assert (await svc.run_cycle()).result is RunResult.SUCCESS
    before = await store.accounts.get_account(BAD)
    assert before.live_data_at is not None

    # Read 2 hours ago, sent as naive broker time (UTC+3): it claims to be 1 hour in the future.
    bridge.live_patch[BAD] = {"timestamp": _naive_broker_time(timedelta(hours=2)), "balance": 1.0}
    run = await svc.run_cycle()
    assert run.failures == {str(BAD): Reason.INVALID_PAYLOAD.value}
    after = await store.accounts.get_account(BAD)
    assert after.live_data_at == before.live_data_at  # freshness not reset
    assert after.balance == before.balance  # nothing of it written
    assert svc.fleet.snapshot().accounts[BAD].live_data_at == before.live_data_at
    assert svc.fleet.status.clock_skew_total == 1
    assert 3590 < (svc.fleet.status.clock_skew_seconds or 0) < 3610
    assert svc.fleet.snapshot().failures[(BAD, Reason.INVALID_PAYLOAD)] == 1


async def test_timestamp_within_tolerance_is_capped_at_receive_time(seed, store, make_service):
    bridge, url = seed
    ahead = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    for account in SEED_ACCOUNTS:
        bridge.live_patch[account] = {"timestamp": ahead}
    svc = await make_service(url, client={"clock_skew_tolerance": 60.0})
    run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS
    assert svc.fleet.status.clock_skew_total == 0 and 0 < (svc.fleet.status.clock_skew_seconds or 0) <= 3
    for rec in await store.accounts.get_accounts():
        assert rec.live_data_at is not None and rec.live_data_at <= run.finished_at


async def test_old_timestamp_is_kept_as_the_live_data_time(seed, store, make_service):
    bridge, url = seed
    read = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    bridge.live_patch[BAD] = {"timestamp": read.isoformat().replace("+00:00", "Z")}
    svc = await make_service(url)
    assert (await svc.run_cycle()).result is RunResult.SUCCESS
    assert (await store.accounts.get_account(BAD)).live_data_at == read


# Finding 13: a terminal down while its bridge serves stored_data for every account.
async def test_stored_data_for_every_account_is_a_failed_run(seed, store, make_service):
    bridge, url = seed
    svc = await make_service(url)
    first = await svc.run_cycle()
    assert first.result is RunResult.SUCCESS and svc.fleet.status.terminal_up is True
    last_success = svc.fleet.status.last_success_at
    live_at = {a: (await store.accounts.get_account(a)).live_data_at for a in SEED_ACCOUNTS}

    for account in SEED_ACCOUNTS:
        bridge.behaviour[account] = "no_live_data"
    run = await svc.run_cycle()
    assert run.result is RunResult.FAILED
    assert (run.synced_live, run.synced_stored, run.failed) == (0, len(SEED_ACCOUNTS), 0)
    assert "no account gave live data" in (run.error or "")
    assert svc.fleet.status.last_success_at == last_success  # does not advance
    assert svc.fleet.status.terminal_up is False
    assert svc.fleet.status.bridge_up is True  # the bridge itself answers
    for account in SEED_ACCOUNTS:  # the stored values are written, freshness is not reset
        rec = await store.accounts.get_account(account)
        assert rec.data_source == DataSource.STORED.value and rec.live_data_at == live_at[account]

    bridge.behaviour.clear()
    assert (await svc.run_cycle()).result is RunResult.SUCCESS
    assert svc.fleet.status.terminal_up is True and svc.fleet.status.last_success_at > last_success


async def test_one_account_stored_among_live_ones_stays_partial(seed, store, make_service):
    bridge, url = seed
    svc = await make_service(url)
    bridge.behaviour[BAD] = "no_live_data"
    run = await svc.run_cycle()
    assert run.result is RunResult.PARTIAL and svc.fleet.status.terminal_up is True


# Finding 14: no live data and no stored data is its own reason.
async def test_no_live_and_no_stored_data_is_reason_no_live_data(seed, store, make_service):
    bridge, url = seed
    bridge.info_patch[BAD] = {"live_data": {}, "stored_data": None}
    svc = await make_service(url)
    run = await svc.run_cycle()
    await assert_only_bad_failed(svc, store, bridge, run, Reason.NO_LIVE_DATA)


# Finding 15: accounts the bridge no longer lists leave the fleet after a grace.
async def test_accounts_no_longer_listed_are_pruned_after_three_listings(seed, store, make_service):
    bridge, url = seed
    svc = await make_service(url)
    bridge.behaviour[BAD] = "http_500"
    await svc.run_cycle()
    assert svc.fleet.snapshot().failures[(BAD, Reason.HTTP_STATUS)] == 1
    gone = bridge.accounts.pop(BAD)
    for _ in range(2):  # one or two glitchy listings do not drop it (nor reset its alerts)
        await svc.run_cycle()
        assert BAD in svc.fleet.snapshot().accounts and svc.fleet.snapshot().accounts[BAD].has_sync_state
    await svc.run_cycle()
    assert BAD not in svc.fleet.snapshot().accounts  # nor its sync state: the fleet holds both in one
    assert not any(account == BAD for account, _ in svc.fleet.snapshot().failures)
    assert svc.fleet.status.pruned_total == 1
    assert set(svc.fleet.snapshot().accounts) == set(GOOD)
    # Listed again: back in the fleet at once.
    bridge.accounts[BAD] = gone
    bridge.behaviour.clear()
    assert (await svc.run_cycle()).result is RunResult.SUCCESS
    assert set(svc.fleet.snapshot().accounts) == set(SEED_ACCOUNTS)


async def test_a_glitch_does_not_reset_the_grace_count_of_others(seed, store, make_service):
    bridge, url = seed
    svc = await make_service(url, prune_after=2)
    await svc.run_cycle()
    bridge.accounts.pop(BAD)
    await svc.run_cycle()
    assert BAD in svc.fleet.snapshot().accounts
    bridge.summary_fault = "http_500"  # a failed listing counts for nothing
    await svc.run_cycle()
    assert BAD in svc.fleet.snapshot().accounts
    bridge.summary_fault = "ok"
    await svc.run_cycle()
    assert BAD not in svc.fleet.snapshot().accounts


async def test_churn_of_100_new_ids_per_cycle_stays_bounded(seed, store, make_service):
    bridge, url = seed
    svc = await make_service(url, concurrency=32)
    template = dict(SEED_ACCOUNTS[886557])
    sizes = []
    for cycle in range(6):
        bridge.accounts = {100_000 + cycle * 100 + i: dict(template) for i in range(100)}
        run = await svc.run_cycle()
        assert run.synced_live == 100
        sizes.append(len(svc.fleet.snapshot().accounts))
    # The 7 accounts loaded from the store, then at most 3 cycles' worth of ids (100 listed + 2 in grace).
    assert sizes[-1] == sizes[-2] == sizes[-3] == 300
    assert sum(a.has_sync_state for a in svc.fleet.snapshot().accounts.values()) == 300


# The reasons a bridge can cause are all in the closed set.
def test_reasons_are_a_closed_set_with_the_new_ones():
    assert {r.value for r in REASONS} == {
        "timeout",
        "connection",
        "http_status",
        "invalid_payload",
        "account_mismatch",
        "not_found",
        "store",
        "login_failed",
        "no_live_data",
    }


def test_deep_json_really_is_too_deep_for_the_decoder():
    """The premise of the deep-JSON tests: json.loads alone raises RecursionError on it."""
    with pytest.raises(RecursionError):
        json.loads(deep_json())
