"""What one MetaAPI account's streaming connection has told us, kept by our own listener.

The listener is where MetaAPI's known delivery faults are absorbed, so everything read from the book is
already consistent:
- an update delivered twice (two server instances of one account each send it) changes nothing: a
  position is keyed by its id and an update older than the one held (by `updateTime`) is dropped;
- a removed position is not brought back by a stale update or a stale full replace from the other
  instance: its removal leaves a tombstone with the removal time, and only an update made after that
  time would pass it (MT5 never reuses a position id, so in practice none does);
- callbacks from a connection that was replaced are ignored (each connection gets its own generation).
Every callback, whatever it carries (prices, health status), counts as a packet for the silence watchdog.
Values stay as MetaAPI sent them until read (`convert` validates them then).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.sources.bridge.parse import MAX_TIMESTAMP, PayloadError
from agent.sources.metaapi.convert import parse_time, position_id


@dataclass
class Held:
    item: dict[str, Any]
    update_time: datetime | None  # None: unreadable, and the read fails naming it


@dataclass
class AccountBook:
    login: int
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    tombstone_ttl: float = 86_400.0
    generation: int = 0
    info: dict[str, Any] | None = None
    positions: dict[int, Held] = field(default_factory=dict)
    tombstones: dict[int, datetime] = field(default_factory=dict)  # position id -> when it was removed
    positions_synced: bool = False
    replaced: bool = False  # this connection sent the full positions set (else: take the terminal state's)
    instances: set[str] = field(default_factory=set)  # server instances connected
    broker: dict[str, bool] = field(default_factory=dict)  # instance -> connected to the broker
    last_packet: float | None = None  # monotonic time of the last callback
    malformed: int = 0  # updates without a readable position id (skipped)
    stale_dropped: int = 0  # updates dropped as older than the held one or removed (duplicates absorbed)

    def reset(self, generation: int) -> None:
        """A new connection: what the old one said about connectivity no longer holds; positions and
        tombstones stay (the new connection's replace brings the positions up to date)."""
        self.generation = generation
        self.instances.clear()
        self.broker.clear()
        self.positions_synced = False
        self.replaced = False
        self.last_packet = self.monotonic()

    @property
    def connected(self) -> bool:
        return bool(self.instances)

    @property
    def connected_to_broker(self) -> bool:
        return any(self.broker.values())

    def packet_age(self) -> float | None:
        return None if self.last_packet is None else max(0.0, self.monotonic() - self.last_packet)

    # --- positions ------------------------------------------------------------------------------

    def _prune(self, now: datetime) -> None:
        cutoff = now.timestamp() - self.tombstone_ttl
        for pid in [p for p, at in self.tombstones.items() if at.timestamp() < cutoff]:
            del self.tombstones[pid]

    def _admit(self, item: Any) -> tuple[int, Held] | None:
        """The position as it would be held, or None when it must be dropped."""
        try:
            pid = position_id(item)
        except PayloadError:
            self.malformed += 1
            return None
        try:
            updated: datetime | None = parse_time("updateTime", item.get("updateTime"), MAX_TIMESTAMP)
        except PayloadError:
            updated = None
        removed = self.tombstones.get(pid)
        if removed is not None and (updated is None or updated <= removed):
            self.stale_dropped += 1
            return None
        held = self.positions.get(pid)
        if held is not None and held.update_time and updated and updated < held.update_time:
            self.stale_dropped += 1
            return None
        return pid, Held(dict(item), updated)

    def update(self, items: Iterable[Any]) -> None:
        for item in items:
            admitted = self._admit(item)
            if admitted is not None:
                self.positions[admitted[0]] = admitted[1]

    def remove(self, ids: Iterable[Any]) -> None:
        now = self.clock()
        for raw in ids:
            try:
                pid = position_id({"id": raw})
            except PayloadError:
                self.malformed += 1
                continue
            self.positions.pop(pid, None)
            self.tombstones[pid] = now
        self._prune(now)

    def replace(self, items: Iterable[Any]) -> None:
        """A full set from a synchronization: positions not in it are gone (tombstoned)."""
        now = self.clock()
        fresh: dict[int, Held] = {}
        for item in items:
            admitted = self._admit(item)
            if admitted is not None:
                fresh[admitted[0]] = admitted[1]
        for pid in self.positions.keys() - fresh.keys():
            # Gone by this set: what we held is stale from now on, yet a later modification (a newer
            # updateTime) shows the set itself was behind, so the tombstone dates from the last update held.
            self.tombstones[pid] = self.positions[pid].update_time or now
        self.positions = fresh
        self.replaced = True
        self._prune(now)


_Callback = Callable[..., Awaitable[None]]


class Listener:
    """A synchronization listener (the SDK's `SynchronizationListener` interface, duck-typed: the SDK
    is imported lazily) writing into one book for one connection generation."""

    def __init__(self, book: AccountBook, generation: int) -> None:
        self._book = book
        self._generation = generation

    def __repr__(self) -> str:
        return f"Listener(login={self._book.login}, generation={self._generation})"

    def _live(self) -> AccountBook | None:
        book = self._book
        if book.generation != self._generation:
            return None  # a replaced connection's late callback
        book.last_packet = book.monotonic()
        return book

    async def on_connected(self, instance_index: str, replicas: int = 1) -> None:
        if (book := self._live()) is not None:
            book.instances.add(str(instance_index))

    async def on_disconnected(self, instance_index: str) -> None:
        if (book := self._live()) is not None:
            book.instances.discard(str(instance_index))
            book.broker.pop(str(instance_index), None)

    on_stream_closed = on_disconnected

    async def on_broker_connection_status_changed(self, instance_index: str, connected: bool) -> None:
        if (book := self._live()) is not None:
            book.broker[str(instance_index)] = connected is True

    async def on_account_information_updated(
        self, instance_index: str, account_information: Mapping[str, Any]
    ) -> None:
        if (book := self._live()) is not None and isinstance(account_information, Mapping):
            book.info = dict(account_information)

    async def on_positions_replaced(self, instance_index: str, positions: Iterable[Any]) -> None:
        if (book := self._live()) is not None:
            book.replace(positions or ())

    async def on_positions_synchronized(self, instance_index: str, synchronization_id: str = "") -> None:
        if (book := self._live()) is not None:
            book.positions_synced = True

    async def on_positions_updated(
        self, instance_index: str, positions: Iterable[Any], removed_positions_ids: Iterable[Any] = ()
    ) -> None:
        if (book := self._live()) is not None:
            book.update(positions or ())
            book.remove(removed_positions_ids or ())

    async def on_position_updated(self, instance_index: str, position: Any) -> None:
        if (book := self._live()) is not None:
            book.update((position,))

    async def on_position_removed(self, instance_index: str, position_id: Any) -> None:
        if (book := self._live()) is not None:
            book.remove((position_id,))

    def __getattr__(self, name: str) -> _Callback:
        """Every other callback (prices, health status, orders, deals: the history storage keeps those)
        only counts as a packet."""
        if not name.startswith("on_"):
            raise AttributeError(name)

        async def packet(*_args: Any, **_kwargs: Any) -> None:
            self._live()

        return packet
