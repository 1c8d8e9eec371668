"""A fake of the `metaapi-cloud-sdk` surface the MetaAPI source uses: the cloud cannot run here, and the
tests never reach it (no network at all: everything happens on the event loop).

Shapes follow the SDK (29.x): `MetaApi(token, opts).metatrader_account_api.get_account(id)` ->
account; `account.get_streaming_connection()` -> connection with `add_synchronization_listener`,
`connect`, `wait_synchronized(opts)`, `synchronized`, `history_storage.get_deals_by_time_range`, `close`;
listeners get the SDK's callbacks (`on_connected(instance_index, replicas)`, `on_positions_replaced`,
`on_positions_updated(instance_index, positions, removed_ids)`, `on_position_updated`, ...) with MetaAPI's
dicts (`MetatraderPosition`, `MetatraderDeal`, `MetatraderAccountInformation`, times as tz-aware datetimes).

The failure modes MetaAPI's users report are scripted per account (`FakeAccountScript`): every callback
delivered by two server instances (duplicates), a connection that never synchronizes, rate limits
(`TooManyRequestsException` with `metadata.recommendedRetryTime`), connection errors, a connection that
goes silent (no packet at all), and late, stale callbacks from the other instance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

INSTANCES = ("vint-hill:0:ps-mpa-1", "vint-hill:1:ps-mpa-2")


class TooManyRequestsException(Exception):  # the SDK's name (matched by name by the adapter)
    def __init__(self, message: str, metadata: dict[str, Any]) -> None:
        super().__init__(message)
        self.metadata = metadata


class NotFoundException(Exception):
    pass


class TimeoutException(Exception):
    pass


class UnauthorizedException(Exception):
    pass


@dataclass
class FakeAccountScript:
    login: int
    info: dict[str, Any]
    positions: dict[int, dict[str, Any]] = field(default_factory=dict)
    deals: list[dict[str, Any]] = field(default_factory=list)
    instances: int = 1  # 2: every callback delivered twice, once per server instance
    never_sync: int = 0  # this many connections never synchronize
    fail_connect: int = 0  # this many get_account calls raise a plain error
    error_text: str = "connection refused"
    rate_limited: list[float] = field(default_factory=list)  # retry-after seconds of the next attempts
    silent_after_sync: int = 0  # this many connections go silent right after synchronizing
    heartbeat: float = 0.05  # seconds between packets (price updates) of a live connection
    unknown: bool = False  # get_account: NotFoundException
    hash_sync: bool = False  # positions not resent (hash matched): only the SDK's terminal state has them


def position(pid: int, **kw: Any) -> dict[str, Any]:
    t = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    p: dict[str, Any] = {
        "id": str(pid),
        "type": "POSITION_TYPE_BUY",
        "symbol": "EURUSD",
        "magic": 0,
        "time": t,
        "brokerTime": "2026-01-05 11:00:00.000",
        "updateTime": t,
        "openPrice": 1.1,
        "currentPrice": 1.1,
        "currentTickValue": 1.0,
        "volume": 0.1,
        "profit": 0.0,
        "unrealizedProfit": 0.0,
        "swap": 0.0,
        "commission": 0.0,
        "reason": "POSITION_REASON_CLIENT",
    }
    p.update(kw)
    return p


def deal(ticket: int, pid: int, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": str(ticket),
        "type": "DEAL_TYPE_BUY",
        "entryType": "DEAL_ENTRY_IN",
        "symbol": "EURUSD",
        "magic": 0,
        "time": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "brokerTime": "2026-01-05 11:00:00.000",
        "volume": 0.1,
        "price": 1.1,
        "commission": 0.0,
        "swap": 0.0,
        "profit": 0.0,
        "positionId": str(pid),
        "orderId": str(pid),
        "platform": "mt5",
        "reason": "DEAL_REASON_CLIENT",
    }
    d.update(kw)
    return d


def account_info(login: int, **kw: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": "mt5",
        "broker": "Demo Broker Ltd",
        "currency": "USD",
        "server": "Demo-Server",
        "balance": 10_000.0,
        "equity": 10_050.5,
        "margin": 120.0,
        "freeMargin": 9_930.5,
        "leverage": 100,
        "marginLevel": 8375.4,
        "tradeAllowed": True,
        "name": "Jane Trader",
        "login": login,
        "type": "ACCOUNT_TRADE_MODE_DEMO",
    }
    info.update(kw)
    return info


class FakeHistoryStorage:
    def __init__(self, script: FakeAccountScript) -> None:
        self._script = script

    @property
    def deals(self) -> list[dict[str, Any]]:
        return list(self._script.deals)

    def get_deals_by_time_range(self, start_time: datetime, end_time: datetime) -> list[dict[str, Any]]:
        return [d for d in self._script.deals if start_time <= d["time"] <= end_time]


class FakeTerminalState:
    """The SDK's `TerminalState` as far as the source reads it (after synchronization)."""

    def __init__(self, script: FakeAccountScript) -> None:
        self._script = script

    @property
    def positions(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self._script.positions.values()]

    @property
    def account_information(self) -> dict[str, Any]:
        return dict(self._script.info)


