"""The sync cycle: health check, account list, every account's live data, one store write.

One account failing never stops the others; nothing invalid is ever written; cycles never overlap.
`SyncService.state` is the in-memory view the metrics collector and the status API read at request
time; it is loaded from the store at start so counts survive a restart.

Whatever a bridge sends, a cycle finishes with a result: one account's failure, whatever raised it, is
that account's failure with a reason from the closed set, and an unexpected error anywhere else ends
the cycle as `failed` (logged with its traceback) instead of escaping to the scheduler or the API.

Decisions (issue 10):
- A run in which the bridge listed accounts but none came back live (a terminal down while its bridge
  serves stored_data for every account) is `failed`, not `partial`: the stored values are still written
  (they are what the bridge has, marked VPS_STORED, and freshness is not reset), but the last-success
  time does not move and `state.terminal_up` goes False, so ops see the outage at once instead of only
  through data age. `mt5_bridge_up` keeps meaning "the bridge answers".
- Accounts the bridge stops listing are pruned from the in-memory fleet (`state.accounts`,
  `sync_states`, `failures`) once absent from `prune_after` (3) consecutive successful listings: one
  glitchy listing neither drops their series nor resets their alerts, and churn cannot grow the
  metrics without bound. The store keeps their documents (they may carry a client); a restart loads
  them again and they are pruned again after the same grace.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import trace

from agent.bridge_client import AccountSummary, BridgeClient, BridgeError, BridgeHealth, Listing
from agent.models import (
    AccountRecord,
    AccountSyncState,
    AccountUpdate,
    AccountValues,
    DataSource,
    Reason,
    RunResult,
    SyncRun,
    to_ms,
)
from agent.payloads import AccountData
from agent.store.base import Store, StoreError

log = logging.getLogger("mt5_agent.sync")

MAX_UNRECORDED_RUNS = 1000  # runs kept in memory while the store is down
PRUNE_AFTER = 3  # successful listings an account may be absent from before it leaves the fleet
INVALID_ENTRY_ENDPOINTS: tuple[str, ...] = ("summary", "live")  # where malformed entries are counted
YIELD_EVERY = 1000  # accounts handled between two yields to the event loop (before anything is applied)
RunListener = Callable[[SyncRun], None]


class AlreadyRunning(Exception):
    def __init__(self, run: SyncRun) -> None:
        super().__init__(f"a sync cycle is already running (run {run.run_id})")
        self.run = run


@dataclass
class AccountView:
    """The last known values of one account, as the store holds them (loaded at start, then kept
    current by each cycle's successful write)."""

    account: int
    name: str | None = None
    server: str | None = None
    values: AccountValues | None = None
    data_source: str | None = None
    live_data_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_record(cls, r: AccountRecord) -> AccountView:
        values = None
        if r.balance is not None:
            values = AccountValues(
                balance=r.balance,
                equity=r.equity,
                profit=r.profit,
                margin=r.margin,
                margin_free=r.margin_free,
                margin_level=r.margin_level,
                leverage=r.leverage,
                currency=r.currency,
                trade_allowed=r.trade_allowed,
            )
        return cls(
            account=r.account,
            name=r.name,
            server=r.server,
            values=values,
            data_source=r.data_source,
            live_data_at=r.live_data_at,
            updated_at=r.updated_at,
        )

    @property
    def currency(self) -> str | None:
        return self.values.currency if self.values else None


@dataclass
class SyncState:
    accounts: dict[int, AccountView] = field(default_factory=dict)
    sync_states: dict[int, AccountSyncState] = field(default_factory=dict)
    failures: Counter[tuple[int, Reason]] = field(default_factory=Counter)  # since process start
    runs: Counter[RunResult] = field(default_factory=Counter)
    # Written by the sync and, between cycles, by the bridge probe: "the bridge answers".
    bridge_up: bool | None = None
    store_up: bool | None = None
    # True when the last cycle that fetched accounts got live data for at least one of them; False when
    # the bridge answered but none came back live (terminal down, stored data or errors only).
    terminal_up: bool | None = None
    # Malformed entries skipped, by endpoint (INVALID_ENTRY_ENDPOINTS), since process start.
    invalid_entries: Counter[str] = field(default_factory=Counter)
    clock_skew_total: int = 0  # accounts' live data refused for a timestamp too far ahead
    clock_skew_seconds: float | None = None  # largest lead of a source timestamp in the last fetch
    pruned_total: int = 0  # accounts dropped from the fleet after leaving the bridge's listing
    last_health: BridgeHealth | None = None
    last_probe_at: datetime | None = None  # set by agent.probe.BridgeProber
    last_run: SyncRun | None = None
    last_success_at: datetime | None = None
    running: SyncRun | None = None
    loaded: bool = False
    # Bumped whenever accounts, sync_states or failures change: the metrics collector renders what
    # depends only on them once per version. Whoever changes them outside SyncService bumps it too.
    version: int = 0


_VALUE_FIELD_NAMES = tuple(AccountValues.__dataclass_fields__)


def _merge(old: AccountValues | None, new: AccountValues) -> AccountValues:
    """Fields the bridge did not send keep their stored value (a $set writes only what came)."""
    if old is None:
        return new
    fresh = [getattr(new, f) for f in _VALUE_FIELD_NAMES]
    if not any(v is None for v in fresh):
        return new  # the bridge sent every field (ours does): nothing to keep from `old`
    merged = {
        f: v if v is not None else getattr(old, f) for f, v in zip(_VALUE_FIELD_NAMES, fresh, strict=True)
    }
    return AccountValues(**merged)


class SyncService:
    def __init__(
        self,
        store: Store,
        bridge: BridgeClient,
        *,
        concurrency: int = 16,
        cycle_deadline: float = 240.0,
        health_retries: int = 3,
        health_backoff: float = 0.5,
        use_batch: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tracer_provider: trace.TracerProvider | None = None,
        prune_after: int = PRUNE_AFTER,
    ) -> None:
        self.store = store
        self._tracer = trace.get_tracer("mt5_agent.sync", tracer_provider=tracer_provider)
        self.bridge = bridge
        self.concurrency = concurrency
        self.cycle_deadline = cycle_deadline
        self.health_retries = health_retries
        self.health_backoff = health_backoff
        self.use_batch = use_batch
        self.clock = clock
        self.prune_after = prune_after  # 0: never prune
        self._absent: dict[int, int] = {}  # account -> successful listings in a row it was missing from
        self.state = SyncState()
        self.listeners: list[RunListener] = []
        self._lock = asyncio.Lock()
        self._store_opened = False
        self._unrecorded: list[SyncRun] = []

    # State ----------------------------------------------------------------------------------
    async def ensure_ready(self) -> bool:
        """Open the store and load state once; retried by each cycle while the store is down."""
        if self.state.loaded:
            return True
        if not self._store_opened:
            try:
                await self.store.open()
            except StoreError as exc:
                self.state.store_up = False
                log.error("store unavailable (will retry next cycle): %s", exc)
                return False
            self._store_opened = True
        return await self.load_state()

    async def load_state(self) -> bool:
        """Load the last known accounts and failure counts from the store; False if it is down."""
        try:
            records = await self.store.get_accounts()
            states = await self.store.get_sync_states()
        except StoreError as exc:
            self.state.store_up = False
            log.error("store unavailable at start: %s", exc)
            return False
        # What this process already learnt (while the store was down) wins over what was stored.
        for r in records:
            self.state.accounts.setdefault(r.account, AccountView.from_record(r))
        for account, st in states.items():
            self.state.sync_states.setdefault(account, st)
        for account in states:
            self.state.accounts.setdefault(account, AccountView(account=account))
        self.state.store_up = True
        self.state.loaded = True
        self.state.version += 1
        return True

    # Cycle ----------------------------------------------------------------------------------
    async def run_cycle(self, trigger: str = "schedule") -> SyncRun:
        """Run one cycle now; raise AlreadyRunning when one is in progress (cycles never overlap)."""
        if self._lock.locked() and self.state.running is not None:
            raise AlreadyRunning(self.state.running)
        async with self._lock:
            run = SyncRun(run_id=uuid.uuid4().hex[:16], started_at=self.clock(), trigger=trigger)
            self.state.running = run
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
                self.state.running = None
                # The summary line and the listeners run under the (ended) cycle span: logs get its trace id.
                with trace.use_span(cycle_span, record_exception=False, set_status_on_exception=False):
                    await self._finish(run)
            return run

    async def _finish(self, run: SyncRun) -> None:
        self.state.runs[run.result] += 1
        self.state.last_run = run
        if run.result in (RunResult.SUCCESS, RunResult.PARTIAL):
            self.state.last_success_at = run.finished_at
        level = logging.INFO if run.result is RunResult.SUCCESS else logging.WARNING
        log.log(level, run.summary_line(), extra={"run_id": run.run_id, "result": str(run.result)})
        try:
            # Runs the store missed while it was down are recorded first, oldest first.
            while self._unrecorded:
                await self.store.record_run(self._unrecorded[0])
                self._unrecorded.pop(0)
            await self.store.record_run(run)
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
        # 1. Health (retried with backoff): unusable bridge -> skip, change nothing.
        with self._tracer.start_as_current_span("bridge.health") as span:
            try:
                health = await self.bridge.health_with_retries(self.health_retries, self.health_backoff)
            except Exception as exc:
                if isinstance(exc, BridgeError):
                    err = exc
                else:
                    log.exception("health check failed unexpectedly")
                    err = BridgeError(Reason.INVALID_PAYLOAD, f"health: unexpected {type(exc).__name__}")
                self.state.bridge_up = False
                run.result = RunResult.SKIPPED
                run.error = f"bridge unavailable: {err.message}"
                span.record_exception(err)
                span.set_status(trace.StatusCode.ERROR, err.message)
                return
            span.set_attribute("bridge.status", health.status)
        self.state.last_health = health
        self.state.bridge_up = True

        # 2. Account list.
        with self._tracer.start_as_current_span("bridge.accounts") as span:
            try:
                listing: Listing = await self.bridge.listing()
            except BridgeError as exc:
                self.state.bridge_up = exc.reason is Reason.INVALID_PAYLOAD
                run.result = RunResult.FAILED
                run.error = f"account list: {exc.message}"
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, exc.message)
                return
            summaries = listing.accounts
            span.set_attribute("sync.accounts.total", len(summaries))
            if listing.invalid:
                self.state.invalid_entries["summary"] += listing.invalid
                span.set_attribute("sync.accounts.invalid_entries", listing.invalid)
        run.accounts_total = len(summaries)
        self._prune({s.account for s in summaries})

        # 3. Every account's data (batch when advertised), under the cycle deadline.
        with self._tracer.start_as_current_span("bridge.fetch") as span:
            results = await self._fetch(summaries, health, run)
            span.set_attribute("bridge.batch", run.bridge_batch)

        # 4. One store write for the whole cycle.
        now = to_ms(self.clock())
        updates: list[AccountUpdate] = []
        failures: dict[int, Reason] = {}
        skewed = 0
        lead = 0.0
        for i, s in enumerate(summaries):
            if i and not i % YIELD_EVERY:
                await asyncio.sleep(0)  # thousands of accounts: let API requests in between
            res = results.get(s.account)
            if isinstance(res, AccountData):
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
                err = (
                    res
                    if isinstance(res, BridgeError)
                    else BridgeError(Reason.TIMEOUT, "no answer before the cycle deadline")
                )
                if err.ahead_seconds is not None:
                    skewed += 1
                    lead = max(lead, err.ahead_seconds)
                failures[s.account] = err.reason
                trace.get_current_span().add_event(
                    "account.failed", {"account": s.account, "reason": err.reason.value}
                )
                log.warning(
                    "account %s failed: %s",
                    s.account,
                    err.message,
                    extra={"account": s.account, "reason": err.reason.value},
                )

        if summaries:
            self.state.terminal_up = any(u.data_source is DataSource.LIVE for u in updates)
            self.state.clock_skew_seconds = lead
        if skewed:
            self.state.clock_skew_total += skewed
            log.warning(
                "%d account(s) sent live data timestamped up to %.0fs ahead of the receive time: not "
                "trusted for freshness (check the bridge's clock and time zone)",
                skewed,
                lead,
                extra={"clock_skew_accounts": skewed, "clock_skew_seconds": round(lead, 3)},
            )

        states = self._next_states(summaries, updates, failures, now)
        with self._tracer.start_as_current_span("store.write") as span:
            span.set_attribute("store.updates", len(updates))
            try:
                try:
                    await self.store.write_cycle(updates, list(states.values()))
                except StoreError as exc:
                    rejected = getattr(exc, "accounts", None)  # StoreRejected: the store is up
                    if not rejected:
                        raise
                    # The store refused some accounts' values (nothing was written): those accounts
                    # fail with invalid_payload, the others are written in a second attempt.
                    log.error("store refused data: %s", exc, extra={"reason": Reason.INVALID_PAYLOAD.value})
                    for account in rejected:
                        failures[account] = Reason.INVALID_PAYLOAD
                    updates = [u for u in updates if u.account not in rejected]
                    states = self._next_states(summaries, updates, failures, now)
                    await self.store.write_cycle(updates, list(states.values()))
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, str(exc))
                if isinstance(exc, StoreError) and not getattr(exc, "accounts", None):
                    self.state.store_up = False
                else:  # not a store outage: a bug, or values the store refused twice
                    log.error("store write failed unexpectedly", exc_info=exc)
                # Nothing was written: accounts whose data came back failed with reason `store`.
                failures = {s.account: failures.get(s.account, Reason.STORE) for s in summaries}
                states = self._next_states(summaries, [], failures, now)
                self._apply(summaries, [], failures, states)
                run.failed = len(summaries)
                run.failures = {str(a): r.value for a, r in failures.items()}
                run.result = RunResult.FAILED
                run.error = f"store: {exc}"[:500]
                log.error("store write failed: %s", exc, extra={"reason": Reason.STORE.value})
                return
        self.state.store_up = True
        self._apply(summaries, updates, failures, states)
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

    async def _fetch(
        self, summaries: list[AccountSummary], health: BridgeHealth, run: SyncRun
    ) -> dict[int, AccountData | BridgeError]:
        results: dict[int, AccountData | BridgeError] = {}
        wanted = [s.account for s in summaries]
        deadline = asyncio.get_running_loop().time() + self.cycle_deadline
        if self.use_batch and "batch" in health.features:
            try:
                async with asyncio.timeout_at(deadline):
                    batch = await self.bridge.live_batch()
                run.bridge_batch = True
                results.update(batch.data)
                results.update(batch.errors)
                if batch.invalid:
                    self.state.invalid_entries["live"] += batch.invalid
            except Exception as exc:
                msg = (
                    exc.message
                    if isinstance(exc, BridgeError)
                    else "cycle deadline"
                    if isinstance(exc, TimeoutError)
                    else f"unexpected {type(exc).__name__}"
                )
                log.warning("batch endpoint failed (%s); falling back to one call per account", msg)
        todo = [a for a in wanted if a not in results]
        if todo:
            await self._fetch_each(todo, results, deadline)
        return results

    async def _fetch_each(
        self, accounts: list[int], results: dict[int, AccountData | BridgeError], deadline: float
    ) -> None:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(account: int) -> None:
            async with sem:
                try:
                    results[account] = await self.bridge.account_info(account)
                except BridgeError as exc:
                    results[account] = exc
                except Exception as exc:  # whatever raised it, it is this account's failure
                    log.error("account %s: unexpected %s", account, type(exc).__name__, exc_info=exc)
                    results[account] = BridgeError(
                        Reason.INVALID_PAYLOAD, f"account {account}: unexpected {type(exc).__name__}"
                    )

        tasks = [asyncio.create_task(one(a)) for a in accounts]
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*tasks)
        except TimeoutError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for a in accounts:
                results.setdefault(
                    a,
                    BridgeError(
                        Reason.TIMEOUT, f"no answer within the {self.cycle_deadline:g}s cycle deadline"
                    ),
                )

    def _prune(self, listed: set[int]) -> None:
        """Drop accounts absent from `prune_after` consecutive successful listings from the fleet."""
        if self.prune_after <= 0:
            return
        state = self.state
        missing = (state.accounts.keys() | state.sync_states.keys()) - listed
        absent = {account: self._absent.get(account, 0) + 1 for account in missing}
        gone = {account for account, n in absent.items() if n >= self.prune_after}
        for account in gone:
            del absent[account]
            state.accounts.pop(account, None)
            state.sync_states.pop(account, None)
        self._absent = absent
        if gone:
            for key in [k for k in state.failures if k[0] in gone]:
                del state.failures[key]
            state.pruned_total += len(gone)
            state.version += 1
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
        summaries: list[AccountSummary],
        updates: list[AccountUpdate],
        failures: dict[int, Reason],
        now: datetime,
    ) -> dict[int, AccountSyncState]:
        live = {u.account: u for u in updates if u.data_source is DataSource.LIVE}
        out: dict[int, AccountSyncState] = {}
        for s in summaries:
            prev = self.state.sync_states.get(s.account) or AccountSyncState(account=s.account)
            st = AccountSyncState(
                account=s.account,
                consecutive_failures=prev.consecutive_failures,
                last_reason=prev.last_reason,
                last_failure_at=prev.last_failure_at,
                last_attempt_at=now,
                last_live_at=prev.last_live_at,
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

    def _apply(
        self,
        summaries: list[AccountSummary],
        updates: list[AccountUpdate],
        failures: dict[int, Reason],
        states: dict[int, AccountSyncState],
    ) -> None:
        """Mirror what the store now holds into the in-memory view."""
        accounts = self.state.accounts
        for s in summaries:
            view = accounts.get(s.account)
            if view is None:
                view = accounts[s.account] = AccountView(account=s.account, name=s.name, server=s.server)
            else:
                view.name = view.name or s.name
                view.server = view.server or s.server
        for u in updates:
            view = accounts[u.account]
            view.values = _merge(view.values, u.values)
            view.data_source = u.data_source.value
            view.updated_at = u.synced_at
            if u.live_data_at is not None:
                view.live_data_at = u.live_data_at
            view.name = view.name or u.name
            view.server = view.server or u.server
        for account, reason in failures.items():
            self.state.failures[(account, reason)] += 1
        self.state.sync_states.update(states)
        self.state.version += 1


async def guarded(fn: Callable[[], Awaitable[SyncRun]]) -> SyncRun | None:
    """For the scheduler: a tick that lands while a manual cycle runs is skipped, not queued."""
    try:
        return await fn()
    except AlreadyRunning as exc:
        log.info("scheduled sync skipped: %s", exc)
        return None
