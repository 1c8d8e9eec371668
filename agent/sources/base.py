"""What the sync cycle needs from a source of account data, and nothing about how it gets it.

A source lists accounts, reads their values by a deadline and reports its own health (DESIGN.md
section 10). The cycle and the prober see only this protocol and the domain types: an account read is
an `AccountSnapshot` or a `ReadFailure` with a reason from the closed set, never a transport error.

Kinds: `bridge` (the seed's REST bridge or ours, `agent.sources.bridge`) and `memory` (tests).

Positions and deals (DESIGN.md section 11), for the events pipeline: `positions_supported(health)` says
whether the source serves them at all (a bridge advertises `"positions"` in its health `features`; the
seed's bridge advertises nothing and has no such endpoint), so the agent can say once that trade events
are unavailable for it and never poll. `read_positions` and `read_deals` read one account, never raise
for that account's failure, and answer a `ReadFailure` with a reason from the closed set instead (a
source without positions answers `not_found` with `POSITIONS_UNAVAILABLE` in the message). Room is left
for a streaming kind (MetaAPI): `subscribe(accounts) -> AsyncIterator[...]` instead of polling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from agent.domain.accounts import AccountSnapshot, ReadFailure, Reason
from agent.domain.runs import FetchMode
from agent.domain.trades import Deal, PositionsSnapshot

AccountRead = AccountSnapshot | ReadFailure
PositionsRead = PositionsSnapshot | ReadFailure
DealsRead = list[Deal] | ReadFailure

POSITIONS_FEATURE = "positions"  # in a health document's `features`: positions and deals are served
POSITIONS_UNAVAILABLE = "trade events unavailable: the source serves no positions or deals"


class SourceError(Exception):
    """The source as a whole failed (health or listing), with a reason from the closed set.

    `reachable` is the source's own verdict on "it answers": a source that answered with garbage is up
    but unusable (`mt5_bridge_up` stays 1), one that did not answer is down.
    """

    def __init__(self, reason: Reason, message: str, *, reachable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.reachable = reachable


@dataclass(frozen=True)
class SourceHealth:
    status: str
    available: bool  # the terminal behind the source (MT5) says it is available
    features: frozenset[str] = frozenset()
    response_time: float = 0.0

    @property
    def usable(self) -> bool:
        return self.available and self.status in ("healthy", "degraded")


def positions_advertised(health: SourceHealth | None) -> bool:
    """Whether `health` advertises positions (the test every bridge-like source applies)."""
    return health is not None and POSITIONS_FEATURE in health.features


def positions_unavailable(source: str, account: int) -> ReadFailure:
    """The answer of a source without positions, for any account (no request is made)."""
    return ReadFailure(Reason.NOT_FOUND, f"account {account}: {POSITIONS_UNAVAILABLE} (source {source})")


@dataclass(frozen=True)
class ListedAccount:
    account: int
    name: str | None = None
    server: str | None = None
    currency: str | None = None


@dataclass
class AccountListing:
    """The account list: valid entries, and how many entries were skipped as malformed."""

    accounts: list[ListedAccount] = field(default_factory=list)
    invalid: int = 0


@dataclass
class AccountReads:
    """One read of many accounts: each asked account's snapshot or failure (an account missing here
    got no answer in time), how they were read, and malformed entries skipped in a batch answer."""

    results: Mapping[int, AccountRead]
    fetch_mode: FetchMode
    invalid: int = 0


@runtime_checkable
class Source(Protocol):
    name: str  # unique among an agent's sources (`bridge` for MT5_AGENT_BRIDGE_URL)
    kind: str  # `bridge`, `memory`, ...

    async def health(self) -> SourceHealth:
        """One health check, no retry; raises SourceError when the source does not answer."""
        ...

    async def usable_health(self, attempts: int, backoff: float) -> SourceHealth:
        """Health until usable, `attempts` times with jittered exponential backoff; SourceError if never."""
        ...

    async def list_accounts(self) -> AccountListing:
        """The accounts the source serves; SourceError when there is no list at all."""
        ...

    async def read_accounts(self, accounts: Sequence[int], deadline: float) -> AccountReads:
        """Every account's values within `deadline` seconds; never raises for one account's failure.
        Accounts without an answer by then are `ReadFailure(Reason.TIMEOUT)`."""
        ...

    def positions_supported(self, health: SourceHealth | None = None) -> bool:
        """Whether positions and deals can be read: from `health`, or when None from the source's own
        last usable health check (False before any)."""
        ...

    async def read_positions(self, account: int, deadline: float | None = None) -> PositionsRead:
        """One account's open positions, or its failure (`timeout` past `deadline` seconds)."""
        ...

    async def read_deals(
        self, account: int, since: datetime, until: datetime, deadline: float | None = None
    ) -> DealsRead:
        """One account's deals with `since <= time <= until` (tz-aware UTC), sorted as the source
        sent them (time, then ticket, for ours), or its failure."""
        ...

    async def close(self) -> None: ...
