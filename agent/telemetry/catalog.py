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
SYMBOL = "symbol"
PERIOD = "period"  # a drawdown's window: DRAWDOWN_PERIODS
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
# The live event stream (WS /api/v1/stream, docs/stream.md): what it sends, and why a stream ended.
STREAM_MESSAGE_TYPES: tuple[str, ...] = ("hello", "subscribed", "event", "heartbeat", "error")
STREAM_CLOSE_REASONS: tuple[str, ...] = (
    "client",  # the client closed or went away
    "slow_consumer",  # its queue filled up (4008)
    "auth_failed",  # no, a wrong or an expired token at the start (4401)
    "token_expired",  # its JWT expired while streaming (4401)
    "shutdown",  # the agent stopped (1001)
    "cursor_expired",  # `after` older than the retained history (4410)
    "protocol_error",  # binary or oversized frames, or too many bad messages (1003, 1009, 1008)
    "store_unavailable",  # the store did not answer for the hello or the replay (1013)
    "internal",  # an unexpected error (1011)
)
# mt5_account_equity_*{period}: the day's (UTC) peak, or the peak since tracking started.
DRAWDOWN_PERIODS: tuple[str, ...] = ("day", "tracking")
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
# Events replayed to one stream subscription (from its `after` to the live seam).
REPLAY_BUCKETS = (0, 1, 10, 100, 1000, 10000, 100000)
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
    "Descriptive labels of an account (always 1), and the source (agent setting) holding it, empty "
    "until one has listed it; join on account in PromQL.",
    ACCOUNT,
    NAME,
    SERVER,
    CURRENCY,
    SOURCE,
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
# Per source (issue 15): the unlabelled two above are the agent's whole fleet (mt5_sync_runs_total{result}
# = sum by (result) of these; the last success the oldest of the sources', absent until each has had one).
SOURCE_SYNC_RUNS = _counter(
    "mt5_source_sync_runs",
    "Sync cycles of one source by result since the agent started (summed over sources: mt5_sync_runs_total).",
    SOURCE,
    RESULT,
)
SOURCE_LAST_SUCCESS = _gauge(
    "mt5_source_last_success_timestamp_seconds",
    "Unix time the source's last success or partial cycle finished; absent until one has (in this process).",
    SOURCE,
)
SYNC_LAST_RUN_ACCOUNTS = _gauge(
    "mt5_sync_last_run_accounts",
    "Accounts of the last finished cycle by outcome (live, stored, failed).",
    OUTCOME,
)
SYNC_RUNNING = _gauge("mt5_sync_running", "1 while a sync cycle runs.")
BRIDGE_UP = _gauge(
    "mt5_bridge_up",
    "1 if the last attempt to use the source (health check, account list) worked; 0 if it "
    "failed, and 0 until the first attempt; by source (a name from the agent's settings).",
    SOURCE,
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
    "until a cycle has fetched accounts; by source.",
    SOURCE,
)
SOURCE_DUPLICATE_ACCOUNTS = _gauge(
    "mt5_source_duplicate_accounts",
    "Accounts the source listed in its last listing that another source already holds: left to that "
    "source, never merged (a configuration error, alerted); by source.",
    SOURCE,
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
    SOURCE_SYNC_RUNS,
    SOURCE_LAST_SUCCESS,
    SYNC_LAST_RUN_ACCOUNTS,
    SYNC_RUNNING,
    BRIDGE_UP,
    STORE_UP,
    BRIDGE_TERMINAL_UP,
    SOURCE_DUPLICATE_ACCOUNTS,
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
    "Duration of bridge HTTP requests by endpoint and source (failed ones included).",
    (ENDPOINT, SOURCE),
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
    "or before its health said so, or when the positions poller is off; by source.",
    SOURCE,
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
    "Failed positions polls of one account by reason and source since the agent started.",
    REASON,
    SOURCE,
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
STREAM_CLIENTS = _gauge(
    "mt5_stream_clients", "WebSocket event stream connections open now (authenticated or not yet)."
)
STREAM_MESSAGES_SENT = _counter(
    "mt5_stream_messages_sent",
    "Messages sent on event streams by type (hello, subscribed, event, heartbeat, error) since the agent "
    "started; an event sent to n clients counts n.",
    TYPE,
)
STREAM_CLIENTS_CLOSED = _counter(
    "mt5_stream_clients_closed",
    "Event stream connections ended by reason since the agent started (docs/stream.md).",
    REASON,
)
STREAM_LATE_EVENTS = _counter(
    "mt5_stream_late_events",
    "Sharded agents: events that landed in the store after the stream had passed their id (committed "
    "more than the settle time behind a higher id): in the store, the REST API and replays, not sent live "
    "(docs/scaling.md).",
)
STREAM_REPLAY_EVENTS = Family(
    "mt5_stream_replay_events",
    Kind.HISTOGRAM,
    "Events replayed from the store to one stream subscription before it went live.",
    buckets=REPLAY_BUCKETS,
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
    STREAM_CLIENTS,
    STREAM_MESSAGES_SENT,
    STREAM_CLIENTS_CLOSED,
    STREAM_LATE_EVENTS,
    STREAM_REPLAY_EVENTS,
)

# MetaAPI connections (docs/metaapi.md), read at scrape time from each MetaAPI source -------------------
METAAPI_CONNECTED = _gauge(
    "mt5_metaapi_connected", "1 while the account's MetaAPI streaming connection is up.", ACCOUNT
)
METAAPI_BROKER_CONNECTED = _gauge(
    "mt5_metaapi_broker_connected",
    "1 while MetaAPI's terminal of the account is connected to the broker.",
    ACCOUNT,
)
METAAPI_SYNCHRONIZED = _gauge(
    "mt5_metaapi_synchronized",
    "1 while the account's MetaAPI terminal state is synchronized (its reads are live).",
    ACCOUNT,
)
METAAPI_LAST_PACKET_AGE = _gauge(
    "mt5_metaapi_last_packet_age_seconds",
    "Seconds since the account's connection last delivered anything; absent before its first packet.",
    ACCOUNT,
)
METAAPI_RECREATED = _counter(
    "mt5_metaapi_connections_recreated",
    "Connections of the account closed and recreated by a watchdog (never synchronized in time, silent).",
    ACCOUNT,
)
METAAPI_CONSECUTIVE_FAILURES = _gauge(
    "mt5_metaapi_consecutive_failures",
    "Failed connection attempts of the account since its last success (retried with backoff).",
    ACCOUNT,
)
METAAPI_FAMILIES: tuple[Family, ...] = (
    METAAPI_CONNECTED,
    METAAPI_BROKER_CONNECTED,
    METAAPI_SYNCHRONIZED,
    METAAPI_LAST_PACKET_AGE,
    METAAPI_RECREATED,
    METAAPI_CONSECUTIVE_FAILURES,
)

# Risk (DESIGN.md 12), read at scrape time from the risk book (agent/risk/book.py) -------------------
RISK_SYMBOLS_PER_ACCOUNT = 10  # symbol label values per account; the others are summed as `other`
ACCOUNT_LARGEST_OPEN_LOSS = _gauge(
    "mt5_account_largest_open_loss",
    "Loss of the account's worst open position (profit + swap) as a positive amount in the account "
    "currency, 0 when none is losing; cached: from the last positions snapshot the poller stored "
    "(see mt5_account_positions_last_poll_timestamp_seconds). Absent before the account's first poll.",
    ACCOUNT,
)
ACCOUNT_NET_EXPOSURE = _gauge(
    "mt5_account_net_exposure_lots",
    "Net open volume in lots (buy minus sell) per symbol; cached: from the last positions snapshot the "
    f"poller stored. At most {RISK_SYMBOLS_PER_ACCOUNT} symbols per account (largest absolute net "
    'first), the others summed as symbol="other".',
    ACCOUNT,
    SYMBOL,
)
ACCOUNT_EQUITY_PEAK = _gauge(
    "mt5_account_equity_peak",
    "Highest synced equity of the account in the period (day: this UTC day, opening at the last known "
    "equity; tracking: since mt5_risk_tracking_start_timestamp_seconds); cached: from the balance sync. "
    "The drawdown is 1 - mt5_account_equity / this peak (computed in PromQL, not exported).",
    ACCOUNT,
    PERIOD,
)
ACCOUNT_MARGIN_CALL_LEVEL = _gauge(
    "mt5_account_margin_call_level_ratio",
    "The broker's margin call level as a margin level ratio (MT5 margin_so_call / 100), as the "
    "account's terminal reports it; memory only, from the last live read that had it. Absent when the "
    "source does not report it or reports it in money (margin_so_mode): the alert then uses its rendered "
    "level.",
    ACCOUNT,
)
ACCOUNT_STOP_OUT_LEVEL = _gauge(
    "mt5_account_margin_stop_out_level_ratio",
    "The broker's stop-out level as a margin level ratio (MT5 margin_so_so / 100), as the account's "
    "terminal reports it; absent as mt5_account_margin_call_level_ratio is.",
    ACCOUNT,
)
ACCOUNT_POSITION_CORRELATION = _gauge(
    "mt5_account_position_correlation_max_ratio",
    "Highest direction-adjusted correlation of two symbols the account holds open: Pearson correlation "
    "of the log returns of their last 100 M5 bars (the bridge's rates) times the signs of their net "
    "lots (+ the risks add up, - a hedge). Refreshed every 60 s; absent with fewer than two symbols open "
    "or no bars.",
    ACCOUNT,
)
ACCOUNT_CORRELATED_EXPOSURE = _gauge(
    "mt5_account_correlated_exposure_lots",
    "Net open lots (absolute) of the account's symbols that move with another of its open symbols "
    "(direction-adjusted correlation 0.5 or more, as mt5_account_position_correlation_max_ratio); "
    "refreshed every 60 s.",
    ACCOUNT,
)
RISK_TRACKING_START = _gauge(
    "mt5_risk_tracking_start_timestamp_seconds",
    "Unix time equity peaks began to be tracked (the agent's start: peaks are kept in memory only).",
)
RISK_FAMILIES: tuple[Family, ...] = (
    ACCOUNT_LARGEST_OPEN_LOSS,
    ACCOUNT_NET_EXPOSURE,
    ACCOUNT_EQUITY_PEAK,
    ACCOUNT_MARGIN_CALL_LEVEL,
    ACCOUNT_STOP_OUT_LEVEL,
    ACCOUNT_POSITION_CORRELATION,
    ACCOUNT_CORRELATED_EXPOSURE,
    RISK_TRACKING_START,
)

# Shards (issue 16, docs/scaling.md): exported only by an agent started with MT5_AGENT_SHARD=i/N. No
# `shard` label: Prometheus adds the target's own (relabelling), which these must not clash with.
SHARD_INDEX = _gauge("mt5_agent_shard_index", "This agent's shard index i (MT5_AGENT_SHARD=i/N).")
SHARD_COUNT = _gauge("mt5_agent_shard_count", "The shard count N this agent was started with.")
SHARD_LEASE_UP = _gauge(
    "mt5_agent_shard_lease_up",
    "1 if this shard's last heartbeat reached its lease document in the store; 0 if it failed.",
)
SHARD_CONFLICTS = _gauge(
    "mt5_agent_shard_conflicts",
    "Other live shards in conflict with this one, by kind: duplicate_index (the same i/N: its accounts "
    "are synced twice), count_mismatch (another N).",
    "kind",
)
SHARD_FAMILIES: tuple[Family, ...] = (SHARD_INDEX, SHARD_COUNT, SHARD_LEASE_UP, SHARD_CONFLICTS)

FAMILIES: tuple[Family, ...] = (
    *SHARD_FAMILIES,
    *EVENT_FAMILIES,
    *METAAPI_FAMILIES,
    *RISK_FAMILIES,
    *ACCOUNT_FAMILIES,
    *GLOBAL_FAMILIES,
)

# Prometheus' own per-target series (not exported by the agent): 0 when a scrape of the agent failed.
SCRAPE_UP = "up"
