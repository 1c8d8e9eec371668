"""Store operation durations reach mt5_store_operation_duration_seconds once per call, reported by the
store itself (observe_operations): nothing wraps it, so calls through its concerns are counted too."""

from __future__ import annotations

from typing import Any

from agent.telemetry.registry import AgentMetrics

HIST = "mt5_store_operation_duration_seconds_count"


class ReportingStore:
    def __init__(self) -> None:
        self.observer: Any = None

    def observe_operations(self, observer: Any) -> None:
        self.observer = observer

    async def get_accounts(self) -> list[int]:
        return [1]


def _count(metrics: AgentMetrics, operation: str) -> float | None:
    return metrics.registry.get_sample_value(HIST, {"operation": operation})


async def test_a_store_is_observed_not_wrapped() -> None:
    metrics = AgentMetrics()
    inner = ReportingStore()
    assert metrics.timed_store(inner) is inner
    assert inner.observer == metrics.observe_store_operation
    assert await inner.get_accounts() == [1]  # the store reports by itself: no proxy counted this
    assert _count(metrics, "get_accounts") is None
    inner.observer("get_accounts", 0.01)
    inner.observer("drop_everything", 0.01)  # outside the catalog's set
    assert _count(metrics, "get_accounts") == 1 and _count(metrics, "other") == 1
