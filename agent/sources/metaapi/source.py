"""The MetaAPI cloud as a `Source` (DESIGN.md section 10): one streaming connection per configured
account, each kept alive by an `AccountStream`, read from our listener's book and the connection's
history storage, validated into the domain types (`convert`).

Reads make no request: the streaming state is the terminal's, current as of now while the connection is
synchronized, connected to the broker and not silent (so a live read's time is the read time). Otherwise
a read fails with `connection` (not synchronized, or silent) or `no_live_data` (MetaAPI's terminal has no
broker connection), and freshness ages as it should.

The SDK (`metaapi-cloud-sdk`, the optional extra `metaapi`) is imported when the source is built, not
when this module is: a missing extra is one `MetaApiConfigError`. The token is unwrapped in one place,
the call that builds the SDK's `MetaApi`; every text that comes from an exception is scrubbed of it (and
passed through the `redact` callback the composition root may give, e.g. the log scrubber).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.domain.accounts import AccountSnapshot, Reason
from agent.domain.trades import PositionsSnapshot
from agent.sources.base import (
    POSITIONS_FEATURE,
    AccountListing,
    AccountRead,
    AccountReads,
    DealsRead,
    ListedAccount,
    PositionsRead,
    ReadFailure,
    SourceError,
    SourceHealth,
    positions_each,
)
from agent.sources.bridge.parse import PayloadError
from agent.sources.metaapi import convert
from agent.sources.metaapi.backoff import Backoff
from agent.sources.metaapi.book import AccountBook
from agent.sources.metaapi.settings import MetaApiConfigError, MetaApiSettings
from agent.sources.metaapi.stream import AccountStream, ConnectionState, problem_of

log = logging.getLogger("mt5_agent.sources.metaapi")

SdkFactory = Callable[[str, dict[str, Any]], Any]  # (token, opts) -> the SDK's MetaApi
MASK = "***"


def sdk_factory() -> SdkFactory:
    """The SDK's `MetaApi` class, imported now (the optional extra); one clear error without it."""
    try:
        from metaapi_cloud_sdk import MetaApi  # type: ignore[import-not-found]
    except ImportError:
        raise MetaApiConfigError(
            "metaapi: the metaapi-cloud-sdk package is not installed (pip install 'mt5-monitor[metaapi]')"
        ) from None
    factory: SdkFactory = MetaApi
    return factory


