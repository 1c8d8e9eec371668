"""The MetaAPI source's reconnect logic with real timing on the event loop: a connection that never
synchronizes, one that loses synchronization and never regains it, and a silent one are recreated
within their bounds; failed attempts back off exponentially with jitter and a cap; a rate limit waits
the server's recommended retry time. Times are measured, not assumed.

Against a fake of the SDK's connection and listener interface (tests/sources/metaapi/fake_sdk.py): the
MetaAPI cloud cannot run here, and no test reaches it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

from agent.domain.accounts import AccountSnapshot, ReadFailure, Reason
from agent.sources.metaapi.backoff import Backoff
from tests.sources.metaapi.fake_sdk import FakeCloud
from tests.sources.metaapi.support import FAST, SLACK, make_source, wait_until

LOGIN = 51234567
ACCOUNTS = {str(LOGIN): "acc-1"}


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in pairwise(times)]


async def test_never_synchronizing_connection_is_recreated_within_the_bound(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN, never_sync=2)
    source = make_source(cloud, tmp_path, ACCOUNTS)
    try:
        source.start()
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized at last")
        conns = cloud.connections["acc-1"]
        assert len(conns) == 3 and conns[0].closed and conns[1].closed and not conns[2].closed
        gaps = _gaps(cloud.attempts["acc-1"])
        backoff = Backoff(FAST.backoff_base, FAST.backoff_cap)
        for n, gap in enumerate(gaps):  # sync bound, then the jittered backoff of the n-th failure
            low = FAST.sync_timeout + backoff.ceiling(n) / 2
            high = FAST.sync_timeout + backoff.ceiling(n) + SLACK
            assert low - 0.01 <= gap <= high, (n, gaps)
        state = source.connection_states()[0]
        assert state.connections_created == 3 and state.consecutive_failures == 0
        assert state.last_problem == "sync_timeout"
        assert isinstance(source.read_account(LOGIN), AccountSnapshot)
    finally:
        await source.close()
    print({"never_sync_gaps_s": gaps})


async def test_lost_synchronization_never_regained_is_recreated(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN)
    source = make_source(cloud, tmp_path, ACCOUNTS)
    try:
        source.start()
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized")
        first = cloud.current("acc-1")
        lost = time.monotonic()
        first.synchronized = False  # the SDK reconnected its socket but never synchronizes again
        failure = source.read_account(LOGIN)
        assert isinstance(failure, ReadFailure) and failure.reason is Reason.CONNECTION
        await wait_until(lambda: len(cloud.connections.get("acc-1", [])) == 2, what="a new connection")
        took = cloud.connections["acc-1"][1].created_at - lost
        assert FAST.sync_timeout - 0.01 <= took <= FAST.sync_timeout + FAST.check_interval + SLACK, took
        assert first.closed
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized again")
        assert source.connection_states()[0].recreated == 1
    finally:
        await source.close()
    print({"lost_sync_recreated_after_s": round(took, 3)})


async def test_silent_connection_is_recreated_within_the_bound(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN, silent_after_sync=1)
    source = make_source(cloud, tmp_path, ACCOUNTS)
    try:
        source.start()
        await wait_until(lambda: len(cloud.connections.get("acc-1", [])) == 2, what="a new connection")
        silent, fresh = cloud.connections["acc-1"]
        assert silent.synced_at is not None and silent.closed
        took = fresh.created_at - silent.synced_at  # from its last packet
        assert FAST.silence - 0.01 <= took <= FAST.silence + FAST.check_interval + SLACK, took
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized again")
        state = source.connection_states()[0]
        assert state.recreated == 1 and state.last_problem == "silent"
        assert state.last_packet_age_seconds is not None and state.last_packet_age_seconds < FAST.silence
    finally:
        await source.close()
    print({"silent_recreated_after_s": round(took, 3)})


async def test_backoff_is_exponential_jittered_and_capped(tmp_path: Path) -> None:
    bounds = replace(FAST, backoff_base=0.04, backoff_cap=0.16)
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN, fail_connect=5)
    source = make_source(cloud, tmp_path, ACCOUNTS, bounds=bounds)
    try:
        source.start()
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized at last")
        gaps = _gaps(cloud.attempts["acc-1"])
        backoff = Backoff(bounds.backoff_base, bounds.backoff_cap)
        ceilings = [backoff.ceiling(n) for n in range(5)]
        assert ceilings == [0.04, 0.08, 0.16, 0.16, 0.16]  # doubled, then capped
        assert len(gaps) == 5
        for gap, ceiling in zip(gaps, ceilings, strict=True):
            assert ceiling / 2 - 0.005 <= gap <= ceiling + SLACK, (gaps, ceilings)
        assert source.connection_states()[0].consecutive_failures == 0
    finally:
        await source.close()
    print({"backoff_gaps_s": gaps, "ceilings_s": ceilings})


def test_backoff_bounds_at_the_jitter_extremes() -> None:
    low, high = Backoff(1.0, 30.0, rng=lambda: 0.0), Backoff(1.0, 30.0, rng=lambda: 0.999999)
    assert [low.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert [round(high.delay(n), 3) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert high.delay(10_000) <= 30.0  # no overflow far out


async def test_rate_limit_waits_the_recommended_retry_time(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN, rate_limited=[0.8])  # longer than the backoff cap (0.4 s)
    source = make_source(cloud, tmp_path, ACCOUNTS)
    try:
        source.start()
        await wait_until(lambda: source.connection_states()[0].last_problem == "rate_limited", what="limited")
        waiting = source.connection_states()[0]
        assert waiting.retry_in_seconds is not None and 0.5 < waiting.retry_in_seconds <= 0.8
        assert not waiting.synchronized
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized")
        (gap,) = _gaps(cloud.attempts["acc-1"])
        assert 0.8 - 0.02 <= gap <= 0.8 + SLACK, gap
    finally:
        await source.close()
    print({"rate_limit_retry_after_s": gap})
