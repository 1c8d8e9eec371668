"""The bridge as a `Source`: the seed's REST bridge or ours, over `BridgeClient`.

What is bridge-specific stays here: the batch endpoint (`/accounts/live`) is used when the health
document advertises `batch` and falls back to one call per account otherwise (or when the batch call
fails); the cycle's deadline bounds both; a `BridgeError` becomes a `ReadFailure` or a `SourceError`,
and "the bridge is up" is decided here (a listing that came back malformed still means it answers).
Positions and deals are read one account at a time (`/positions`, `/trades`) when the bridge
advertises `positions`; a bridge known not to (the seed's) is never asked. Every account's positions
(`read_positions_many`) come from one batch request (`/accounts/positions`) when the bridge advertises
`positions_batch`, see `read_positions_many` for how a slow terminal is kept from holding the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from agent.domain.accounts import AccountSnapshot, BrokerLevels, Reason
from agent.domain.runs import FetchMode
from agent.sources.base import (
    POSITIONS_BATCH_FEATURE,
    AccountListing,
    AccountRead,
    AccountReads,
    DealsRead,
    PositionsRead,
    ReadFailure,
    SourceError,
    SourceHealth,
    positions_advertised,
    positions_each,
    positions_unavailable,
)
from agent.sources.bridge.client import BridgeClient, BridgeError

log = logging.getLogger("mt5_agent.sync")
T = TypeVar("T")

BATCH_SHARE = 0.5  # of a positions deadline, for the batch request (the rest: one read per account)
MAX_BATCH = 500  # accounts per batch request (a query string of some 5 kB)


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
        self._positions_batch = False  # `positions_batch` advertised by the last usable health document
        self._slow: set[int] = set()  # accounts read one by one (their terminal held a batch up)
        self._batch_failing = False  # the last batch request failed (said once)
        self.batch_requests = 0  # positions batch requests made (for tests and benches)
        self._shared: dict[int, str] = {}  # account -> its terminal, when it serves others too (listing)
        self._listed = 0  # accounts in the last listing: a read of fewer asks the batch for those only
        # account -> the broker's margin levels from its last live read that had them (issue 14). Memory
        # only; accounts no longer read are dropped at the next cycle. The risk book reads it.
        self.broker_levels: dict[int, BrokerLevels] = {}

    @property
    def broker_utc_offsets(self) -> Mapping[int, int]:
        """account -> its terminal's UTC offset in minutes (the bridge's health document: issue 14's broker
        days); an account its bridge does not list there is absent (unknown)."""
        return self.client.utc_offsets

    async def health(self) -> SourceHealth:
        try:
            health = await self.client.health()
        except BridgeError as exc:
            raise _source_error(exc) from None
        if health.usable:  # an unusable document (a bridge starting or failing) says nothing of features
            self._positions = positions_advertised(health)
            self._positions_batch = POSITIONS_BATCH_FEATURE in health.features
        return health

    async def usable_health(self, attempts: int, backoff: float) -> SourceHealth:
        try:
            health = await self.client.health_with_retries(attempts, backoff)
        except BridgeError as exc:
            raise _source_error(exc, answered=False) from None
        # What the next read may use: the cycle's own check, not a probe's in between.
        self._features = health.features
        self._positions = positions_advertised(health)
        self._positions_batch = POSITIONS_BATCH_FEATURE in health.features
        return health

    async def list_accounts(self) -> AccountListing:
        try:
            listing = await self.client.listing()
        except BridgeError as exc:
            raise _source_error(exc) from None
        self._listed = len(listing.accounts)
        served = Counter(a.terminal for a in listing.accounts if a.terminal)
        self._shared = {
            a.account: a.terminal for a in listing.accounts if a.terminal and served[a.terminal] > 1
        }
        return listing

    def shared_terminal(self, account: int) -> str | None:
        return self._shared.get(account)

    async def read_accounts(self, accounts: Sequence[int], deadline: float) -> AccountReads:
        results: dict[int, AccountRead] = {}
        mode: FetchMode = "per_account"
        invalid = 0
        at = asyncio.get_running_loop().time() + deadline
        if self.use_batch and "batch" in self._features:
            # A shard reads only its own accounts: asking the bridge for the rest costs both sides ~1/N.
            only = list(accounts) if len(set(accounts)) < self._listed else None
            try:
                async with asyncio.timeout_at(at):
                    batch = await self.client.live_batch(only)
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
        self._keep_levels(accounts, results)
        return AccountReads(results=results, fetch_mode=mode, invalid=invalid)

    def _keep_levels(self, accounts: Sequence[int], results: dict[int, AccountRead]) -> None:
        """The broker levels of this cycle's live reads; a failed or stored-only read keeps the last ones
        (a broker's setting, not a reading that ages)."""
        levels = self.broker_levels
        missing = [a for a in levels if a not in results]
        if missing:
            listed = set(accounts)
            for account in missing:
                if account not in listed:
                    del levels[account]
        for account, res in results.items():
            if type(res) is AccountSnapshot and res.live:
                if res.broker_levels is not None:
                    levels[account] = res.broker_levels
                else:
                    levels.pop(account, None)

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

    async def read_positions_many(
        self, accounts: Sequence[int], deadline: float
    ) -> AsyncIterator[tuple[int, PositionsRead]]:
        """Every account's positions, each yielded as it is known, all within `deadline` seconds.

        With `positions_batch` advertised (and `use_batch`), one request for all (`MAX_BATCH` a
        request) instead of one per account. A batch answers when its slowest terminal has, so it gets
        `BATCH_SHARE` of the deadline: when it fails or overruns that, its accounts are read one by one
        in the time left, and those whose own read then times out or takes more than that share (a
        stuck or overloaded terminal) are left out of later batches and read one by one, so they never
        hold the others up; each rejoins the batch once its own read is quick again. Accounts the batch
        answer leaves out are read one by one too. Without the feature: one read per account."""
        accounts = list(dict.fromkeys(accounts))
        if self._positions is False:
            for account in accounts:
                yield account, positions_unavailable(self.name, account)
            return
        if not (self.use_batch and self._positions_batch):
            async for item in positions_each(self, accounts, deadline, self.concurrency):
                yield item
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + deadline
        queue: asyncio.Queue[tuple[int, PositionsRead]] = asyncio.Queue()
        slow_after = deadline * BATCH_SHARE
        batched = [a for a in accounts if a not in self._slow]
        alone = [a for a in accounts if a in self._slow]

        async def each(group: list[int]) -> None:
            """One read per account; who is slow is learnt here."""
            sem = asyncio.Semaphore(self.concurrency)

            async def one(account: int) -> None:
                async with sem:
                    started = time.monotonic()
                    left = max(0.001, at - loop.time())
                    result = await self.read_positions(account, left)
                    took = time.monotonic() - started
                    timed_out = isinstance(result, ReadFailure) and result.reason is Reason.TIMEOUT
                    if timed_out or took > slow_after:
                        if account not in self._slow:
                            log.warning(
                                "positions: account %d read alone from now on (%s in %.2fs)",
                                account,
                                "timed out" if timed_out else "answered",
                                took,
                            )
                        self._slow.add(account)
                    elif account in self._slow:
                        self._slow.discard(account)
                        log.info("positions: account %d back in the batch", account)
                    queue.put_nowait((account, result))

            await asyncio.gather(*(one(a) for a in group))

        async def batch(group: list[int]) -> None:
            left = max(0.001, min(slow_after, at - loop.time()))
            self.batch_requests += 1
            try:
                async with asyncio.timeout(left):
                    answer = await self.client.positions_batch(group)
            except Exception as exc:
                msg = (
                    exc.message
                    if isinstance(exc, BridgeError)
                    else f"no answer within {left:.2f}s"
                    if isinstance(exc, TimeoutError)
                    else f"unexpected {type(exc).__name__}"
                )
                if not self._batch_failing:
                    log.warning("positions batch failed (%s); reading its accounts one by one", msg)
                self._batch_failing = True
                await each(group)
                return
            if self._batch_failing:
                log.info("positions batch answers again")
            self._batch_failing = False
            for account, snap in answer.data.items():
                queue.put_nowait((account, snap))
            for account, err in answer.errors.items():
                queue.put_nowait((account, _failure(err)))
            missing = [a for a in group if a not in answer.data and a not in answer.errors]
            if missing:
                await each(missing)

        parts = [batch(batched[i : i + MAX_BATCH]) for i in range(0, len(batched), MAX_BATCH)]
        if alone:
            parts.append(each(alone))
        worker = asyncio.ensure_future(asyncio.gather(*parts))
        left_over = set(accounts)
        try:
            while left_over:
                try:
                    async with asyncio.timeout_at(at + 0.05):
                        account, result = await queue.get()
                except TimeoutError:
                    break
                if account in left_over:
                    left_over.discard(account)
                    yield account, result
            for account in accounts:
                if account in left_over:
                    yield (
                        account,
                        ReadFailure(
                            Reason.TIMEOUT, f"account {account}: positions: no answer within {deadline:g}s"
                        ),
                    )
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

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
