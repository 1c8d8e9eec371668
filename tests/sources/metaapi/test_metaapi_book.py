"""The listener's book on its own: idempotent by position id and update time, tombstones for removed
positions, late callbacks of a replaced connection ignored, every callback a packet. (No SDK involved;
the callbacks are those of the SDK's `SynchronizationListener`, as the fake SDK delivers them.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.sources.metaapi.book import AccountBook, Listener
from tests.sources.metaapi.fake_sdk import position

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 100.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def _book() -> tuple[AccountBook, Listener, Clock]:
    clock = Clock()
    book = AccountBook(7, clock=clock.now, monotonic=clock.monotonic, tombstone_ttl=3600)
    book.reset(1)
    return book, Listener(book, 1), clock


def _held(book: AccountBook) -> dict[int, datetime | None]:
    return {pid: h.update_time for pid, h in book.positions.items()}


async def test_duplicates_and_older_updates_change_nothing() -> None:
    book, listener, _ = _book()
    new = position(1, updateTime=T0 + timedelta(minutes=1), stopLoss=1.0)
    old = position(1, updateTime=T0)
    for _ in range(2):  # two server instances
        await listener.on_positions_updated("i:0:a", [new], [])
        await listener.on_position_updated("i:1:b", new)
    await listener.on_position_updated("i:1:b", old)  # late
    assert _held(book) == {1: T0 + timedelta(minutes=1)} and book.positions[1].item["stopLoss"] == 1.0
    assert book.stale_dropped == 1
    same_time = position(1, updateTime=T0 + timedelta(minutes=1), stopLoss=1.0, currentPrice=1.2)
    await listener.on_position_updated("i:0:a", same_time)  # a price move keeps updateTime: taken
    assert book.positions[1].item["currentPrice"] == 1.2


async def test_removed_position_is_tombstoned_until_its_ttl() -> None:
    book, listener, clock = _book()
    await listener.on_positions_updated("i:0:a", [position(1, updateTime=T0)], [])
    await listener.on_positions_updated("i:0:a", [], ["1"])
    await listener.on_position_removed("i:1:b", "1")
    await listener.on_position_updated("i:1:b", position(1, updateTime=T0 + timedelta(minutes=30)))
    await listener.on_positions_replaced("i:1:b", [position(1, updateTime=T0)])
    assert _held(book) == {} and book.tombstones == {1: NOW}
    clock.wall = NOW + timedelta(hours=2)
    await listener.on_positions_updated("i:0:a", [], ["2"])  # any removal prunes expired tombstones
    assert book.tombstones == {2: NOW + timedelta(hours=2)}


async def test_a_position_missing_from_a_replace_returns_only_with_a_newer_update() -> None:
    book, listener, _ = _book()
    await listener.on_positions_replaced("i:0:a", [position(1, updateTime=T0), position(2, updateTime=T0)])
    await listener.on_positions_replaced("i:1:b", [position(2, updateTime=T0)])
    assert _held(book) == {2: T0} and book.tombstones == {1: T0}
    await listener.on_position_updated("i:0:a", position(1, updateTime=T0))  # stale: stays gone
    assert 1 not in book.positions
    await listener.on_position_updated("i:0:a", position(1, updateTime=T0 + timedelta(seconds=1)))
    assert 1 in book.positions  # modified after the set was taken: the set was behind


async def test_late_callbacks_of_a_replaced_connection_are_ignored_and_packets_counted() -> None:
    book, old, clock = _book()
    await old.on_connected("i:0:a", 1)
    await old.on_broker_connection_status_changed("i:0:a", True)
    assert book.connected and book.connected_to_broker
    book.reset(2)
    new = Listener(book, 2)
    clock.mono = 105.0
    await old.on_positions_updated("i:0:a", [position(9, updateTime=T0)], [])
    await old.on_symbol_price_updated("i:0:a", {"symbol": "EURUSD"})
    assert book.positions == {} and book.packet_age() == 5.0 and not book.connected
    await new.on_health_status("i:0:a", {"restApiHealthy": True})  # any callback is a packet
    assert book.packet_age() == 0.0
    await new.on_connected("i:0:a", 1)
    await new.on_disconnected("i:0:a")
    assert not book.connected
    await new.on_positions_updated("i:0:a", [{"id": "not-a-number"}, {"no": "id"}], [])
    assert book.malformed == 2 and book.positions == {}
