"""The bridge's Prometheus metrics, on a registry of its own (never prometheus_client's global one).

Event instruments are fed as things happen: each MT5 call's duration by function, the wait for a
terminal's lock, failed calls by function and reason, HTTP request durations by route template. State
(is each terminal up) is read from the pool at scrape time by a custom collector, so it is never stale.
Every label comes from a closed set: MT5 functions and failure reasons listed here, terminal names from
the bridge's configuration, route templates from its router.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge import __version__

# The Terminal interface's calls that reach the terminal (last_error only reads the package's state).
TERMINAL_FUNCTIONS = (
    "initialize",
    "login",
    "terminal_info",
    "account_info",
    "positions_get",
    "history_deals_get",
    "copy_rates_from_pos",
    "shutdown",
)
REASONS = ("timeout", "login_failed", "disconnected", "no_data", "other")
# The reasons each function can fail with; every pair is exported from the start at 0.
FAILURE_REASONS: Mapping[str, tuple[str, ...]] = {
    "initialize": ("timeout", "disconnected", "other"),
    "login": ("timeout", "login_failed", "disconnected", "other"),
    "terminal_info": ("timeout", "disconnected", "other"),
    "account_info": ("timeout", "disconnected", "no_data", "other"),
    "positions_get": ("timeout", "disconnected", "no_data", "other"),
    "history_deals_get": ("timeout", "disconnected", "no_data", "other"),
    "copy_rates_from_pos": ("timeout", "disconnected", "no_data", "other"),
    "shutdown": ("other",),
}
CODE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
UNMATCHED_ROUTE = "unmatched"  # any path the router does not know: one series, never the raw path

# MT5 calls take from well under a millisecond (a cached read) to seconds (a login, a stuck terminal).
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

TerminalStates = Callable[[], Iterable[tuple[str, bool]]]


class TerminalUpCollector(Collector):
    """`mt5_bridge_terminal_up{terminal}`: 1 while the bridge can read the terminal, from current state."""

    def __init__(self, states: TerminalStates) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mt5_bridge_terminal_up",
            "1 while the bridge reaches the terminal and it is connected to the trade server, else 0 "
            "(after a failed initialize, a disconnection or a call that timed out).",
            labels=["terminal"],
        )
        for name, up in self._states():
            family.add_metric([name], 1.0 if up else 0.0)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # state is dynamic: nothing to check at registration


class BridgeMetrics:
    """One bridge's instruments and registry. The pool feeds the terminal ones, the app the HTTP one."""

    def __init__(self, *, version: str = __version__, runtime: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.call_duration = Histogram(
            "mt5_bridge_terminal_call_duration_seconds",
            "Duration of MT5 calls on the terminal's worker thread, by function (a call that hangs is "
            "observed when it finally returns).",
            ["function"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.lock_wait = Histogram(
            "mt5_bridge_terminal_lock_wait_seconds",
            "Time a request waited for its terminal's lock (one account at a time per terminal).",
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "mt5_bridge_terminal_call_failures",
            "MT5 calls that failed, by function and reason (timeout, login_failed, disconnected, "
            "no_data, other). Requests refused while a timed-out call still blocks the terminal make no "
            "call and are not counted here (they are 504s in the HTTP histogram).",
            ["function", "reason"],
            registry=r,
        )
        self.http_duration = Histogram(
            "mt5_bridge_http_request_duration_seconds",
            "Duration of HTTP requests to the bridge, by route template and status class.",
            ["route", "code_class"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        for function in TERMINAL_FUNCTIONS:
            self.call_duration.labels(function)
            for reason in FAILURE_REASONS[function]:
                self.failures.labels(function, reason)
        Gauge(
            "mt5_bridge_build_info", "Version of the running bridge (always 1).", ["version"], registry=r
        ).labels(version).set(1)
        if runtime:  # process_* and python_*, as every exporter has
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def watch(self, states: TerminalStates) -> None:
        """Export terminal_up from `states` (name, up) at every scrape."""
        self.registry.register(TerminalUpCollector(states))

    def observe_call(self, function: str, seconds: float) -> None:
        self.call_duration.labels(function).observe(seconds)

    def call_observer(self, function: str) -> Callable[[float], None]:
        """`observe_call` bound to one function: its histogram child, looked up once (the children exist
        from the start, so this is the same series), for callers that observe per call."""
        return self.call_duration.labels(function).observe

    def failure(self, function: str, reason: str) -> None:
        """Count a failed call; a pair outside the closed set is counted as `other`."""
        if function not in FAILURE_REASONS:
            return
        if reason not in FAILURE_REASONS[function]:
            reason = "other" if "other" in FAILURE_REASONS[function] else FAILURE_REASONS[function][0]
        self.failures.labels(function, reason).inc()

    def observe_http(self, route: str, status: int, seconds: float) -> None:
        code_class = f"{status // 100}xx" if 100 <= status < 600 else "5xx"
        self.http_duration.labels(route, code_class).observe(seconds)
