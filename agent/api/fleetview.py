"""Whole-fleet answers from cached pieces (issue 17): an account is serialised once per change of its
read-model entry, aggregates once per fleet version, and only what moves with time is computed per
request.

- `Piece`: one account's allow-listed JSON without `freshness` (built by `agent.api.serialize`, the
  security boundary), its converted fields (for the portfolio sums), its live time and data source.
  Cached against the fleet's `AccountState` object: entries are immutable and replaced when they
  change, so `is` tells an unchanged one and only a replaced one is serialised again.
- `Scope`: the pieces one caller sees (the whole fleet or one client's) in one fleet version, with the
  live times sorted, so the state counts, worst state and oldest age at any instant are three
  bisections (`freshness`), and the portfolio totals computed once.
- Per request, only the freshness of each listed account (one subtraction, one classification), and
  the ETag: the fleet version plus how many accounts have crossed each threshold, which within a
  version says exactly which state every account is in (the accounts past a threshold are a prefix
  of the live times in order). Ages move without changing it: a 304 means values and states are
  unchanged, not the ages (the OpenAPI document says so).

No aiohttp here.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import math
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from agent.api.queries import AccountState, FleetFreshness, record_of
from agent.api.serialize import account_fields, live_time, portfolio_totals
from agent.domain.freshness import STATES, Thresholds

_FRESH, _ACCEPTABLE, _DEGRADED, _CRITICAL = (s.value for s in STATES)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Snapshot(Protocol):
    """What the view reads of a fleet snapshot (agent.sync.fleet.FleetSnapshot)."""

    @property
    def version(self) -> int: ...
    @property
    def accounts(self) -> Mapping[int, AccountState]: ...


@dataclass(frozen=True, slots=True)
class Piece:
    account: int
    client_id: str | None  # for scoping only; not in `head`
    data_source: str | None  # as served (a DataSource value or null)
    live_us: int | None  # what the freshness is computed from: microseconds since the epoch
    fields: Mapping[str, Any]  # the allow-listed fields, converted (read by the portfolio sums)
    head: str  # the account's JSON object without its end, ending with `"freshness":`


def make_piece(state: AccountState) -> Piece:
    record = record_of(state)
    fields = account_fields(record)
    text = json.dumps(fields, separators=(",", ":"), allow_nan=False)
    live = live_time(record)
    return Piece(
        state.account, state.client_id, fields["data_source"], None if live is None else micros(live),
        fields, text[:-1] + ',"freshness":',
    )  # fmt: skip


def micros(t: datetime) -> int:
    """Microseconds since the epoch, exactly: an age from two of these divided by 1e6 is the same float
    as `timedelta.total_seconds()` of the two datetimes' difference."""
    return (t - _EPOCH) // _MICROSECOND


def _min_age_us(seconds: float) -> int:
    """The least age in microseconds whose seconds (`us / 1e6`) reach `seconds`."""
    us = math.ceil(seconds * 1e6)
    while us / 1e6 >= seconds:
        us -= 1
    while us / 1e6 < seconds:
        us += 1
    return us


_NEVER_TAIL = '{"state":"critical","age_seconds":null}}'


def account_texts(pieces: Iterable[Piece], now_us: int, t: Thresholds) -> list[str]:
    """Each account's JSON object with its freshness at `now_us`: the same values as
    `serialize.freshness` (age clamped at 0, rounded to ms; `%.3f` is `round(age, 3)` as text)."""
    a, d, c = t.acceptable_after, t.degraded_after, t.critical_after
    out: list[str] = []
    append = out.append
    for p in pieces:
        live = p.live_us
        if live is None:
            append(p.head + _NEVER_TAIL)
            continue
        age = (now_us - live) / 1e6
        if age < 0:
            age = 0.0
        name = _CRITICAL if age >= c else _DEGRADED if age >= d else _ACCEPTABLE if age >= a else _FRESH
        append(f'{p.head}{{"state":"{name}","age_seconds":{age:.3f}}}}}')
    return out


def state_of(live_us: int | None, now_us: int, t: Thresholds) -> str:
    if live_us is None:
        return _CRITICAL
    return t.classify(max(0.0, (now_us - live_us) / 1e6)).value


