"""The metric catalog (DESIGN.md section 7): every family the agent exports, as data.

Each family's name, type, help, label names and buckets are written here once; the collector, the
event histograms, alerts/render.py and dashboards/render.py all take them from here, so a rename
cannot leave a rule or a panel querying a series that no longer exists. Also here: the closed label
value sets (a value outside them is exported as `other`, never as a new series), the job selector the
rules and dashboards select the agent's targets with by default, and which `Thresholds` attribute
each `mt5_freshness_threshold_seconds{state}` series exports.

Imports nothing but domain types: alerts/ and dashboards/ load it without the sync or aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.domain.accounts import REASONS, DataSource
from agent.domain.freshness import STATES, State
from agent.domain.runs import RUN_RESULTS
from agent.domain.trades import EventType


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Family:
    """One metric family. `name` is the family name as prometheus_client takes it (a counter's
    without `_total`); `series` is what PromQL selects."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def series(self) -> str:
        """The sample name of a gauge or counter (`mt5_sync_runs_total`)."""
        return f"{self.name}_total" if self.kind is Kind.COUNTER else self.name

    @property
    def bucket(self) -> str:
        """A histogram's bucket series (`..._bucket`), what histogram_quantile reads."""
        assert self.kind is Kind.HISTOGRAM, self.name
        return f"{self.name}_bucket"


# Label names -------------------------------------------------------------------------------------
ACCOUNT = "account"
NAME = "name"
SERVER = "server"
CURRENCY = "currency"
STATE = "state"
SOURCE = "source"
REASON = "reason"
RESULT = "result"
OUTCOME = "outcome"
ENDPOINT = "endpoint"
TYPE = "type"
OPERATION = "operation"
VERSION = "version"
# Target labels Prometheus adds to every series it scrapes; the rules aggregate by them.
JOB = "job"
INSTANCE = "instance"

# Closed label value sets --------------------------------------------------------------------------
OTHER = "other"  # what an endpoint or operation outside its set is exported as
BRIDGE_ENDPOINTS: tuple[str, ...] = ("health", "summary", "info", "live", "balance", "positions", "trades")
STORE_OPERATIONS: tuple[str, ...] = (
    "open",
    "ping",
    "write_cycle",
    "record_run",
    "list_runs",
    "count_runs",
    "get_accounts",
    "get_account",
    "get_sync_states",
    "put_account_documents",
    "set_client",
    "write_updates",  # the halves of write_cycle, for callers of the concern stores
    "write_states",
)
STORE_OPERATIONS_EXPORTED_AT_START: tuple[str, ...] = ("write_cycle", "record_run")  # series before any call
DATA_SOURCES: tuple[str, ...] = tuple(s.value for s in DataSource)
FAILURE_REASONS: tuple[str, ...] = tuple(r.value for r in REASONS)
RESULTS: tuple[str, ...] = tuple(r.value for r in RUN_RESULTS)
FRESHNESS_STATES: tuple[str, ...] = tuple(s.value for s in STATES)
RUN_OUTCOMES: tuple[str, ...] = ("live", "stored", "failed")
EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
# mt5_positions_poll_failures_total{reason}: a read failure's reason, or the store refusing the writes
# (`store`), or an unexpected error (`internal`).
POLL_FAILURE_REASONS: tuple[str, ...] = (*FAILURE_REASONS, "store", "internal")
# mt5_freshness_threshold_seconds{state}: the `Thresholds` attribute giving the age each state begins at.
THRESHOLD_STATES: tuple[tuple[State, str], ...] = (
    (State.ACCEPTABLE, "acceptable_after"),
    (State.DEGRADED, "degraded_after"),
    (State.CRITICAL, "critical_after"),
)

# Default selection of the agent's targets in rules and dashboards (`mt5-agent render --job-selector`).
AGENT_JOB = "mt5-agent"
JOB_SELECTOR = f'{JOB}="{AGENT_JOB}"'

# Buckets ------------------------------------------------------------------------------------------
# A cycle takes tens of milliseconds (a few accounts, batch) to minutes (thousands, one call each).
SYNC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# One bridge call: a few ms on loopback up to the 30 s request timeout.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Terminal change to stored event: the poll period (0.25-1 s) plus a read, up to minutes when late.
DETECTION_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _cached(what: str) -> str:
    return (
        f"{what} from the last successful sync (cached; see mt5_account_last_sync_timestamp_seconds). "
        "Absent when the bridge never sent it."
    )


def _gauge(name: str, help_: str, *labels: str) -> Family:
    return Family(name, Kind.GAUGE, help_, labels)


def _counter(name: str, help_: str, *labels: str) -> Family:
    return Family(name, Kind.COUNTER, help_, labels)


