"""Store operation durations reach mt5_store_operation_duration_seconds once per call: from a store that
reports them itself (observe_operations), else through the TimedStore proxy; never both."""

from __future__ import annotations

from typing import Any

from agent.telemetry.registry import AgentMetrics
from agent.telemetry.store_timing import TimedStore

HIST = "mt5_store_operation_duration_seconds_count"


class PlainStore:
    async def get_accounts(self) -> list[int]:
        return [1]

    async def not_an_operation(self) -> str:
        return "untimed"

    def ping(self) -> str:  # not a coroutine: passed through as is
        return "pong"


class ReportingStore(PlainStore):
    def __init__(self) -> None:
        self.observer: Any = None

    def observe_operations(self, observer: Any) -> None:
        self.observer = observer


def _count(metrics: AgentMetrics, operation: str) -> float | None:
    return metrics.registry.get_sample_value(HIST, {"operation": operation})


async def test_a_plain_store_is_timed_through_the_proxy() -> None:
    metrics = AgentMetrics()
    store = metrics.timed_store(PlainStore())
    assert isinstance(store, TimedStore) and metrics.timed_store(store) is store  # never wrapped twice
    assert await store.get_accounts() == [1]
    assert await store.get_accounts() == [1]
    assert await store.not_an_operation() == "untimed"
    assert store.ping() == "pong"
    assert _count(metrics, "get_accounts") == 2
    assert _count(metrics, "not_an_operation") is None and _count(metrics, "other") is None


async def test_a_reporting_store_is_observed_not_wrapped() -> None:
    metrics = AgentMetrics()
    inner = ReportingStore()
    assert metrics.timed_store(inner) is inner
    assert inner.observer == metrics.observe_store_operation
    assert await inner.get_accounts() == [1]  # the store reports by itself: no proxy counted this
    assert _count(metrics, "get_accounts") is None
    inner.observer("get_accounts", 0.01)
    inner.observer("drop_everything", 0.01)  # outside the catalog's set
    assert _count(metrics, "get_accounts") == 1 and _count(metrics, "other") == 1
