"""Issue 10, the property: whatever one account's /info, its batch entry, or one summary entry holds,
served by a real HTTP bridge on loopback, the cycle completes, every good account is written with what
the bridge served, and the bad one is counted (a failure with a reason from the closed set, or a
skipped entry) or, when the value happens to be harmless, written validated. Never an exception."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.accounts import REASONS, DataSource
from agent.domain.runs import RunResult
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.sources.bridge.parse import MAX_ABS_VALUE, PayloadError, parse_info
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import SyncService
from tests.agent.fake_seed_bridge import DROP, SEED_ACCOUNTS, SeedBridge

BAD = 891215
GOOD = [a for a in SEED_ACCOUNTS if a != BAD]
REASON_VALUES = {r.value for r in REASONS}

# Values chosen to hit every edge the validation has, mixed with arbitrary JSON.
edge_ints = st.sampled_from(
    [0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**15, 10**15 + 1, 10**400]
)
edge_floats = st.sampled_from(
    [float("nan"), float("inf"), float("-inf"), 1e300, -1e300, 1e20, -1e20, 1e15, 1e15 * 1.0000001, 5e-324]
)
edge_strings = st.sampled_from(
    [
        "²",
        "١٢٣",
        " 7 ",
        "1e3",
        "",
        "0",
        "-5",
        "+7",
        "891215",
        "9" * 30,
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "2025-01-01T00:00:00Z",
        "2999-01-01T00:00:00",
        "NaN",
        "\x00",
        "x" * 5000,
        "USD",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | edge_ints
    | edge_floats
    | edge_strings
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
LIVE_FIELDS = [
    "balance",
    "equity",
    "profit",
    "margin",
    "margin_free",
    "margin_level",
    "leverage",
    "currency",
    "trade_allowed",
    "timestamp",
    "login",
    "name",
    "server",
]
INFO_FIELDS = ["account_id", "live_data", "stored_data", "error", "live_error"]
key_or_value = st.one_of(json_values, st.just(DROP))

# One hostile change: (where, key, value).
hostile = st.one_of(
    st.tuples(st.just("live"), st.sampled_from(LIVE_FIELDS) | st.text(max_size=8), key_or_value),
    st.tuples(st.just("info"), st.sampled_from(INFO_FIELDS), key_or_value),
    st.tuples(st.just("summary_entry"), st.just(""), json_values),
    st.tuples(
        st.just("summary_entry"),
        st.just(""),
        st.fixed_dictionaries(
            {"account": json_values}, optional={"name": json_values, "server": json_values}
        ),
    ),
    st.tuples(st.just("batch_entry"), st.just(""), json_values),
    st.tuples(
        st.just("batch_entry"),
        st.just(""),
        st.fixed_dictionaries({"account_id": json_values}, optional={"live_data": json_values}),
    ),
    st.tuples(
        st.just("raw_info"),
        st.just(""),
        st.sampled_from(
            [
                b"[" * 100_000 + b"]" * 100_000,
                b'{"account_id": 891215, "live_data": ' + b"{" * 3000,
                b"\xff\xfe not utf-8",
                b"",
                b"null",
                b'{"account_id": 891215, "live_data": {"balance": ' + b"9" * 5000 + b"}}",
                b'{"live_data": {"balance": 1, "equity": 1, "profit": 0, "margin": 0, "margin_free": 1, '
                b'"currency": "USD", "timestamp": -1e400}}',
            ]
        ),
    ),
)

_examples = itertools.count(1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st_ = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    await st_.open()
    yield st_
    await st_.close()


@pytest.fixture
async def service(seed, store) -> AsyncIterator[SyncService]:
    _, url = seed
    client = BridgeClient(url, timeout=5.0)
    svc = SyncService(store, BridgeSource(client), health_backoff=0.01, health_retries=1, prune_after=0)
    assert await svc.ensure_ready()
    yield svc
    await client.close()


def _reset(bridge: SeedBridge, batch: bool, n: int) -> None:
    bridge.live_patch.clear()
    bridge.info_patch.clear()
    bridge.raw_info.clear()
    bridge.summary_extra = []
    bridge.batch_extra = []
    bridge.batch = batch
    for account in SEED_ACCOUNTS:  # a balance unique to this example: shows it was written now
        bridge.accounts[account]["balance"] = float(n * 1000 + account % 997)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(change=hostile, batch=st.booleans())
async def test_any_hostile_payload_costs_only_its_own_account(
    seed: tuple[SeedBridge, str],
    store: Store,
    service: SyncService,
    caplog: pytest.LogCaptureFixture,
    change: tuple[str, str, Any],
    batch: bool,
) -> None:
    bridge, _ = seed
    where, key, value = change
    n = next(_examples)
    _reset(bridge, batch, n)
    if where == "live":
        bridge.live_patch[BAD] = {key: value}
    elif where == "info":
        bridge.info_patch[BAD] = {key: value}
    elif where == "summary_entry":
        bridge.summary_extra = [value]
    elif where == "batch_entry":
        bridge.batch_extra = [value]
    else:
        bridge.raw_info[BAD] = value
    failures_before = sum(service.fleet.snapshot().failures.values())
    invalid_before = sum(service.fleet.status.invalid_entries.values())

    run = await service.run_cycle()

    # The cycle completed: a result, never "cycle interrupted" or an unexpected error.
    assert run.result in (RunResult.SUCCESS, RunResult.PARTIAL), (run.result, run.error, change)
    assert not (run.error or "").startswith(("cycle", "store")), run.error
    assert service.fleet.status.store_up is True
    # Every good account was written, live, with what the bridge served in this example.
    records = {r.account: r for r in await store.accounts.get_accounts()}
    for account in GOOD:
        rec = records[account]
        assert rec.balance == bridge.accounts[account]["balance"], (account, change)
        assert rec.data_source == DataSource.LIVE.value
    assert run.synced_live >= len(GOOD)
    # The bad account: failed with a closed-set reason (counted), or written with validated values.
    reason = run.failures.get(str(BAD))
    if reason is not None:
        assert reason in REASON_VALUES
        assert sum(service.fleet.snapshot().failures.values()) == failures_before + len(run.failures)
    else:
        rec = records.get(BAD)
        assert rec is not None and rec.updated_at is not None
        for f in ("balance", "equity", "profit", "margin", "margin_free", "margin_level"):
            v = getattr(rec, f)
            assert v is None or (isinstance(v, float) and abs(v) <= MAX_ABS_VALUE), (f, v)
        assert rec.leverage is None or 0 < rec.leverage < 2**53
        if rec.live_data_at is not None:
            assert rec.live_data_at <= run.finished_at
    # A hostile list entry is skipped and counted, or (a valid id) is one more account, handled.
    if where in ("summary_entry", "batch_entry"):
        counted = sum(service.fleet.status.invalid_entries.values()) - invalid_before
        extra = set(run.failures) - {str(BAD)}
        assert counted + len(extra) <= 1
        assert all(r in REASON_VALUES for r in run.failures.values())
    json.dumps(run.failures)  # the run record stays serialisable
    # Validation caught it: no exception other than the expected ones was raised anywhere.
    assert not [r for r in caplog.records if "unexpected" in r.getMessage()], change


live_docs = st.fixed_dictionaries(
    {},
    optional={f: json_values for f in LIVE_FIELDS},
)


@settings(max_examples=300, deadline=None)
@given(
    payload=json_values
    | st.fixed_dictionaries({"account_id": json_values}, optional={"live_data": live_docs | json_values})
    | st.fixed_dictionaries({"live_data": live_docs}, optional={"stored_data": live_docs | json_values})
)
def test_parse_info_raises_only_payload_errors(payload: Any) -> None:
    """The parser alone, fast and wide: a value, or a PayloadError with a closed-set reason."""
    received = datetime.now(UTC)
    try:
        data = parse_info(BAD, payload, received)
    except PayloadError as exc:
        assert exc.reason.value in REASON_VALUES
        assert len(exc.message) < 1000
        return
    for f in ("balance", "equity", "profit", "margin", "margin_free", "margin_level"):
        v = getattr(data.values, f)
        assert v is None or (type(v) is float and abs(v) <= MAX_ABS_VALUE)
    assert data.read_at is None or data.read_at <= received