# Per-account families (read from the fleet at scrape time), in exposition order ------------------
ACCOUNT_INFO = _gauge(
    "mt5_account_info",
    "Descriptive labels of an account (always 1); join on account in PromQL.",
    ACCOUNT,
    NAME,
    SERVER,
    CURRENCY,
)
ACCOUNT_BALANCE = _gauge("mt5_account_balance", _cached("Balance in the account currency"), ACCOUNT)
ACCOUNT_EQUITY = _gauge("mt5_account_equity", _cached("Equity in the account currency"), ACCOUNT)
ACCOUNT_PROFIT = _gauge("mt5_account_profit", _cached("Floating profit in the account currency"), ACCOUNT)
ACCOUNT_MARGIN = _gauge("mt5_account_margin", _cached("Used margin in the account currency"), ACCOUNT)
ACCOUNT_MARGIN_FREE = _gauge(
    "mt5_account_margin_free", _cached("Free margin in the account currency"), ACCOUNT
)
# (family, the AccountValues field it exports)
VALUE_GAUGES: tuple[tuple[Family, str], ...] = (
    (ACCOUNT_BALANCE, "balance"),
    (ACCOUNT_EQUITY, "equity"),
    (ACCOUNT_PROFIT, "profit"),
    (ACCOUNT_MARGIN, "margin"),
    (ACCOUNT_MARGIN_FREE, "margin_free"),
)
ACCOUNT_MARGIN_LEVEL_RATIO = _gauge(
    "mt5_account_margin_level_ratio",
    _cached(
        "Margin level as a ratio (MT5 margin_level percent / 100); also absent while no "
        "margin is used (MT5 then reports 0, which is not a stop-out)"
    ),
    ACCOUNT,
)
ACCOUNT_LAST_SYNC = _gauge(
    "mt5_account_last_sync_timestamp_seconds",
    "Unix time of the last live data read from the terminal for the account; a VPS_STORED "
    "fallback does not move it. Absent for an account never synced live.",
    ACCOUNT,
)
ACCOUNT_DATA_AGE = _gauge(
    "mt5_account_data_age_seconds",
    "Seconds since the last live data of the account, computed at scrape time. Absent for an "
    "account never synced live (its freshness state is critical).",
    ACCOUNT,
)
ACCOUNT_FRESHNESS = _gauge(
    "mt5_account_freshness_state",
    "1 for the account's current freshness state (fresh, acceptable, degraded, critical), "
    "0 for the others; never synced live is critical.",
    ACCOUNT,
    STATE,
)
ACCOUNT_DATA_SOURCE = _gauge(
    "mt5_account_data_source",
    "1 for the source of the account's cached values (VPS_LIVE_MT5 or VPS_STORED), 0 otherwise; "
    "both 0 when it was never synced.",
    ACCOUNT,
    SOURCE,
)
ACCOUNT_SYNC_FAILURES = _counter(
    "mt5_account_sync_failures",
    "Account sync failures by reason since the agent started.",
    ACCOUNT,
    REASON,
)
ACCOUNT_CONSECUTIVE_FAILURES = _gauge(
    "mt5_account_consecutive_failures",
    "Failed syncs of the account in a row (a live sync resets it; survives restarts).",
    ACCOUNT,
)
ACCOUNT_FAMILIES: tuple[Family, ...] = (
    ACCOUNT_INFO,
    *(family for family, _ in VALUE_GAUGES),
    ACCOUNT_MARGIN_LEVEL_RATIO,
    ACCOUNT_LAST_SYNC,
    ACCOUNT_DATA_AGE,
    ACCOUNT_FRESHNESS,
    ACCOUNT_DATA_SOURCE,
    ACCOUNT_SYNC_FAILURES,
    ACCOUNT_CONSECUTIVE_FAILURES,
)

