"""/metrics writes the risk families itself (RiskCollector.render): its bytes must be exactly what
prometheus_client's encoders write for the same registry, in every format we serve, with label values that
need escaping, before any book is attached and after it changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.exposition import choose_encoder

from agent.domain.accounts import AccountValues
from agent.domain.freshness import Thresholds
from agent.risk.book import RiskBook
from agent.sync.fleet import AccountState, FleetSnapshot, SyncStatus
from agent.telemetry.exposition import render
from agent.telemetry.registry import AgentMetrics
from tests.events.factory import position, snapshot
from tests.observability.test_fast_exposition import ACCEPTS

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class StubFleet:
    def __init__(self) -> None:
        self.snap = FleetSnapshot(version=0, accounts={}, failures={})

    def snapshot(self) -> FleetSnapshot:
        return self.snap

    @property
    def status(self) -> SyncStatus:
        return SyncStatus()

    def set(self, version: int, equity: dict[int, float], at: datetime) -> None:
        accounts = {
            a: AccountState(a, values=AccountValues(balance=1000.0, equity=e), live_data_at=at)
            for a, e in equity.items()
        }
        self.snap = FleetSnapshot(version=version, accounts=accounts, failures={})


def _same(metrics: AgentMetrics) -> None:
    for accept in ACCEPTS:
        encoder, _ = choose_encoder(accept)
        body, _ = render(metrics, accept)
        assert body == encoder(metrics.registry), accept


@pytest.mark.parametrize("with_book", [False, True])
def test_risk_text_equals_prometheus_client(with_book: bool) -> None:
    metrics = AgentMetrics(runtime=False)
    fleet = StubFleet()
    metrics.attach_fleet(fleet, Thresholds(), lambda: T0)
    _same(metrics)  # nothing attached yet: the families' HELP and TYPE only
    if not with_book:
        return
    book = RiskBook(clock=lambda: T0)
    metrics.attach_risk(book, fleet.snapshot)
    _same(metrics)
    fleet.set(1, {1001: 1000.0, 1002: 0.0, 1003: 12345678.9}, T0)
    odd = [
        replace(position(i, account=1001, symbol=s, volume=0.1 * i), profit=-1.5 * i)
        for i, s in enumerate(['EUR"USD', "A\\B", "ÄÖÜ", "X" * 40, "other"], start=1)
    ]
    book.on_positions(snapshot(0, *odd, account=1001))
    book.on_positions(snapshot(0, account=1002))
    _same(metrics)
    text = render(metrics, "")[0].decode()
    assert 'mt5_account_equity_peak{account="1002",period="tracking"} 0.0' in text
    assert "mt5_account_equity_drawdown" not in text  # computed in PromQL from equity and peak (issue 17)
    fleet.set(2, {1001: 900.0, 1002: 5.0, 1003: 1e-7}, T0 + timedelta(minutes=1))
    _same(metrics)
    text = render(metrics, "")[0].decode()
    assert 'mt5_account_net_exposure_lots{account="1001",symbol="EUR\\"USD"} 0.1' in text
    assert 'mt5_account_equity_peak{account="1001",period="tracking"} 1000.0' in text
    assert 'mt5_account_equity_peak{account="1002",period="tracking"} 5.0' in text


async def test_prepared_text_is_the_books_and_used_once() -> None:
    """`prepare` writes the text off the event loop for the next scrape only: that render equals the
    encoders' output, and a later one (after the book moved) reads the book again."""
    metrics = AgentMetrics(runtime=False)
    fleet = StubFleet()
    metrics.attach_fleet(fleet, Thresholds(), lambda: T0)
    book = RiskBook(clock=lambda: T0)
    metrics.attach_risk(book, fleet.snapshot)
    fleet.set(1, {1001: 1000.0}, T0)
    book.on_positions(snapshot(0, replace(position(1, account=1001), profit=-7.0), account=1001))
    await metrics.risk.prepare()
    _same(metrics)  # the first render takes the prepared text
    book.on_positions(snapshot(1, replace(position(1, account=1001), profit=-9.0), account=1001))
    _same(metrics)
    assert 'mt5_account_largest_open_loss{account="1001"} 9.0' in render(metrics, "")[0].decode()


def test_text_is_cached_and_rewritten_per_account() -> None:
    """Issue 17: a scrape while the book stands still reuses the last text whole; after one account moved,
    only its lines are written again (the others' are the same objects), and the bytes stay the encoders'."""
    metrics = AgentMetrics(runtime=False)
    fleet = StubFleet()
    metrics.attach_fleet(fleet, Thresholds(), lambda: T0)
    book = RiskBook(clock=lambda: T0)
    metrics.attach_risk(book, fleet.snapshot)
    fleet.set(1, {1001: 1000.0, 1002: 2000.0}, T0)
    for account in (1001, 1002):
        book.on_positions(snapshot(0, replace(position(1, account=account), profit=-7.0), account=account))
    _same(metrics)
    first = metrics.risk._text
    assert first is not None and first.version == book.version
    _same(metrics)
    assert metrics.risk._text is first  # nothing moved: not written again
    # the same summary again (a poll that changed nothing) and the same equity sample: still nothing
    book.on_positions(snapshot(1, replace(position(1, account=1001), profit=-7.0), account=1001))
    fleet.set(2, {1001: 1000.0, 1002: 2000.0}, T0)
    _same(metrics)
    assert metrics.risk._text is first
    book.on_positions(snapshot(2, replace(position(1, account=1001), profit=-9.0), account=1001))
    fleet.set(3, {1001: 1000.0, 1002: 2500.0}, T0 + timedelta(minutes=1))  # 1002's peak moves
    _same(metrics)
    second = metrics.risk._text
    assert second is not None and second is not first
    assert second.open_lines[1002] is first.open_lines[1002]  # reused
    assert second.open_lines[1001] is not first.open_lines[1001]
    assert second.peak_lines[1001] is first.peak_lines[1001]
    assert second.peak_lines[1002] is not first.peak_lines[1002]
    text = render(metrics, "")[0].decode()
    assert 'mt5_account_largest_open_loss{account="1001"} 9.0' in text
    assert 'mt5_account_equity_peak{account="1002",period="tracking"} 2500.0' in text
    fleet.set(4, {1002: 2500.0}, T0 + timedelta(minutes=2))  # 1001 leaves the fleet
    _same(metrics)
    assert 'account="1001"' not in render(metrics, "")[0].decode()
