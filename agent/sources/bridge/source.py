"""The bridge as a `Source`: the seed's REST bridge or ours, over `BridgeClient`.

What is bridge-specific stays here: the batch endpoint (`/accounts/live`) is used when the health
document advertises `batch` and falls back to one call per account otherwise (or when the batch call
fails); the cycle's deadline bounds both; a `BridgeError` becomes a `ReadFailure` or a `SourceError`,
and "the bridge is up" is decided here (a listing that came back malformed still means it answers).
Positions and deals are read one account at a time (`/positions`, `/trades`) when the bridge
advertises `positions`; a bridge known not to (the seed's) is never asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import TypeVar

from agent.domain.accounts import Reason
from agent.domain.runs import FetchMode
from agent.sources.base import (
    AccountListing,
    AccountRead,
    AccountReads,
    DealsRead,
    PositionsRead,
    ReadFailure,
    SourceError,
    SourceHealth,
    positions_advertised,
    positions_unavailable,
)
from agent.sources.bridge.client import BridgeClient, BridgeError

log = logging.getLogger("mt5_agent.sync")
T = TypeVar("T")


def _failure(exc: BridgeError) -> ReadFailure:
    return ReadFailure(exc.reason, exc.message, exc.ahead_seconds)


def _source_error(exc: BridgeError, *, answered: bool = True) -> SourceError:
    """The bridge error as the source's (same object: traces keep its type). A bridge that answered
    with something unusable is up (it answers); any other failure means down."""
    exc.reachable = answered and exc.reason is Reason.INVALID_PAYLOAD
    return exc


class BridgeSource:
    kind = "bridge"

    def __init__(
        self, client: BridgeClient, *, name: str = "bridge", use_batch: bool = True, concurrency: int = 16
    ) -> None:
        self.client = client
        self.name = name
        self.use_batch = use_batch
        self.concurrency = concurrency
        self._features: frozenset[str] = frozenset()  # advertised by the last usable health check
        self._positions: bool | None = None  # advertised by the last health document; None: none yet

    async def health(self) -> SourceHealth:
        try:
            health = await self.client.health()
        except BridgeError as exc:
            raise _source_error(exc) from None
        if health.usable:  # an unusable document (a bridge starting or failing) says nothing of features
            self._positions = positions_advertised(health)
        return health

    async def usable_health(self, attempts: int, backoff: float) -> SourceHealth:
        try:
            health = await self.client.health_with_retries(attempts, backoff)
        except BridgeError as exc:
            raise _source_error(exc, answered=False) from None
        # What the next read may use: the cycle's own check, not a probe's in between.
        self._features = health.features
        self._positions = positions_advertised(health)
        return health

    async def list_accounts(self) -> AccountListing:
        try:
            return await self.client.listing()
        except BridgeError as exc:
            raise _source_error(exc) from None

    async def read_accounts(self, accounts: Sequence[int], deadline: float) -> AccountReads:
        results: dict[int, AccountRead] = {}
        mode: FetchMode = "per_account"
        invalid = 0
        at = asyncio.get_running_loop().time() + deadline
        if self.use_batch and "batch" in self._features:
            try:
                async with asyncio.timeout_at(at):
                    batch = await self.client.live_batch()
                mode = "batch"
                results.update(batch.data)
                results.update((a, _failure(e)) for a, e in batch.errors.items())
                invalid = batch.invalid
            except Exception as exc:
                msg = (
                    exc.message
                    if isinstance(exc, BridgeError)
                    else "cycle deadline"
                    if isinstance(exc, TimeoutError)
                    else f"unexpected {type(exc).__name__}"
                )
                log.warning("batch endpoint failed (%s); falling back to one call per account", msg)
        todo = [a for a in accounts if a not in results]
        if todo:
            await self._read_each(todo, results, at, deadline)
        return AccountReads(results=results, fetch_mode=mode, invalid=invalid)

    async def _read_each(
        self, accounts: list[int], results: dict[int, AccountRead], at: float, deadline: float
    ) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        client = self.client

        async def one(account: int) -> None:
            async with sem:
                try:
                    results[account] = await client.account_info(account)
                except BridgeError as exc:
                    results[account] = _failure(exc)
                except Exception as exc:  # whatever raised it, it is this account's failure
                    log.error("account %s: unexpected %s", account, type(exc).__name__, exc_info=exc)
                    results[account] = ReadFailure(
                        Reason.INVALID_PAYLOAD, f"account {account}: unexpected {type(exc).__name__}"
                    )

        tasks = [asyncio.create_task(one(a)) for a in accounts]
        try:
            async with asyncio.timeout_at(at):
                await asyncio.gather(*tasks)
        except TimeoutError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            timeout = ReadFailure(Reason.TIMEOUT, f"no answer within the {deadline:g}s cycle deadline")
            for a in accounts:
                results.setdefault(a, timeout)

    def positions_supported(self, health: SourceHealth | None = None) -> bool:
        return positions_advertised(health) if health is not None else self._positions is True

    async def read_positions(self, account: int, deadline: float | None = None) -> PositionsRead:
        if self._positions is False:
            return positions_unavailable(self.name, account)
        return await self._one(account, "positions", self.client.positions(account), deadline)

    async def read_deals(
        self, account: int, since: datetime, until: datetime, deadline: float | None = None
    ) -> DealsRead:
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
        if self._positions is False:
            return positions_unavailable(self.name, account)
        return await self._one(account, "deals", self.client.deals(account, since, until), deadline)

    async def _one(
        self, account: int, what: str, call: Awaitable[T], deadline: float | None
    ) -> T | ReadFailure:
        """One account's read as its value or its failure: nothing escapes but cancellation."""
        try:
            async with asyncio.timeout(deadline):
                return await call
        except BridgeError as exc:
            return _failure(exc)
        except TimeoutError:
            return ReadFailure(Reason.TIMEOUT, f"account {account}: {what}: no answer within {deadline:g}s")
        except Exception as exc:
            log.error("account %s %s: unexpected %s", account, what, type(exc).__name__, exc_info=exc)
            return ReadFailure(
                Reason.INVALID_PAYLOAD, f"account {account}: {what}: unexpected {type(exc).__name__}"
            )

    async def close(self) -> None:
        await self.client.close()
