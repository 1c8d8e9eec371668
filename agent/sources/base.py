"""What the sync cycle needs from a source of account data, and nothing about how it gets it.

A source lists accounts, reads their values by a deadline and reports its own health (DESIGN.md
section 10). The cycle and the prober see only this protocol and the domain types: an account read is
an `AccountSnapshot` or a `ReadFailure` with a reason from the closed set, never a transport error.

Kinds: `bridge` (the seed's REST bridge or ours, `agent.sources.bridge`) and `memory` (tests). Room is
left for what the events issues add, as optional methods a source may have (checked with `hasattr`,
never required by the cycle): `read_positions(accounts, deadline)` and `read_deals(accounts, since,
deadline)` for polled sources, and for a streaming kind (MetaAPI) `subscribe(accounts) ->
AsyncIterator[...]` instead of polling `read_accounts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent.domain.accounts import AccountSnapshot, ReadFailure, Reason
from agent.domain.runs import FetchMode

AccountRead = AccountSnapshot | ReadFailure


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

    async def close(self) -> None: ...
