"""The property: whatever values MetaAPI's models carry (the SDK hands them over unchecked), the
converter returns domain values inside the bridge parser's bounded domains, or a PayloadError with a
reason from the closed set. Never another exception, never a value outside the domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.domain.accounts import REASONS
from agent.sources.bridge.parse import PayloadError
from agent.sources.metaapi import convert
from tests.sources.checks import check_deal, check_position
from tests.sources.metaapi.fake_sdk import account_info, deal, position

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATEST = convert.latest_for(NOW)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**53, 2**63, 10**400, 0.5, float("nan"), float("inf"), -1e16, 1e15]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(
        [
            "POSITION_TYPE_BUY",
            "DEAL_TYPE_SELL",
            "DEAL_ENTRY_OUT",
            "DEAL_REASON_UNKNOWN",
            "DEAL_TAX",
            "123",
            "",
            "2026-01-05T09:00:00Z",
            "\x00",
        ]
    ),
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
    ),
    st.datetimes(),  # naive
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _mutated(base: dict[str, Any], changes: dict[str, Any], drop: list[str]) -> dict[str, Any]:
    item = {**base, **{k: v for k, v in changes.items() if k in base}}
    for key in drop:
        item.pop(key, None)
    return item


def _keys(base: dict[str, Any]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(sorted(base)), max_size=3)


POS, DEAL, INFO = position(5), deal(6, 5), account_info(7)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(POS)), values, max_size=4), _keys(POS))
def test_any_position_is_in_domain_or_a_payload_error(changes: dict[str, Any], drop: list[str]) -> None:
    try:
        p = convert.position(7, _mutated(POS, changes, drop), LATEST)
    except PayloadError as exc:
        assert exc.reason in REASONS and "\n" not in exc.message
        return
    check_position(p, 7, LATEST)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(DEAL)), values, max_size=4), _keys(DEAL))
def test_any_deal_is_in_domain_or_a_payload_error(changes: dict[str, Any], drop: list[str]) -> None:
    try:
        d = convert.deal(7, _mutated(DEAL, changes, drop), LATEST)
    except PayloadError as exc:
        assert exc.reason in REASONS
        return
    check_deal(d, 7, LATEST)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(INFO)), values, max_size=4), _keys(INFO))
def test_any_account_information_is_in_domain_or_a_payload_error(
    changes: dict[str, Any], drop: list[str]
) -> None:
    try:
        snap = convert.account_snapshot(7, _mutated(INFO, changes, drop), NOW)
    except PayloadError as exc:
        assert exc.reason in REASONS
        return
    v = snap.values
    for x in (v.balance, v.equity, v.margin, v.margin_free):
        assert type(x) is float and abs(x) <= 1e15
    assert v.profit is None and snap.read_at == NOW and snap.live


@given(values)
def test_any_model_shape_is_a_payload_error_at_worst(item: Any) -> None:
    for fn in (convert.position, convert.deal):
        try:
            fn(7, item, LATEST)
        except PayloadError:
            pass
    try:
        convert.account_snapshot(7, item, NOW)
    except PayloadError:
        pass
