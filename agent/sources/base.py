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

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from agent.domain.accounts import AccountSnapshot, ReadFailure, Reason
from agent.domain.runs import FetchMode
from agent.domain.trades import Deal, PositionsSnapshot

AccountRead = AccountSnapshot | ReadFailure
PositionsRead = PositionsSnapshot | ReadFailure
DealsRead = list[Deal] | ReadFailure

log = logging.getLogger("mt5_agent.sources")

POSITIONS_FEATURE = "positions"  # in a health document's `features`: positions and deals are served
POSITIONS_BATCH_FEATURE = "positions_batch"  # every account's positions in one request
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
    terminal: str | None = None  # the terminal serving it, when the source says (ours does)


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

    def shared_terminal(self, account: int) -> str | None:
        """The terminal serving `account` when it also serves other accounts (so each of their reads may
        cost a login: the poller reads such accounts one after another, each one's positions and deals
        together), from the last listing; None when the account has its terminal to itself or the source
        does not say."""
        ...

    def read_positions_many(
        self, accounts: Sequence[int], deadline: float
    ) -> AsyncIterator[tuple[int, PositionsRead]]:
        """Every asked account's positions, each yielded as soon as it is known (any order, each account
        once), all within `deadline` seconds: an account without an answer by then is yielded as a
        `timeout` failure. One request for all where the source can (`positions_each` otherwise)."""
        ...

    async def read_deals(
        self, account: int, since: datetime, until: datetime, deadline: float | None = None
    ) -> DealsRead:
        """One account's deals with `since <= time <= until` (tz-aware UTC), sorted as the source
        sent them (time, then ticket, for ours), or its failure."""
        ...

    async def close(self) -> None: ...


class _ReadsPositions(Protocol):
    async def read_positions(self, account: int, deadline: float | None = None) -> PositionsRead: ...


async def positions_each(
    source: _ReadsPositions, accounts: Sequence[int], deadline: float, concurrency: int = 16
) -> AsyncIterator[tuple[int, PositionsRead]]:
    """`read_positions_many` as one read per account (at most `concurrency` at once), each yielded as it
    completes; what is still unanswered at `deadline` is yielded as a timeout failure. A consumer that
    stops early cancels the reads left."""
    if not accounts:
        return
    sem = asyncio.Semaphore(concurrency)
    at = asyncio.get_running_loop().time() + deadline

    async def one(account: int) -> tuple[int, PositionsRead]:
        async with sem:
            left = max(0.001, at - asyncio.get_running_loop().time())
            return account, await source.read_positions(account, left)

    tasks = {asyncio.ensure_future(one(a)): a for a in dict.fromkeys(accounts)}
    try:
        pending = set(tasks)
        while pending:
            left = at - asyncio.get_running_loop().time()
            done, pending = await asyncio.wait(
                pending, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # the deadline passed: what is left times out
                break
            for task in done:
                if task.cancelled() or task.exception() is not None:
                    # a read that raises is a bug: that account's failure, as a bridge source reports it
                    exc = None if task.cancelled() else task.exception()
                    what = "cancelled" if exc is None else f"unexpected {type(exc).__name__}"
                    if exc is not None:
                        log.error("account %s positions: %s", tasks[task], what, exc_info=exc)
                    yield tasks[task], ReadFailure(Reason.INVALID_PAYLOAD, f"account {tasks[task]}: {what}")
                else:
                    yield task.result()
        for task in pending:
            account = tasks[task]
            yield (
                account,
                ReadFailure(Reason.TIMEOUT, f"account {account}: positions: no answer within {deadline:g}s"),
            )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