# Agent-level families (read at scrape time), in exposition order ---------------------------------
SYNC_RUNS = _counter("mt5_sync_runs", "Sync cycles by result since the agent started.", RESULT)
SYNC_LAST_SUCCESS = _gauge(
    "mt5_sync_last_success_timestamp_seconds",
    "Unix time the last success or partial cycle finished; absent until one has (in this process).",
)
SYNC_LAST_RUN_ACCOUNTS = _gauge(
    "mt5_sync_last_run_accounts",
    "Accounts of the last finished cycle by outcome (live, stored, failed).",
    OUTCOME,
)
SYNC_RUNNING = _gauge("mt5_sync_running", "1 while a sync cycle runs.")
BRIDGE_UP = _gauge(
    "mt5_bridge_up",
    "1 if the last attempt to use the bridge (health check, account list) worked; 0 if it "
    "failed, and 0 until the first attempt.",
)
STORE_UP = _gauge(
    "mt5_store_up",
    "1 if the last store operation of the sync worked; 0 if it failed, and 0 until the store "
    "was first reached.",
)
BRIDGE_TERMINAL_UP = _gauge(
    "mt5_bridge_terminal_up",
    "1 if the last cycle that fetched accounts got live data for at least one; 0 if the bridge "
    "answered but none came back live (terminal down: stored data or errors only). Absent "
    "until a cycle has fetched accounts.",
)
BRIDGE_INVALID_ENTRIES = _counter(
    "mt5_bridge_invalid_entries",
    "Malformed entries skipped in bridge lists (summary, live batch) since the agent started: "
    "not an object, or no valid account id.",
    ENDPOINT,
)
BRIDGE_CLOCK_SKEW = _counter(
    "mt5_bridge_clock_skew",
    "Accounts' live data refused (reason invalid_payload) because its timestamp was ahead of "
    "the receive time by more than the clock-skew tolerance, since the agent started.",
)
BRIDGE_CLOCK_SKEW_SECONDS = _gauge(
    "mt5_bridge_clock_skew_seconds",
    "Largest lead of a live_data timestamp over the agent's receive time in the last cycle that "
    "fetched accounts (0 when none was ahead). Absent until one has.",
)
SYNC_ACCOUNTS_PRUNED = _counter(
    "mt5_sync_accounts_pruned",
    "Accounts removed from the fleet (and from these metrics) after the bridge stopped listing "
    "them, since the agent started.",
)
FRESHNESS_THRESHOLD = _gauge(
    "mt5_freshness_threshold_seconds",
    "Configured data age in seconds at which each freshness state begins (fresh below "
    "acceptable); the alert rules compare ages with these.",
    STATE,
)
GLOBAL_FAMILIES: tuple[Family, ...] = (
    SYNC_RUNS,
    SYNC_LAST_SUCCESS,
    SYNC_LAST_RUN_ACCOUNTS,
    SYNC_RUNNING,
    BRIDGE_UP,
    STORE_UP,
    BRIDGE_TERMINAL_UP,
    BRIDGE_INVALID_ENTRIES,
    BRIDGE_CLOCK_SKEW,
    BRIDGE_CLOCK_SKEW_SECONDS,
    SYNC_ACCOUNTS_PRUNED,
    FRESHNESS_THRESHOLD,
)

# Event metrics (prometheus_client instruments fed as things happen) -------------------------------
SYNC_DURATION = Family(
    "mt5_sync_duration_seconds",
    Kind.HISTOGRAM,
    "Duration of finished sync cycles (every result, skipped included).",
    buckets=SYNC_BUCKETS,
)
BRIDGE_REQUEST_DURATION = Family(
    "mt5_bridge_request_duration_seconds",
    Kind.HISTOGRAM,
    "Duration of bridge HTTP requests by endpoint (failed ones included).",
    (ENDPOINT,),
    REQUEST_BUCKETS,
)
STORE_OPERATION_DURATION = Family(
    "mt5_store_operation_duration_seconds",
    Kind.HISTOGRAM,
    "Duration of store operations by operation (failed ones included).",
    (OPERATION,),
    STORE_BUCKETS,
)
AGENT_BUILD_INFO = _gauge("mt5_agent_build_info", "Version of the running agent (always 1).", VERSION)
# Positions and trade events (DESIGN.md 11), fed by the positions poller.
TRADE_EVENTS = _counter("mt5_trade_events", "Trade events stored by type since the agent started.", TYPE)
TRADE_EVENTS_AVAILABLE = _gauge(
    "mt5_trade_events_available",
    "1 when the source serves positions and deals (trade events are detected); 0 when it does not, "
    "or before its health said so, or when the positions poller is off.",
)
ACCOUNT_OPEN_POSITIONS = _gauge(
    "mt5_account_open_positions", "Open positions of an account at its last successful poll.", ACCOUNT
)
ACCOUNT_POSITIONS_LAST_POLL = _gauge(
    "mt5_account_positions_last_poll_timestamp_seconds",
    "Unix time of the account's last successful positions poll.",
    ACCOUNT,
)
POSITIONS_POLL_FAILURES = _counter(
    "mt5_positions_poll_failures",
    "Failed positions polls of one account by reason since the agent started.",
    REASON,
)
TRADE_EVENT_DETECTION_DELAY = Family(
    "mt5_trade_event_detection_delay_seconds",
    Kind.HISTOGRAM,
    "Time from the terminal's change to the stored event (events caught up at start excluded).",
    buckets=DETECTION_BUCKETS,
)
POSITIONS_POLL_DURATION = Family(
    "mt5_positions_poll_duration_seconds",
    Kind.HISTOGRAM,
    "Duration of positions poll rounds (every account of the source).",
    buckets=POLL_BUCKETS,
)
EVENT_FAMILIES: tuple[Family, ...] = (
    SYNC_DURATION,
    BRIDGE_REQUEST_DURATION,
    STORE_OPERATION_DURATION,
    AGENT_BUILD_INFO,
    TRADE_EVENTS,
    TRADE_EVENTS_AVAILABLE,
    ACCOUNT_OPEN_POSITIONS,
    ACCOUNT_POSITIONS_LAST_POLL,
    POSITIONS_POLL_FAILURES,
    TRADE_EVENT_DETECTION_DELAY,
    POSITIONS_POLL_DURATION,
)

FAMILIES: tuple[Family, ...] = (*EVENT_FAMILIES, *ACCOUNT_FAMILIES, *GLOBAL_FAMILIES)

# Prometheus' own per-target series (not exported by the agent): 0 when a scrape of the agent failed.
SCRAPE_UP = "up"
