"""The whole-fleet cache (agent.api.fleetview) without HTTP: its answers equal the per-account serializer's,
an account is serialised again only when its fleet entry changes, and the ETag moves with the version and
the states, not with the ages."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.api import queries, serialize
from agent.api.fleetview import FleetView, Piece, Scope, compose, etag_matches, make_piece
from agent.api.serialize import ACCOUNT_FIELDS, account_json, portfolio_totals
from agent.domain.accounts import AccountValues, DataSource
from agent.domain.freshness import Thresholds
from agent.sync.fleet import AccountState

NOW = datetime(2025, 10, 24, 12, 0, tzinfo=UTC)
LIMITS = Thresholds()
SECRET = "client-secret-sentinel-8c1d"


@dataclass(frozen=True)
class Snap:
    version: int
    accounts: dict[int, AccountState]


def state(account: int, minutes: float | None, **kw: Any) -> AccountState:
    live = None if minutes is None else NOW - timedelta(minutes=minutes)
    values = None
    if live is not None:
        values = AccountValues(
            balance=100.0 + account % 7,
            equity=100.5,
            profit=0.1 * (account % 3),
            margin=0.0,
            margin_free=100.0,
            margin_level=None,
            leverage=100,
            currency="EUR" if account % 2 else "USD",
            trade_allowed=True,
        )
    base: dict[str, Any] = {
        "name": f"A{account}",
        "server": "S",
        "client_id": SECRET if account % 2 else "other",
        "values": values,
        "data_source": None if live is None else DataSource.LIVE.value,
        "live_data_at": live,
        "updated_at": live,
    }
    return AccountState(account=account, **{**base, **kw})


# ages from 0 to 20 minutes, some exactly on a threshold, one never synced, one stored-only
FLEET = {
    a.account: a
    for a in [
        state(1, 0.0),
        state(2, 4.999),
        state(3, 5.0),
        state(4, 9.5),
        state(5, 10.0),
        state(6, 15.0),
        state(7, 20.0),
        state(8, None),
        state(9, 1.0, data_source=DataSource.STORED.value),
        state(10, -1.0),  # live time ahead of the clock: age clamped to 0
    ]
}


def counting_view() -> tuple[FleetView, list[int]]:
    made: list[int] = []

    def make(s: AccountState) -> Piece:
        made.append(s.account)
        return make_piece(s)

    return FleetView(make), made


def reference(states: list[AccountState], now: datetime) -> list[dict[str, Any]]:
    return [account_json(queries.record_of(s), now, LIMITS) for s in states]


@pytest.mark.parametrize("later", [0, 1, 299, 300, 301, 600, 3600])
def test_pieces_and_aggregates_equal_the_per_account_serializer(later: int):
    now = NOW + timedelta(seconds=later)
    scope = FleetView().scope(Snap(1, FLEET))
    texts, cursor = scope.select(now, LIMITS)
    assert cursor is None
    served = [json.loads(t) for t in texts]
    assert served == reference(list(FLEET.values()), now)
    records = [queries.record_of(s) for s in FLEET.values()]
    assert scope.freshness(now, LIMITS) == queries.fleet_freshness(records, now, LIMITS)
    assert scope.totals() == portfolio_totals(served)


def test_only_a_changed_account_is_serialised_again_and_removed_ones_are_dropped():
    view, made = counting_view()
    view.scope(Snap(1, FLEET))
    assert sorted(made) == sorted(FLEET)
    made.clear()
    view.scope(Snap(1, FLEET))
    view.scope(Snap(1, FLEET), SECRET)  # another scope of the same version reuses the pieces
    assert made == []

    changed = dict(FLEET)
    changed[4] = dataclasses.replace(FLEET[4], name="renamed")
    del changed[7]
    scope = view.scope(Snap(2, changed))
    assert made == [4]
    assert [json.loads(t)["name"] for t in scope.select(NOW, LIMITS)[0]][3] == "renamed"
    assert 7 not in scope.numbers
    made.clear()
    assert view.piece(changed[4]) is view.piece(changed[4]) and made == []
    # an older snapshot than the cached version is answered, not cached over the newer one
    old = view.scope(Snap(1, FLEET))
    assert 7 in old.numbers and view.cached(Snap(2, changed)) is scope


def test_a_client_scope_holds_only_that_clients_accounts():
    scope = FleetView().scope(Snap(1, FLEET), SECRET)
    assert scope.numbers == [a for a in FLEET if a % 2]


def test_never_a_field_outside_the_allow_list_and_never_the_client_id():
    scope = FleetView().scope(Snap(1, FLEET))
    body = compose(scope.select(NOW, LIMITS)[0], {"count": len(scope)})
    assert SECRET not in body and "client_id" not in body and "other" not in body
    for a in json.loads(body)["accounts"]:
        assert list(a) == list(ACCOUNT_FIELDS)


def test_select_pages_and_filters():
    scope = FleetView().scope(Snap(1, FLEET))

    def numbers(**kw: Any) -> tuple[list[int], int | None]:
        texts, cursor = scope.select(NOW, LIMITS, **kw)
        return [json.loads(t)["account"] for t in texts], cursor

    assert numbers(limit=3) == ([1, 2, 3], 3)
    assert numbers(limit=3, after=3) == ([4, 5, 6], 6)
    assert numbers(limit=4, after=6) == ([7, 8, 9, 10], None)  # nothing follows: no cursor
    assert numbers(after=10) == ([], None)
    assert numbers(after=0, limit=1) == ([1], 1)
    assert numbers(after=5)[0] == [6, 7, 8, 9, 10]  # a cursor need not name an existing account
    assert numbers(state="critical") == ([6, 7, 8], None)
    assert numbers(state="degraded", limit=1) == ([5], None)
    assert numbers(source="VPS_STORED") == ([9], None)
    assert numbers(state="fresh", source="VPS_LIVE_MT5", limit=2) == ([1, 2], 2)


def test_the_etag_moves_with_states_and_versions_not_with_ages():
    view = FleetView()
    scope = view.scope(Snap(1, FLEET))
    tag = view.etag(scope, NOW, LIMITS, "k")
    assert tag.startswith('W/"') and SECRET not in tag
    assert view.etag(scope, NOW + timedelta(seconds=0.03), LIMITS, "k") == tag  # only ages moved
    assert view.etag(scope, NOW + timedelta(seconds=1), LIMITS, "k") != tag  # account 2 turns acceptable
    assert view.etag(scope, NOW, LIMITS, "other query") != tag
    assert FleetView().etag(scope, NOW, LIMITS, "k") != tag  # another process
    new = view.scope(Snap(2, {**FLEET, 4: dataclasses.replace(FLEET[4], name="x")}))
    assert view.etag(new, NOW, LIMITS, "k") != tag


def test_if_none_match_comparison():
    tag = 'W/"3-1-0-0-abc"'
    assert etag_matches(tag, tag)
    assert etag_matches('"3-1-0-0-abc"', tag)  # weak comparison
    assert etag_matches('W/"x", W/"3-1-0-0-abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches(None, tag)
    assert not etag_matches('W/"3-1-0-0-abd"', tag)


def test_an_empty_scope():
    scope = Scope(1, [])
    fresh = scope.freshness(NOW, LIMITS)
    assert (fresh.total, fresh.worst, fresh.oldest_age) == (0, None, None)
    assert json.loads(compose([], {"count": 0})) == {"accounts": [], "count": 0}


@pytest.mark.parametrize(
    "limits", [LIMITS, Thresholds(0.1234567, 1.5, 2.0000001), Thresholds(0.001, 0.002, 0.0035)]
)
def test_ages_states_and_counts_agree_with_the_domain_to_the_microsecond(limits: Thresholds):
    """Integer microseconds give the very floats `timedelta.total_seconds()` gives, thresholds included."""
    rng = random.Random(7)
    states = [
        state(i, None)
        if i % 50 == 0
        else state(i, 0, live_data_at=NOW - timedelta(microseconds=rng.randrange(3_000_000)))
        for i in range(1, 2001)
    ]
    scope = FleetView().scope(Snap(1, {s.account: s for s in states}))
    for now in (NOW, NOW + timedelta(microseconds=rng.randrange(10**6))):
        served = [json.loads(t)["freshness"] for t in scope.select(now, limits)[0]]
        expected = [serialize.freshness(s.live_data_at, now, limits) for s in states]
        assert served == expected
        records = [queries.record_of(s) for s in states]
        assert scope.freshness(now, limits) == queries.fleet_freshness(records, now, limits)