class FakeConnection:
    def __init__(self, cloud: FakeCloud, account_id: str, script: FakeAccountScript, number: int) -> None:
        self.cloud = cloud
        self.account_id = account_id
        self.script = script
        self.number = number  # this account's n-th connection (0-based)
        self.listeners: list[Any] = []
        self.synchronized = False
        self.closed = False
        self.silent = False
        self.history_storage = FakeHistoryStorage(script)
        self.terminal_state = FakeTerminalState(script)
        self._ticker: asyncio.Task[None] | None = None
        self.created_at = time.monotonic()
        self.closed_at: float | None = None
        self.synced_at: float | None = (
            None  # monotonic time of its synchronization (its last packet if silent)
        )

    def add_synchronization_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def remove_synchronization_listener(self, listener: Any) -> None:
        self.listeners = [x for x in self.listeners if x is not listener]

    async def emit(self, name: str, *args: Any, instances: tuple[str, ...] | None = None) -> None:
        """Deliver one callback as the SDK does: to every listener, once per server instance."""
        for inst in instances or INSTANCES[: self.script.instances]:
            for listener in list(self.listeners):
                await getattr(listener, name)(inst, *args)

    async def connect(self) -> None:
        if self.closed:
            raise Exception("This connection has been closed, please create a new connection")
        await asyncio.sleep(0)
        s = self.script
        await self.emit("on_connected", 1)
        if self.number < s.never_sync:
            return  # connected, but synchronization never completes
        await self.emit("on_broker_connection_status_changed", True)
        for inst in INSTANCES[: s.instances]:  # keywords, as the SDK calls it
            for listener in list(self.listeners):
                await listener.on_synchronization_started(
                    inst,
                    specifications_hash=None,
                    positions_hash="p-hash" if s.hash_sync else None,
                    orders_hash=None,
                    synchronization_id=f"sync-{self.number}",
                )
        await self.emit("on_account_information_updated", dict(s.info))
        if not s.hash_sync:
            await self.emit("on_positions_replaced", [dict(p) for p in s.positions.values()])
            await self.emit("on_positions_synchronized", f"sync-{self.number}")
        for d in s.deals:
            await self.emit("on_deal_added", dict(d))
        await self.emit("on_deals_synchronized", f"sync-{self.number}")
        self.synchronized = True
        self.synced_at = time.monotonic()
        if self.number < s.silent_after_sync:
            self.silent = True
        self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.script.heartbeat)
            if not self.silent:
                await self.emit("on_symbol_price_updated", {"symbol": "EURUSD", "bid": 1.1, "ask": 1.1001})

    async def wait_synchronized(self, opts: dict[str, Any] | None = None) -> None:
        timeout = float((opts or {}).get("timeoutInSeconds", 300))
        deadline = time.monotonic() + timeout
        while not self.synchronized:
            if time.monotonic() >= deadline:
                raise TimeoutException("Timed out waiting for MetaApi to synchronize to MetaTrader account")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.closed = True
        self.closed_at = time.monotonic()
        self.synchronized = False
        self.listeners.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)


class FakeAccount:
    def __init__(self, cloud: FakeCloud, account_id: str) -> None:
        self.cloud = cloud
        self.id = account_id

    def get_streaming_connection(self, history_storage: Any = None, history_start_time: Any = None) -> Any:
        script = self.cloud.scripts[self.id]
        conns = self.cloud.connections.setdefault(self.id, [])
        conn = FakeConnection(self.cloud, self.id, script, len(conns))
        conns.append(conn)
        return conn


class FakeAccountApi:
    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud

    async def get_account(self, account_id: str) -> FakeAccount:
        self.cloud.attempts.setdefault(account_id, []).append(time.monotonic())
        await asyncio.sleep(0)
        if self.cloud.refuse_tokens:
            raise UnauthorizedException("Authorization token invalid")
        script = self.cloud.scripts.get(account_id)
        if script is None or script.unknown:
            raise NotFoundException(f"Trading account with id {account_id} not found")
        if script.rate_limited:
            wait = script.rate_limited.pop(0)
            at = datetime.now(UTC) + timedelta(seconds=wait)
            raise TooManyRequestsException(
                "You have used all your account subscriptions quota",
                {
                    "periodInMinutes": 60,
                    "requestsPerPeriodAllowed": 10,
                    "recommendedRetryTime": at.isoformat(),
                    "type": "LIMIT_ACCOUNT_SUBSCRIPTIONS_PER_USER",
                },
            )
        if script.fail_connect > 0:
            script.fail_connect -= 1
            raise ConnectionError(script.error_text)
        return FakeAccount(self.cloud, account_id)


class FakeMetaApi:
    def __init__(self, cloud: FakeCloud, token: str, opts: dict[str, Any]) -> None:
        self.token = token
        self.opts = opts
        self.metatrader_account_api = FakeAccountApi(cloud)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeCloud:
    """The scripted cloud: `factory` stands in for the SDK's `MetaApi` class."""

    def __init__(self) -> None:
        self.scripts: dict[str, FakeAccountScript] = {}
        self.connections: dict[str, list[FakeConnection]] = {}
        self.attempts: dict[str, list[float]] = {}  # monotonic time of every get_account call
        self.apis: list[FakeMetaApi] = []
        self.refuse_tokens = False  # every call: UnauthorizedException

    def add(self, account_id: str, login: int, **kw: Any) -> FakeAccountScript:
        script = FakeAccountScript(login=login, info=account_info(login), **kw)
        self.scripts[account_id] = script
        return script

    @property
    def factory(self) -> Callable[[str, dict[str, Any]], FakeMetaApi]:
        def make(token: str, opts: dict[str, Any]) -> FakeMetaApi:
            api = FakeMetaApi(self, token, opts)
            self.apis.append(api)
            return api

        return make

    def current(self, account_id: str) -> FakeConnection:
        return self.connections[account_id][-1]
