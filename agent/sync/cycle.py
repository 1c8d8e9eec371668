"""The sync cycle over a source: health check, account list, every account's values, one store write.

One account failing never stops the others; nothing invalid is ever written; cycles never overlap.
The cycle sees only a `Source` and domain types. Each outcome is applied to the fleet
(`agent.sync.fleet`), the read model the API and the metrics read, loaded from the store at start so
counts survive a restart.

Whatever a bridge sends, a cycle finishes with a result: one account's failure, whatever raised it, is
that account's failure with a reason from the closed set, and an unexpected error anywhere else ends
the cycle as `failed` (logged with its traceback) instead of escaping to the scheduler or the API.

Issue 11: the bridge specifics (batch negotiation, the per-account fallback, the deadline, what "the
bridge is up" means after a failed listing) live in `agent.sources.bridge.source`; a run records the
source's name and its fetch mode. Tracing span names keep their `bridge.*` names.

Decisions (issue 10):
- A run in which the bridge listed accounts but none came back live (a terminal down while its bridge
  serves stored_data for every account) is `failed`, not `partial`: the stored values are still written
  (they are what the bridge has, marked VPS_STORED, and freshness is not reset), but the last-success
  time does not move and `status.terminal_up` goes False, so ops see the outage at once instead of only
  through data age. `mt5_bridge_up` keeps meaning "the bridge answers".
- Accounts the bridge stops listing are pruned from the fleet (their state and failure counts) once
  absent from `prune_after` (3) consecutive successful listings: one glitchy listing neither drops
  their series nor resets their alerts, and churn cannot grow the metrics without bound. The store
  keeps their documents (they may carry a client); a restart loads them again and they are pruned
  again after the same grace.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from agent.domain.accounts import (
    AccountSnapshot,
    AccountSyncState,
    AccountUpdate,
    DataSource,
    ReadFailure,
    Reason,
    to_ms,
)
from agent.domain.runs import RunResult, StopReason, SyncRun
from agent.sources.base import ListedAccount, Source, SourceError, SourceHealth
from agent.store.base import Store
from agent.store.errors import StoreError, StoreRejected
from agent.sync.fleet import Fleet, SyncStatus

REFRESH_INTERVAL = 30.0  # seconds between two re-reads of the account documents (other writers' changes)

__all__ = [
    "INVALID_ENTRY_ENDPOINTS",
    "AlreadyRunning",
    "SyncService",
    "guarded",
]

log = logging.getLogger("mt5_agent.sync")

MAX_UNRECORDED_RUNS = 1000  # runs kept in memory while the store is down
PRUNE_AFTER = 3  # successful listings an account may be absent from before it leaves the fleet
# Where malformed entries are counted: in the listing, in a batch read (the bridge's endpoint names).
INVALID_ENTRY_ENDPOINTS: tuple[str, ...] = ("summary", "live")
YIELD_EVERY = 1000  # accounts handled between two yields to the event loop (before anything is applied)
RunListener = Callable[[SyncRun], None]


class AlreadyRunning(Exception):
    def __init__(self, run: SyncRun) -> None:
        super().__init__(f"a sync cycle is already running (run {run.run_id})")
        self.run = run


class StoreGate:
    """What the sync services of one agent's sources share about the one store: opened once, loaded
    once (under one lock), re-read at most once per interval, and the accounts pruned since start."""

    def __init__(self, refresh_interval: float = REFRESH_INTERVAL) -> None:
        self.lock = asyncio.Lock()
        self.opened = False
        self.refresh_interval = refresh_interval
        self.refreshed_at = time.monotonic()
        self.pruned: set[int] = set()  # pruned since start: a re-read of the store does not bring them back
        self.sources: dict[int, str] = {}  # the source each account document names (as last read/written)


class SyncService:
    def __init__(
        self,
        store: Store,
        source: Source,
        *,
        cycle_deadline: float = 240.0,
        health_retries: int = 3,
        health_backoff: float = 0.5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tracer_provider: trace.TracerProvider | None = None,
        prune_after: int = PRUNE_AFTER,
        refresh_interval: float = REFRESH_INTERVAL,
        fleet: Fleet | None = None,
        gate: StoreGate | None = None,
        prune_unclaimed: bool = True,
    ) -> None:
        self.store = store
        self._tracer = trace.get_tracer("mt5_agent.sync", tracer_provider=tracer_provider)
        self.source = source
        self.cycle_deadline = cycle_deadline
        self.health_retries = health_retries
        self.health_backoff = health_backoff
        self.clock = clock
        self.prune_after = prune_after  # 0: never prune
        self._absent: dict[int, int] = {}  # account -> successful listings in a row it was missing from
        # Re-reading every document costs ~0.1 s of CPU at 10,000 accounts: at most once per interval.
        self.gate = gate or StoreGate(refresh_interval)
        # Several sources: an account loaded from the store that no source has listed yet is pruned by
        # none of them (it may be a dead source's); one source: by it, as before.
        self.prune_unclaimed = prune_unclaimed
        self.fleet = fleet or Fleet()
        self._duplicates: set[int] = set()  # listed by this source, held by another (last listing)
        self.listeners: list[RunListener] = []
        self._lock = asyncio.Lock()
        self._unrecorded: list[SyncRun] = []

    @property
    def refresh_interval(self) -> float:
        """Seconds between two re-reads of the account documents (shared by the sources' services)."""
        return self.gate.refresh_interval

    @refresh_interval.setter
    def refresh_interval(self, seconds: float) -> None:
        self.gate.refresh_interval = seconds

    @property
    def status(self) -> SyncStatus:
        """This source's own status (the fleet's when it is the only source)."""
        return self.fleet.source_status(self.source.name)

    @property
    def running(self) -> SyncRun | None:
        return self.status.running

    # State ----------------------------------------------------------------------------------
    async def ensure_ready(self) -> bool:
        """Open the store and load the fleet once; retried by each cycle while the store is down. Once
        loaded, each call picks up documents other writers put in the store since (`Fleet.refresh`)."""
        gate = self.gate
        async with gate.lock:
            if self.fleet.loaded:
                now = time.monotonic()
                if now - gate.refreshed_at >= gate.refresh_interval:
                    gate.refreshed_at = now
                    try:
                        records = await self.store.accounts.get_accounts()
                        gate.sources = await self.store.accounts.get_sources()
                        self.fleet.refresh((r for r in records if r.account not in gate.pruned), gate.sources)
                    except StoreError as exc:  # the cycle's own write will tell whether the store is down
                        log.warning("could not re-read the account documents: %s", exc)
                return True
            if not gate.opened:
                try:
                    await self.store.open()
                except StoreError as exc:
                    self.fleet.update_status(self.source.name, store_up=False)
                    log.error("store unavailable (will retry next cycle): %s", exc)
                    return False
                gate.opened = True
            return await self.load_state()

    async def load_state(self) -> bool:
        """Load the last known accounts and failure counts into the fleet; False if the store is down."""
        try:
            records = await self.store.accounts.get_accounts()
            states = await self.store.sync_state.get_sync_states()
            self.gate.sources = await self.store.accounts.get_sources()
        except StoreError as exc:
            self.fleet.update_status(self.source.name, store_up=False)
            log.error("store unavailable at start: %s", exc)
            return False
        self.fleet.load(records, states, self.gate.sources)
        self.fleet.update_status(self.source.name, store_up=True)
        return True

    # Cycle ----------------------------------------------------------------------------------
    async def run_cycle(self, trigger: str = "schedule") -> SyncRun:
        """Run one cycle now; raise AlreadyRunning when one is in progress (cycles never overlap)."""
        fleet = self.fleet
        if self._lock.locked() and self.running is not None:
            raise AlreadyRunning(self.running)
        async with self._lock:
            run = SyncRun(run_id=uuid.uuid4().hex[:16], started_at=self.clock(), trigger=trigger)
            fleet.update_status(self.source.name, running=run)
            started = time.perf_counter()
            cycle_span: trace.Span = trace.INVALID_SPAN
            try:
                await self.ensure_ready()
                with self._tracer.start_as_current_span("sync.cycle") as span:
                    cycle_span = span
                    span.set_attribute("sync.run_id", run.run_id)
                    span.set_attribute("sync.trigger", trigger)
                    try:
                        await self._cycle(run)
                    except Exception as exc:  # a bug must not escape to the scheduler or the API
                        log.exception("sync cycle failed unexpectedly")
                        span.record_exception(exc)
                        run.result = RunResult.FAILED
                        run.error = f"cycle error: {type(exc).__name__}"
                        run.stopped = StopReason.CYCLE
                    span.set_attribute("sync.result", str(run.result))
                    span.set_attribute("sync.accounts.total", run.accounts_total)
                    span.set_attribute("sync.accounts.live", run.synced_live)
                    span.set_attribute("sync.accounts.stored", run.synced_stored)
                    span.set_attribute("sync.accounts.failed", run.failed)
                    if run.result in (RunResult.FAILED, RunResult.SKIPPED):
                        span.set_status(trace.StatusCode.ERROR, run.error or str(run.result))
            finally:
                run.finished_at = self.clock()
                run.duration_seconds = time.perf_counter() - started
                if run.result is None:  # cancelled or crashed mid-cycle
                    run.result = RunResult.FAILED
                    run.error = run.error or "cycle interrupted"
                    run.stopped = run.stopped or StopReason.CYCLE
                fleet.update_status(self.source.name, running=None)
                # The summary line and the listeners run under the (ended) cycle span: logs get its trace id.
                with trace.use_span(cycle_span, record_exception=False, set_status_on_exception=False):
                    await self._finish(run)
            return run

    async def _finish(self, run: SyncRun) -> None:
        self.fleet.count_run(run, self.source.name)
        level = logging.INFO if run.result is RunResult.SUCCESS else logging.WARNING
        log.log(level, run.summary_line(), extra={"run_id": run.run_id, "result": str(run.result)})
        try:
            # Runs the store missed while it was down are recorded first, oldest first.
            while self._unrecorded:
                await self.store.runs.record_run(self._unrecorded[0])
                self._unrecorded.pop(0)
            await self.store.runs.record_run(run)
        except Exception as exc:
            self._unrecorded.append(run)
            del self._unrecorded[:-MAX_UNRECORDED_RUNS]
            if isinstance(exc, StoreError):
                log.error("could not record sync run %s (kept to record later): %s", run.run_id, exc)
            else:
                log.exception("could not record sync run %s (kept to record later)", run.run_id)
        for listener in self.listeners:
            try:
                listener(run)
            except Exception:
                log.exception("sync run listener failed")

    async def _cycle(self, run: SyncRun) -> None:
        fleet = self.fleet
        source = self.source
        # 1. Health (retried with backoff): unusable source -> skip, change nothing.
        with self._tracer.start_as_current_span("bridge.health") as span:
            try:
                health: SourceHealth = await source.usable_health(self.health_retries, self.health_backoff)
            except Exception as exc:
                if isinstance(exc, SourceError):
                    err = exc
                else:
                    log.exception("health check failed unexpectedly")
                    err = SourceError(Reason.INVALID_PAYLOAD, f"health: unexpected {type(exc).__name__}")
                fleet.update_status(self.source.name, bridge_up=False)
                run.result = RunResult.SKIPPED
                run.error = f"bridge unavailable: {err.message}"
                run.stopped = StopReason.SOURCE
                span.record_exception(err)
                span.set_status(trace.StatusCode.ERROR, err.message)
                return
            span.set_attribute("bridge.status", health.status)
        fleet.update_status(self.source.name, last_health=health, bridge_up=True)

        # 2. Account list.
        with self._tracer.start_as_current_span("bridge.accounts") as span:
            try:
                listing = await source.list_accounts()
            except SourceError as exc:
                fleet.update_status(self.source.name, bridge_up=exc.reachable)
                run.result = RunResult.FAILED
                run.error = f"account list: {exc.message}"
                run.stopped = StopReason.ACCOUNT_LIST
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, exc.message)
                return
            listed = self._held(listing.accounts)
            span.set_attribute("sync.accounts.total", len(listed))
            if listing.invalid:
                fleet.count_invalid(INVALID_ENTRY_ENDPOINTS[0], listing.invalid, self.source.name)
                span.set_attribute("sync.accounts.invalid_entries", listing.invalid)
        run.accounts_total = len(listed)
        self._prune({s.account for s in listed})

        # 3. Every account's values (the source picks batch or per account), under the cycle deadline.
        with self._tracer.start_as_current_span("bridge.fetch") as span:
            results: dict[int, AccountSnapshot | ReadFailure] = {}
            try:
                async with asyncio.timeout(self.cycle_deadline + 1.0):  # the source keeps the deadline
                    reads = await source.read_accounts([s.account for s in listed], self.cycle_deadline)
            except TimeoutError:
                log.warning("source %s overran the cycle deadline", source.name)
            else:
                run.set_fetch(source.name, reads.fetch_mode)
                results = dict(reads.results)
                if reads.invalid:
                    fleet.count_invalid(INVALID_ENTRY_ENDPOINTS[1], reads.invalid, self.source.name)
            span.set_attribute("bridge.batch", run.bridge_batch)

        # 4. One store write for the whole cycle.
        now = to_ms(self.clock())
        updates: list[AccountUpdate] = []
        failures: dict[int, Reason] = {}
        skewed = 0
        lead = 0.0
        for i, s in enumerate(listed):
            if i and not i % YIELD_EVERY:
                await asyncio.sleep(0)  # thousands of accounts: let API requests in between
            res = results.get(s.account)
            if isinstance(res, AccountSnapshot):
                if res.ahead_seconds > lead:
                    lead = res.ahead_seconds
                updates.append(
                    AccountUpdate(
                        account=s.account,
                        values=res.values,
                        data_source=DataSource.LIVE if res.live else DataSource.STORED,
                        synced_at=now,
                        live_data_at=to_ms(res.read_at) if res.live and res.read_at else None,
                        name=s.name or res.name,
                        server=s.server or res.server,
                    )
                )
            else:
                failure = (
                    res
                    if res is not None
                    else ReadFailure(Reason.TIMEOUT, "no answer before the cycle deadline")
                )
                if failure.ahead_seconds is not None:
                    skewed += 1
                    lead = max(lead, failure.ahead_seconds)
                failures[s.account] = failure.reason
                trace.get_current_span().add_event(
                    "account.failed", {"account": s.account, "reason": failure.reason.value}
                )
                log.warning(
                    "account %s failed: %s",
                    s.account,
                    failure.message,
                    extra={"account": s.account, "reason": failure.reason.value},
                )

        if listed:
            fleet.update_status(
                self.source.name,
                terminal_up=any(u.data_source is DataSource.LIVE for u in updates),
                clock_skew_seconds=lead,
            )
        if skewed:
            fleet.update_status(self.source.name, clock_skew_total=self.status.clock_skew_total + skewed)
            log.warning(
                "%d account(s) sent live data timestamped up to %.0fs ahead of the receive time: not "
                "trusted for freshness (check the bridge's clock and time zone)",
                skewed,
                lead,
                extra={"clock_skew_accounts": skewed, "clock_skew_seconds": round(lead, 3)},
            )

        states = self._next_states(listed, updates, failures, now)
        with self._tracer.start_as_current_span("store.write") as span:
            span.set_attribute("store.updates", len(updates))
            try:
                try:
                    await self.store.write_cycle(updates, list(states.values()))
                except StoreRejected as exc:  # the store is up but refused some accounts' values
                    rejected = exc.accounts
                    if not rejected:
                        raise
                    # The store refused some accounts' values (nothing was written): those accounts
                    # fail with invalid_payload, the others are written in a second attempt.
                    log.error("store refused data: %s", exc, extra={"reason": Reason.INVALID_PAYLOAD.value})
                    for account in rejected:
                        failures[account] = Reason.INVALID_PAYLOAD
                    updates = [u for u in updates if u.account not in rejected]
                    states = self._next_states(listed, updates, failures, now)
                    await self.store.write_cycle(updates, list(states.values()))
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc))
                if isinstance(exc, StoreError) and not (isinstance(exc, StoreRejected) and exc.accounts):
                    fleet.update_status(self.source.name, store_up=False)
                else:  # not a store outage: a bug, or values the store refused twice
                    log.error("store write failed unexpectedly", exc_info=exc)
                # Nothing was written: accounts whose data came back failed with reason `store`.
                failures = {s.account: failures.get(s.account, Reason.STORE) for s in listed}
                states = self._next_states(listed, [], failures, now)
                fleet.apply(listed, [], failures, states, self.source.name)
                run.failed = len(listed)
                run.failures = {str(a): r.value for a, r in failures.items()}
                run.result = RunResult.FAILED
                run.error = f"store: {exc}"[:500]
                run.stopped = StopReason.STORE
                log.error("store write failed: %s", exc, extra={"reason": Reason.STORE.value})
                return
        fleet.update_status(self.source.name, store_up=True)
        fleet.apply(listed, updates, failures, states, self.source.name)
        await self._record_sources(listed, updates)
        run.synced_live = sum(1 for u in updates if u.data_source is DataSource.LIVE)
        run.synced_stored = len(updates) - run.synced_live
        run.failed = len(failures)
        run.failures = {str(a): r.value for a, r in sorted(failures.items())}
        if run.accounts_total == 0 or (run.synced_live == run.accounts_total):
            run.result = RunResult.SUCCESS
        elif run.synced_live:
            run.result = RunResult.PARTIAL
        elif updates:
            # Stored data only: the bridge answers but no terminal gave live data (see module docstring).
            run.result = RunResult.FAILED
            run.error = run.error or "no account gave live data (terminal down? stored data only)"
        else:
            run.result = RunResult.FAILED
            run.error = run.error or "no account could be synced"

    async def _record_sources(
        self, listed: Sequence[ListedAccount], updates: Sequence[AccountUpdate]
    ) -> None:
        """Name this source in the documents of the accounts it holds, once (and again if another source
        held one before): a restart with this source dead then still knows whose they are, so their
        alerts join `mt5_account_info{source}` and its MT5BridgeDown inhibits them. Only documents that
        exist (written now, or loaded with values); a failure is logged and retried next cycle."""
        name, known = self.source.name, self.gate.sources
        accounts = self.fleet.snapshot().accounts
        written = {u.account for u in updates}
        todo = {
            s.account: name
            for s in listed
            if known.get(s.account) != name
            and (s.account in written or getattr(accounts.get(s.account), "values", None) is not None)
        }
        if not todo:
            return
        try:
            await self.store.accounts.set_sources(todo)
        except StoreError as exc:
            log.warning("could not record the source of %d account(s): %s", len(todo), exc)
            return
        known.update(todo)

    def _held(self, listed: list[ListedAccount]) -> list[ListedAccount]:
        """The listed accounts this source holds. One another source holds is left out (never merged),
        counted (`duplicate_accounts`, mt5_source_duplicate_accounts) and logged when the set changes."""
        name = self.source.name
        taken = self.fleet.claim(name, (s.account for s in listed))
        if taken != self._duplicates:
            self._duplicates = taken
            if taken:
                log.error(
                    "source %s lists %d account(s) another source already holds, left to that source "
                    "(a login listed by two sources is a configuration error): %s",
                    name,
                    len(taken),
                    ", ".join(f"{a} (held by {self.fleet.holder(a)})" for a in sorted(taken)[:10]),
                    extra={"source": name, "duplicate_accounts": len(taken)},
                )
        if self.status.duplicate_accounts != len(taken):
            self.fleet.update_status(name, duplicate_accounts=len(taken))
        return [s for s in listed if s.account not in taken] if taken else listed

    def _prune(self, listed: set[int]) -> None:
        """Drop accounts absent from `prune_after` consecutive successful listings from the fleet."""
        if self.prune_after <= 0:
            return
        pruned = self.gate.pruned
        pruned -= listed  # listed again: it is back in the fleet
        name = self.source.name
        owns = self.fleet.owns  # sharded: another shard's accounts are never this one's to prune
        missing = {
            account
            for account, a in self.fleet.snapshot().accounts.items()
            if account not in listed
            and (a.source == name or (a.source is None and self.prune_unclaimed))
            and owns(account)
        }
        absent = {account: self._absent.get(account, 0) + 1 for account in missing}
        gone = {account for account, n in absent.items() if n >= self.prune_after}
        for account in gone:
            del absent[account]
        self._absent = absent
        if gone:
            self.fleet.prune(gone, self.source.name)
            pruned |= gone
            log.info(
                "%d account(s) no longer listed by the bridge for %d listings: removed from the fleet "
                "(e.g. %s)",
                len(gone),
                self.prune_after,
                ", ".join(str(a) for a in sorted(gone)[:5]),
                extra={"pruned_accounts": len(gone)},
            )

    def _next_states(
        self,
        listed: Sequence[ListedAccount],
        updates: list[AccountUpdate],
        failures: dict[int, Reason],
        now: datetime,
    ) -> dict[int, AccountSyncState]:
        live = {u.account: u for u in updates if u.data_source is DataSource.LIVE}
        known = self.fleet.snapshot().accounts
        out: dict[int, AccountSyncState] = {}
        for s in listed:
            prev = known.get(s.account)
            st = AccountSyncState(
                account=s.account,
                consecutive_failures=prev.consecutive_failures if prev else 0,
                last_reason=prev.last_reason if prev else None,
                last_failure_at=prev.last_failure_at if prev else None,
                last_attempt_at=now,
                last_live_at=prev.last_live_at if prev else None,
            )
            if s.account in failures:
                st.consecutive_failures += 1
                st.last_reason = failures[s.account]
                st.last_failure_at = now
            elif s.account in live:
                st.consecutive_failures = 0
                st.last_live_at = live[s.account].live_data_at
            # A stored-data fallback is neither a failure nor a live success: counts stay as they were.
            out[s.account] = st
        return out


async def guarded(fn: Callable[[], Awaitable[SyncRun]]) -> SyncRun | None:
    """For the scheduler: a tick that lands while a manual cycle runs is skipped, not queued."""
    try:
        return await fn()
    except AlreadyRunning as exc:
        log.info("scheduled sync skipped: %s", exc)
        return None
