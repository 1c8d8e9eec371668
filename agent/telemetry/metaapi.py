"""MetaAPI connection health at scrape time (docs/metaapi.md): each MetaAPI source's
`connection_states()`, one set of series per configured login (a source maps few accounts).

Per-account series carry `account` only (DESIGN.md section 7): the source holding the account is joined
from `mt5_account_info`. No MetaAPI account id and no secret ever appear.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.sources.metaapi.stream import ConnectionState
from agent.telemetry import catalog as m

StatesReader = Callable[[], Sequence[ConnectionState]]


class MetaApiCollector(Collector):
    def __init__(self, readers: Iterable[StatesReader] = ()) -> None:
        self.readers: list[StatesReader] = list(readers)

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    @staticmethod
    def _families() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in m.METAAPI_FAMILIES:
            cls = CounterMetricFamily if f.kind is m.Kind.COUNTER else GaugeMetricFamily
            out[f.name] = cls(f.name, f.help, labels=list(f.labels))
        return out

    def collect(self) -> Iterable[Metric]:
        f = self._families()
        if not self.readers:
            return []
        states = sorted((s for read in self.readers for s in read()), key=lambda s: s.account)
        for s in states:
            acc = [str(s.account)]
            f[m.METAAPI_CONNECTED.name].add_metric(acc, 1 if s.connected else 0)
            f[m.METAAPI_BROKER_CONNECTED.name].add_metric(acc, 1 if s.connected_to_broker else 0)
            f[m.METAAPI_SYNCHRONIZED.name].add_metric(acc, 1 if s.synchronized else 0)
            if s.last_packet_age_seconds is not None:
                f[m.METAAPI_LAST_PACKET_AGE.name].add_metric(acc, s.last_packet_age_seconds)
            f[m.METAAPI_RECREATED.name].add_metric(acc, s.recreated)
            f[m.METAAPI_CONSECUTIVE_FAILURES.name].add_metric(acc, s.consecutive_failures)
        return list(f.values())
