"""An in-memory `Source`: the cycle's tests without HTTP (and a model of what a source must do).

Everything is settable between (or during) cycles: the accounts and their values, per-account
failures, the health document or an outage, a listing failure, malformed-entry counts, latency. Reads
honour the deadline the way the bridge source does: an account that has not answered in time is a
`ReadFailure(Reason.TIMEOUT)`.

Positions and deals are scripted per account (`set_positions`, `add_deals`, `fail_positions`,
`fail_deals`; `position` and `deal` build valid domain values with defaults) so the events detector
and poller can be driven without HTTP. Taking `positions` out of `health_status.features` makes it a
source without positions, like the seed's bridge.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.domain.accounts import AccountSnapshot, AccountValues, ReadFailure, Reason
from agent.domain.runs import FetchMode
from agent.domain.trades import (
    Deal,
    DealEntry,
    DealType,
    Position,
    PositionsSnapshot,
    PositionType,
)
from agent.sources.base import (
    POSITIONS_FEATURE,
    AccountListing,
    AccountRead,
    AccountReads,
    DealsRead,
    ListedAccount,
    PositionsRead,
    SourceError,
    SourceHealth,
    positions_advertised,
    positions_each,
    positions_unavailable,
)

_T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def position(account: int, identifier: int, **kw: Any) -> Position:
    """A valid open position with defaults (a 0.1-lot EURUSD buy); `kw` sets any field."""
    fields: dict[str, Any] = {
        "ticket": identifier,
        "time": _T0,
        "time_update": kw.get("time", _T0),
        "type": PositionType.BUY,
        "magic": 0,
        "reason": 0,
        "volume": 0.1,
        "price_open": 1.1,
        "sl": 0.0,
        "tp": 0.0,
        "price_current": 1.1,
        "swap": 0.0,
        "profit": 0.0,
        "symbol": "EURUSD",
        "comment": "",
    }
    fields.update(kw)
    return Position(account=account, identifier=identifier, **fields)


def deal(account: int, ticket: int, position_id: int, **kw: Any) -> Deal:
    """A valid deal with defaults (a 0.1-lot EURUSD buy opening `position_id`); `kw` sets any field."""
    fields: dict[str, Any] = {
        "order": ticket,
        "time": _T0,
        "type": DealType.BUY,
        "entry": DealEntry.IN,
        "volume": 0.1,
        "price": 1.1,
        "commission": 0.0,
        "swap": 0.0,
        "profit": 0.0,
        "fee": 0.0,
        "symbol": "EURUSD",
    }
    fields.update(kw)
    return Deal(account=account, ticket=ticket, position_id=position_id, **fields)


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
        self.health_status = SourceHealth(
            status="healthy", available=True, features=frozenset({"batch", POSITIONS_FEATURE})
        )
        self.down: SourceError | None = None  # health and listing fail with it
        self.listing_error: SourceError | None = None
        self.invalid_listing = 0  # malformed listing entries to report
        self.invalid_reads = 0  # malformed read entries to report
        self.concurrency = 16  # positions reads at once in `read_positions_many`
        self.terminals: dict[int, str] = {}  # account -> the terminal it shares with others (scripted)
        self.calls: list[str] = []  # "health", "list", "read", "positions", "deals",
        # "positions_many" in order
        self.positions: dict[int, tuple[Position, ...]] = {}
        self.positions_as_of: dict[int, datetime] = {}  # absent: the time of the read
        self.deals: dict[int, dict[int, Deal]] = {}  # account -> ticket -> deal
        self.positions_failures: dict[int, ReadFailure] = {}
        self.deals_failures: dict[int, ReadFailure] = {}

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

    def set_positions(
        self, account: int, positions: Iterable[Position], as_of: datetime | None = None
    ) -> None:
        """The account's open positions from now on (replacing the previous set); `as_of` fixed, or
        None for the time of each read. Clears a scripted positions failure."""
        items = tuple(positions)
        if any(p.account != account for p in items):
            raise ValueError(f"a position of another account given for account {account}")
        self.positions[account] = items
        if as_of is None:
            self.positions_as_of.pop(account, None)
        else:
            self.positions_as_of[account] = as_of
        self.positions_failures.pop(account, None)

    def add_deals(self, account: int, *deals: Deal) -> None:
        """Deals join the account's history (a ticket given again replaces its deal)."""
        if any(d.account != account for d in deals):
            raise ValueError(f"a deal of another account given for account {account}")
        history = self.deals.setdefault(account, {})
        for d in deals:
            history[d.ticket] = d

    def fail_positions(self, account: int, reason: Reason | None, message: str = "") -> None:
        """The account's positions reads fail with `reason` (None: they succeed again)."""
        self._script(self.positions_failures, account, reason, message or f"account {account}: positions")

    def fail_deals(self, account: int, reason: Reason | None, message: str = "") -> None:
        """The account's deals reads fail with `reason` (None: they succeed again)."""
        self._script(self.deals_failures, account, reason, message or f"account {account}: deals")

    @staticmethod
    def _script(failures: dict[int, ReadFailure], account: int, reason: Reason | None, msg: str) -> None:
        if reason is None:
            failures.pop(account, None)
        else:
            failures[account] = ReadFailure(reason, f"{msg}: {reason}")

    def _known(self, account: int) -> bool:
        return account in self.accounts or account in self.failures or account in self.positions

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

    def positions_supported(self, health: SourceHealth | None = None) -> bool:
        return positions_advertised(health if health is not None else self.health_status)

    async def _positions_delay(self, account: int, deadline: float | None) -> bool:
        """Wait the account's latency; False when it exceeds the deadline (a timeout)."""
        entry = self.accounts.get(account)
        latency = entry.latency if entry is not None else 0.0
        if deadline is not None and latency > deadline:
            await asyncio.sleep(deadline)
            return False
        if latency:
            await asyncio.sleep(latency)
        return True

    async def read_positions(self, account: int, deadline: float | None = None) -> PositionsRead:
        self.calls.append("positions")
        if not self.positions_supported():
            return positions_unavailable(self.name, account)
        if not await self._positions_delay(account, deadline):
            msg = f"account {account}: positions: no answer within {deadline:g}s"
            return ReadFailure(Reason.TIMEOUT, msg)
        failure = self.positions_failures.get(account)
        if failure is not None:
            return failure
        if not self._known(account):
            return ReadFailure(Reason.NOT_FOUND, f"account {account}: not found")
        as_of = self.positions_as_of.get(account) or self.clock()
        return PositionsSnapshot(account=account, as_of=as_of, positions=self.positions.get(account, ()))

    def shared_terminal(self, account: int) -> str | None:
        return self.terminals.get(account)

    def read_positions_many(
        self, accounts: Sequence[int], deadline: float
    ) -> AsyncIterator[tuple[int, PositionsRead]]:
        """One read per account (`positions_each`), so scripted latencies and failures apply as ever."""
        self.calls.append("positions_many")
        return positions_each(self, accounts, deadline, self.concurrency)

    async def read_deals(
        self, account: int, since: datetime, until: datetime, deadline: float | None = None
    ) -> DealsRead:
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
        self.calls.append("deals")
        if not self.positions_supported():
            return positions_unavailable(self.name, account)
        if not await self._positions_delay(account, deadline):
            return ReadFailure(Reason.TIMEOUT, f"account {account}: deals: no answer within {deadline:g}s")
        failure = self.deals_failures.get(account)
        if failure is not None:
            return failure
        if not self._known(account) and account not in self.deals:
            return ReadFailure(Reason.NOT_FOUND, f"account {account}: not found")
        history = self.deals.get(account, {}).values()
        return sorted((d for d in history if since <= d.time <= until), key=lambda d: (d.time, d.ticket))

    async def close(self) -> None:
        return None