class Scope:
    """The pieces one caller sees in one fleet version, ordered by account."""

    def __init__(self, version: int, pieces: Sequence[Piece]) -> None:
        self.version = version
        self.pieces = pieces
        self.numbers = [p.account for p in pieces]
        self._lives = sorted(p.live_us for p in pieces if p.live_us is not None)
        self._never = len(pieces) - len(self._lives)
        self._totals: tuple[list[dict[str, Any]], list[int]] | None = None

    def __len__(self) -> int:
        return len(self.pieces)

    def crossed(self, now: datetime, t: Thresholds) -> tuple[int, int, int]:
        """Accounts at or past the acceptable, degraded and critical thresholds at `now` (never synced
        ones are past all three): those whose live time is at most now minus the threshold."""
        lives, never, now_us = self._lives, self._never, micros(now)
        return (
            never + bisect.bisect_right(lives, now_us - _min_age_us(t.acceptable_after)),
            never + bisect.bisect_right(lives, now_us - _min_age_us(t.degraded_after)),
            never + bisect.bisect_right(lives, now_us - _min_age_us(t.critical_after)),
        )

    def freshness(self, now: datetime, t: Thresholds) -> FleetFreshness:
        n = len(self.pieces)
        a, d, c = self.crossed(now, t)
        by_state = {_FRESH: n - a, _ACCEPTABLE: a - d, _DEGRADED: d - c, _CRITICAL: c}
        worst = next((s for s in reversed(STATES) if by_state[s.value]), None)
        oldest = None
        if self._lives and not self._never:
            oldest = round(max(0.0, (micros(now) - self._lives[0]) / 1e6), 3)
        return FleetFreshness(n, by_state, worst, oldest)

    def totals(self) -> tuple[list[dict[str, Any]], list[int]]:
        """Per-currency sums and the accounts not summed (`serialize.portfolio_totals`), once."""
        if self._totals is None:
            self._totals = portfolio_totals([dict(p.fields) for p in self.pieces])
        return self._totals

    def select(
        self,
        now: datetime,
        t: Thresholds,
        *,
        state: str | None = None,
        source: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> tuple[list[str], int | None]:
        """The accounts' JSON texts (after account `after`, in `state`, from `source`, at most `limit`)
        and the cursor of the next page (None: no account follows)."""
        pieces: Sequence[Piece] = self.pieces
        if after is not None:
            pieces = self.pieces[bisect.bisect_right(self.numbers, after) :]
        now_us = micros(now)
        if state is None and source is None and limit is None:
            return account_texts(pieces, now_us, t), None  # the whole list: the fast path
        chosen: list[Piece] = []
        for p in pieces:
            if source is not None and p.data_source != source:
                continue
            if state is not None and state_of(p.live_us, now_us, t) != state:
                continue
            if limit is not None and len(chosen) == limit:
                return account_texts(chosen, now_us, t), chosen[-1].account
            chosen.append(p)
        return account_texts(chosen, now_us, t), None


class FleetView:
    """The cache of pieces and scopes over the fleet's successive snapshots (one per app)."""

    def __init__(self, make: Callable[[AccountState], Piece] = make_piece) -> None:
        self._make = make
        self._pieces: dict[int, tuple[AccountState, Piece]] = {}
        self._version: int | None = None
        self._scopes: dict[str | None, Scope] = {}
        self._building: dict[tuple[int, str | None], asyncio.Future[Scope]] = {}
        self._secret = secrets.token_bytes(16)  # ETags differ across restarts and say nothing of scopes

    def piece(self, state: AccountState) -> Piece:
        hit = self._pieces.get(state.account)
        if hit is not None and hit[0] is state:
            return hit[1]
        made = self._make(state)
        self._pieces[state.account] = (state, made)
        return made

    def cached(self, snapshot: Snapshot, client_id: str | None = None) -> Scope | None:
        """The scope if already built for this snapshot's version."""
        return self._scopes.get(client_id) if snapshot.version == self._version else None

    def scope(self, snapshot: Snapshot, client_id: str | None = None) -> Scope:
        """The whole fleet (client_id None) or one client's accounts, in the snapshot's version. Safe
        to call from a worker thread: a race costs a piece serialised twice, never a wrong scope."""
        if snapshot.version != self._version:
            if self._version is not None and snapshot.version < self._version:
                return self._build(snapshot, client_id)  # an older snapshot than cached: not kept
            self._scopes = {}
            self._version = snapshot.version
            accounts = snapshot.accounts
            if any(a not in accounts for a in list(self._pieces)):
                self._pieces = {a: hit for a, hit in list(self._pieces.items()) if a in accounts}
        scopes = self._scopes
        found = scopes.get(client_id)
        if found is None:
            found = scopes[client_id] = self._build(snapshot, client_id)
        return found

    def _build(self, snapshot: Snapshot, client_id: str | None) -> Scope:
        states: Iterable[AccountState] = snapshot.accounts.values()
        if client_id is not None:
            states = [s for s in states if s.client_id == client_id]
        return Scope(snapshot.version, [self.piece(s) for s in states])

    async def build(self, snapshot: Snapshot, client_id: str | None = None) -> Scope:
        """`scope` in a worker thread (a version can replace a thousand entries: tens of ms of
        serialising, which would stall every other request on the loop), one build per version and
        client however many requests wait for it."""
        key = (snapshot.version, client_id)
        task = self._building.get(key)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self.scope, snapshot, client_id))
            self._building[key] = task
            task.add_done_callback(lambda _: self._building.pop(key, None))
        return await asyncio.shield(task)

    def etag(self, scope: Scope, now: datetime, t: Thresholds, key: str) -> str:
        """A weak validator: the same while the version, every account's state and `key` (the caller's
        scope and the query) are; ages move under it."""
        crossed = "-".join(map(str, scope.crossed(now, t)))
        digest = hashlib.blake2b(key.encode(), key=self._secret, digest_size=8).hexdigest()
        return f'W/"{scope.version}-{crossed}-{digest}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2) of an If-None-Match header with our ETag."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == ours for t in if_none_match.split(","))


def compose(accounts: Sequence[str], rest: Mapping[str, Any]) -> str:
    """`{"accounts": [...], **rest}` from the accounts' JSON texts."""
    tail = json.dumps(rest, separators=(",", ":"), allow_nan=False)
    return '{"accounts":[' + ",".join(accounts) + "]," + tail[1:]