class MetaApiSource:
    kind = "metaapi"

    def __init__(
        self,
        settings: MetaApiSettings,
        *,
        name: str = "metaapi",
        factory: SdkFactory | None = None,
        redact: Callable[[str], str] = lambda text: text,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._settings = settings
        self._factory = factory if factory is not None else sdk_factory()
        self._redact = redact
        self._clock = clock
        self._api: Any = None
        bounds = settings.bounds
        self._streams: dict[int, AccountStream] = {}
        # account -> its broker's UTC offset in minutes, from the newest position or deal read (issue 14's
        # broker days; memory only). The analytics read it as they read a bridge source's.
        self._offsets: dict[int, int] = {}
        for login, account_id in settings.accounts.items():
            book = AccountBook(login, clock=clock, monotonic=monotonic, tombstone_ttl=bounds.tombstone_ttl)
            backoff = Backoff(bounds.backoff_base, bounds.backoff_cap, rng)
            self._streams[login] = AccountStream(book, account_id, self._sdk, bounds, backoff, self.scrub)
        self._started = False

    def __repr__(self) -> str:
        return f"MetaApiSource(name={self.name!r}, accounts={len(self._streams)})"

    def scrub(self, text: str) -> str:
        """`text` without the token (and through the `redact` callback)."""
        secret = self._settings.token.get_secret_value()
        return self._redact(text.replace(secret, MASK) if secret else text)

    def _sdk(self) -> Any:
        if self._api is None:
            opts: dict[str, Any] = {"application": "MT5Monitor"}
            if self._settings.region:
                opts["region"] = self._settings.region
            try:
                self._api = self._factory(self._settings.token.get_secret_value(), opts)
            except Exception as exc:  # re-raised scrubbed: its text may hold the token
                raise RuntimeError(
                    self.scrub(f"building MetaApi failed: {type(exc).__name__}: {exc}")
                ) from None
        return self._api

    def start(self) -> None:
        """Start every account's connection (idempotent; reads and health start them too)."""
        if not self._started:
            self._started = True
            for stream in self._streams.values():
                stream.start()

    async def verify(self) -> None:
        """At start: every mapped MetaAPI account exists and the token is accepted, else one
        `MetaApiConfigError` naming the setting. Other failures (network, rate limits) are no
        configuration error: they are left to the connections' retries."""
        bound = self._settings.bounds.sync_timeout
        for login, stream in sorted(self._streams.items()):
            try:
                await asyncio.wait_for(
                    self._sdk().metatrader_account_api.get_account(stream.account_id), bound
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified by the SDK's exception names; never shown raw
                if problem_of(exc) == "unknown_account":
                    raise MetaApiConfigError(
                        f"metaapi.accounts.{login}: MetaAPI account {stream.account_id!r} does not exist"
                    ) from None
                if problem_of(exc) == "unauthorized":
                    raise MetaApiConfigError("metaapi.token_file: MetaAPI refused the token") from None
                log.warning(
                    "metaapi login %s: check at start failed (%s)", login, self.scrub(type(exc).__name__)
                )

    def streams(self) -> dict[int, AccountStream]:
        return dict(self._streams)

    def connection_states(self) -> list[ConnectionState]:
        """Every configured account's connection health, by login (for metrics and the admin health)."""
        return [self._streams[login].state() for login in sorted(self._streams)]

    # --- health and listing ---------------------------------------------------------------------

    async def health(self) -> SourceHealth:
        self.start()
        began = time.perf_counter()
        live = sum(1 for s in self._streams.values() if self._problem(s) is None)
        if live == 0:
            raise SourceError(
                Reason.CONNECTION, f"metaapi: no account's connection is live (0 of {len(self._streams)})"
            )
        status = "healthy" if live == len(self._streams) else "degraded"
        return SourceHealth(
            status=status,
            available=True,
            features=frozenset({POSITIONS_FEATURE}),
            response_time=time.perf_counter() - began,
        )

    async def usable_health(self, attempts: int, backoff: float) -> SourceHealth:
        last: SourceError | None = None
        for attempt in range(max(attempts, 1)):
            if attempt:
                step = backoff * 2 ** (attempt - 1)
                await asyncio.sleep(step / 2 + random.random() * step / 2)
            try:
                return await self.health()
            except SourceError as exc:
                last = exc
        assert last is not None
        raise last

    async def list_accounts(self) -> AccountListing:
        """The configured accounts (the mapping is the list), with what MetaAPI says of each."""
        self.start()
        out = []
        for login in sorted(self._streams):
            info = self._streams[login].book.info or {}
            out.append(
                ListedAccount(
                    login,
                    name=convert.text_field(info.get("name")),
                    server=convert.text_field(info.get("server")),
                    currency=convert.text_field(info.get("currency")),
                )
            )
        return AccountListing(accounts=out)

    def shared_terminal(self, account: int) -> str | None:
        return None  # every MetaAPI account has its own terminal in the cloud

    def positions_supported(self, health: SourceHealth | None = None) -> bool:
        return True  # the streaming state always carries positions and the history storage deals

    # --- reads ----------------------------------------------------------------------------------

    def _problem(self, stream: AccountStream, *, broker: bool = True) -> ReadFailure | None:
        login = stream.book.login
        if stream.last_problem == "unknown_account" and not stream.synchronized:
            return ReadFailure(
                Reason.NOT_FOUND,
                f"account {login}: its MetaAPI account (metaapi.accounts.{login}) does not exist",
            )
        if not stream.synchronized:
            why = f", last problem {stream.last_problem}" if stream.last_problem else ""
            return ReadFailure(
                Reason.CONNECTION, f"account {login}: MetaAPI connection not synchronized{why}"
            )
        if stream.silent():
            return ReadFailure(Reason.CONNECTION, f"account {login}: MetaAPI connection silent")
        if broker and not stream.book.connected_to_broker:
            return ReadFailure(
                Reason.NO_LIVE_DATA, f"account {login}: MetaAPI's terminal is not connected to the broker"
            )
        return None

    def _stream(self, account: int) -> AccountStream | ReadFailure:
        stream = self._streams.get(account)
        if stream is None:
            return ReadFailure(Reason.NOT_FOUND, f"account {account}: not mapped to a MetaAPI account")
        self.start()
        return stream

    @property
    def broker_utc_offsets(self) -> Mapping[int, int]:
        return self._offsets

    def _learn_offset(self, account: int, items: Iterable[Any]) -> None:
        """The newest item telling an offset wins (a broker's daylight-saving change follows)."""
        told = [x for x in map(convert.broker_offset, items) if x is not None]
        if told:
            self._offsets[account] = max(told, key=lambda x: x[0])[1]

    def _failure(self, exc: PayloadError) -> ReadFailure:
        return ReadFailure(exc.reason, self.scrub(exc.message))

    def read_account(self, account: int) -> AccountRead:
        stream = self._stream(account)
        if isinstance(stream, ReadFailure):
            return stream
        problem = self._problem(stream)
        if problem is not None:
            return problem
        info = stream.book.info
        if info is None:
            return ReadFailure(Reason.NO_LIVE_DATA, f"account {account}: no account information yet")
        try:
            snapshot: AccountSnapshot = convert.account_snapshot(account, info, self._clock())
        except PayloadError as exc:
            return self._failure(exc)
        return snapshot

    async def read_accounts(self, accounts: Sequence[int], deadline: float) -> AccountReads:
        results = {a: self.read_account(a) for a in accounts}
        return AccountReads(results=results, fetch_mode="batch")

    async def read_positions(self, account: int, deadline: float | None = None) -> PositionsRead:
        stream = self._stream(account)
        if isinstance(stream, ReadFailure):
            return stream
        problem = self._problem(stream)
        if problem is not None:
            return problem
        now = self._clock()
        latest = convert.latest_for(now)
        try:
            positions = tuple(
                convert.position(account, held.item, latest)
                for _, held in sorted(stream.book.positions.items())
            )
        except PayloadError as exc:
            return self._failure(exc)
        self._learn_offset(account, (held.item for held in stream.book.positions.values()))
        return PositionsSnapshot(account=account, as_of=now, positions=positions)

    def read_positions_many(
        self, accounts: Sequence[int], deadline: float
    ) -> AsyncIterator[tuple[int, PositionsRead]]:
        return positions_each(self, accounts, deadline)

    async def read_deals(
        self, account: int, since: datetime, until: datetime, deadline: float | None = None
    ) -> DealsRead:
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
        stream = self._stream(account)
        if isinstance(stream, ReadFailure):
            return stream
        problem = self._problem(stream, broker=False)  # history is the cloud's, broker link or not
        if problem is not None:
            return problem
        storage = getattr(stream.connection, "history_storage", None)
        if storage is None:
            return ReadFailure(Reason.NO_LIVE_DATA, f"account {account}: no MetaAPI history storage")
        latest = convert.latest_for(self._clock())
        try:
            items = list(storage.get_deals_by_time_range(since, until))
            deals = convert.deals(account, items, latest)
        except PayloadError as exc:
            return self._failure(exc)
        self._learn_offset(account, items)
        return [d for d in deals if since <= d.time <= until]

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in self._streams.values()))
        api, self._api = self._api, None
        if api is not None and callable(getattr(api, "close", None)):
            try:
                api.close()
            except Exception as exc:  # closing is best effort, told in the log
                log.warning("metaapi: closing the SDK failed (%s)", self.scrub(type(exc).__name__))
