"""An in-memory `Source`: the cycle's tests without HTTP (and a model of what a source must do).

Everything is settable between (or during) cycles: the accounts and their values, per-account
failures, the health document or an outage, a listing failure, malformed-entry counts, latency. Reads
honour the deadline the way the bridge source does: an account that has not answered in time is a
`ReadFailure(Reason.TIMEOUT)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.domain.accounts import AccountSnapshot, AccountValues, ReadFailure, Reason
from agent.domain.runs import FetchMode
from agent.sources.base import (
    AccountListing,
    AccountRead,
    AccountReads,
    ListedAccount,
    SourceError,
    SourceHealth,
)


@dataclass
class MemoryAccount:
    values: AccountValues
    live: bool = True  # False: the seed's stored-data fallback
    name: str | None = None
    server: str | None = None
    read_at: datetime | None = None  # None: the time of the read
    latency: float = 0.0  # seconds this account takes to answer


class MemorySource:
    kind = "memory"

    def __init__(
        self,
        name: str = "memory",
        *,
        batch: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.batch = batch  # the fetch mode reported: "batch" or "per_account"
        self.clock = clock
        self.accounts: dict[int, MemoryAccount] = {}
        self.failures: dict[int, ReadFailure] = {}  # accounts whose read fails (listed all the same)
        self.health_status = SourceHealth(status="healthy", available=True, features=frozenset({"batch"}))
        self.down: SourceError | None = None  # health and listing fail with it
        self.listing_error: SourceError | None = None
        self.invalid_listing = 0  # malformed listing entries to report
        self.invalid_reads = 0  # malformed read entries to report
        self.calls: list[str] = []  # "health", "list", "read" in order

    # Set-up -------------------------------------------------------------------------------------
    def set(self, account: int, balance: float = 1000.0, **kw: object) -> MemoryAccount:
        """Add or replace an account: `balance` and any AccountValues field, plus MemoryAccount's."""
        value_fields = AccountValues.__dataclass_fields__
        values = AccountValues(balance=balance, **{k: v for k, v in kw.items() if k in value_fields})  # type: ignore[arg-type]
        rest = {k: v for k, v in kw.items() if k not in value_fields}
        self.accounts[account] = entry = MemoryAccount(values=values, **rest)  # type: ignore[arg-type]
        self.failures.pop(account, None)
        return entry

    def fail(
        self, account: int, reason: Reason, message: str = "", ahead_seconds: float | None = None
    ) -> None:
        """The account stays listed but its read fails with `reason`."""
        self.failures[account] = ReadFailure(reason, message or f"account {account}: {reason}", ahead_seconds)

    def remove(self, account: int) -> None:
        self.accounts.pop(account, None)
        self.failures.pop(account, None)

    # Source -------------------------------------------------------------------------------------
    async def health(self) -> SourceHealth:
        self.calls.append("health")
        if self.down is not None:
            raise self.down
        return self.health_status

    async def usable_health(self, attempts: int, backoff: float) -> SourceHealth:
        last: SourceError | None = None
        for _ in range(max(attempts, 1)):
            try:
                health = await self.health()
            except SourceError as exc:
                last = exc
                continue
            if health.usable:
                return health
            last = SourceError(Reason.HTTP_STATUS, f"{self.kind} reports {health.status[:32]!r}")
        assert last is not None
        raise last

    async def list_accounts(self) -> AccountListing:
        self.calls.append("list")
        if self.down is not None:
            raise self.down
        if self.listing_error is not None:
            raise self.listing_error
        listed = sorted(self.accounts.keys() | self.failures.keys())
        entries = [self.accounts.get(a) for a in listed]
        return AccountListing(
            accounts=[
                ListedAccount(a, e.name if e else None, e.server if e else None)
                for a, e in zip(listed, entries, strict=True)
            ],
            invalid=self.invalid_listing,
        )

    async def read_accounts(self, accounts: Sequence[int], deadline: float) -> AccountReads:
        self.calls.append("read")
        results: dict[int, AccountRead] = {}

        async def one(account: int) -> None:
            failure = self.failures.get(account)
            entry = self.accounts.get(account)
            if entry is not None and entry.latency:
                await asyncio.sleep(entry.latency)
            if failure is not None:
                results[account] = failure
            elif entry is None:
                results[account] = ReadFailure(Reason.NOT_FOUND, f"account {account}: not found")
            else:
                read_at = (entry.read_at or self.clock()) if entry.live else None
                results[account] = AccountSnapshot(
                    values=entry.values,
                    live=entry.live,
                    read_at=read_at,
                    name=entry.name,
                    server=entry.server,
                )

        tasks = [asyncio.create_task(one(a)) for a in accounts]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=deadline)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        timeout = ReadFailure(Reason.TIMEOUT, f"no answer within the {deadline:g}s cycle deadline")
        for a in accounts:
            results.setdefault(a, timeout)
        mode: FetchMode = "batch" if self.batch else "per_account"
        return AccountReads(results=results, fetch_mode=mode, invalid=self.invalid_reads)

    async def close(self) -> None:
        return None
