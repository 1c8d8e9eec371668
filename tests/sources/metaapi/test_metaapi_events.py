"""MetaAPI delivery faults through the real events detector: duplicated callbacks (two server instances)
and removed positions coming back yield no duplicate or invented trade events.

Against a fake of the SDK's connection and listener interface (tests/sources/metaapi/fake_sdk.py): the
MetaAPI cloud cannot run here, and no test reaches it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.domain.trades import EventType, PositionsSnapshot, TradeEvent
from agent.events.detector import Detector
from agent.sources.metaapi import MetaApiSource
from tests.sources.metaapi.fake_sdk import INSTANCES, FakeCloud, deal, position
from tests.sources.metaapi.support import CALM, make_source, wait_until

LOGIN = 51234567
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SINCE = T0 - timedelta(days=1)


async def _round(source: MetaApiSource, detector: Detector) -> list[TradeEvent]:
    """One poll round as the poller does it: deals swept first, then the positions snapshot."""
    until = datetime.now(UTC)
    deals = await source.read_deals(LOGIN, SINCE, until)
    snap = await source.read_positions(LOGIN)
    assert isinstance(deals, list), deals
    assert isinstance(snap, PositionsSnapshot), snap
    return detector.observe(LOGIN, snapshot=snap, deals=deals, detected_at=datetime.now(UTC))


async def _lifecycle(tmp_path: Path, instances: int, stale: bool) -> list[TradeEvent]:
    """Open, modify sl/tp, close one position, with every callback delivered by `instances` server
    instances; `stale`: the lagging instance then re-delivers old updates of the removed position."""
    cloud = FakeCloud()
    script = cloud.add("acc-1", LOGIN, instances=instances)
    source = make_source(cloud, tmp_path, {str(LOGIN): "acc-1"}, bounds=CALM)
    detector = Detector()
    events: list[TradeEvent] = []
    try:
        source.start()
        await wait_until(lambda: source.connection_states()[0].synchronized, what="synchronized")
        conn = cloud.current("acc-1")
        events += await _round(source, detector)

        opened = position(1001, time=T0, updateTime=T0)
        script.deals.append(deal(2001, 1001, time=T0))
        await conn.emit("on_deal_added", script.deals[-1])
        await conn.emit("on_positions_updated", [opened], [])
        await conn.emit("on_position_updated", opened)  # the SDK also calls the singular form
        events += await _round(source, detector)

        t1 = T0 + timedelta(minutes=1)
        modified = position(1001, time=T0, updateTime=t1, stopLoss=1.09, takeProfit=1.12)
        await conn.emit("on_positions_updated", [modified], [])
        await conn.emit("on_positions_updated", [opened], [], instances=INSTANCES[1:])  # older, late
        events += await _round(source, detector)

        t2 = T0 + timedelta(minutes=2)
        script.deals.append(
            deal(2002, 1001, time=t2, type="DEAL_TYPE_SELL", entryType="DEAL_ENTRY_OUT", profit=12.5)
        )
        await conn.emit("on_deal_added", script.deals[-1])
        await conn.emit("on_positions_updated", [], ["1001"])
        await conn.emit("on_position_removed", "1001")
        events += await _round(source, detector)

        if stale:  # the other instance lags: the removed position's old state comes back
            await conn.emit("on_positions_updated", [modified], [], instances=INSTANCES[1:])
            await conn.emit("on_position_updated", opened, instances=INSTANCES[1:])
            await conn.emit("on_positions_replaced", [modified], instances=INSTANCES[1:])
            snap = await source.read_positions(LOGIN)
            assert isinstance(snap, PositionsSnapshot) and snap.positions == ()
            events += await _round(source, detector)
        events += await _round(source, detector)
        assert detector.rejected == []
        dropped = source.connection_states()[0].stale_updates_dropped
        assert dropped >= (1 if instances > 1 else 0) + (3 if stale else 0), dropped
    finally:
        await source.close()
    return events


def _kinds(events: list[TradeEvent]) -> list[tuple[str, int, str]]:
    return [(e.type.value, e.identifier, e.dedup_key) for e in events]


async def test_duplicated_callbacks_produce_no_duplicate_events(tmp_path: Path) -> None:
    once = await _lifecycle(tmp_path, instances=1, stale=False)
    twice = await _lifecycle(tmp_path, instances=2, stale=False)
    assert [e.type for e in once] == [EventType.TRADE_OPENED, EventType.TRADE_UPDATED, EventType.TRADE_CLOSED]
    keys = [e.dedup_key for e in twice]
    assert len(keys) == len(set(keys))
    assert _kinds(twice) == _kinds(once)
    closed = twice[-1]
    assert closed.data["pnl"] == 12.5 and closed.data["pnl_complete"] is True


async def test_removed_position_does_not_come_back(tmp_path: Path) -> None:
    plain = await _lifecycle(tmp_path, instances=1, stale=False)
    stale = await _lifecycle(tmp_path, instances=2, stale=True)
    assert _kinds(stale) == _kinds(plain)  # no second OPENED, no second CLOSED
