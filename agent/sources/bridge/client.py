"""HTTP client for a bridge: ours or the seed's existing one (same endpoints, same JSON shapes).

Every failure is turned into a `BridgeError` carrying a reason from the closed set, so the bridge
source (`agent.sources.bridge.source`) can count it without free text ever reaching a metric label.
Whatever a bridge sends (a body of any size or compression ratio, JSON nested any depth, any value),
nothing but a `BridgeError` leaves here:
a body is read in chunks and abandoned as soon as it passes `max_response_bytes`, compressed or
decompressed (the client decompresses itself, so both sizes are counted exactly).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from agent.domain.accounts import AccountSnapshot, Reason
from agent.domain.trades import Deal, PositionsSnapshot
from agent.sources.base import AccountListing, ListedAccount, SourceError, SourceHealth
from agent.sources.bridge.parse import (
    CLOCK_SKEW_TOLERANCE,
    ClockSkewError,
    PayloadError,
    error_code,
    error_text,
    parse_account_id,
    parse_info,
    reason_for_code,
    text_field,
)
from agent.sources.bridge.parse_offsets import terminal_offsets
from agent.sources.bridge.parse_rates import parse_rates
from agent.sources.bridge.parse_trades import (
    deals_body,
    distinct_deals,
    distinct_positions,
    parse_deal,
    parse_position,
    positions_body,
)

log = logging.getLogger("mt5_agent.bridge")

RequestObserver = Callable[[str, float, bool], None]  # endpoint, seconds, ok
BATCH_YIELD_EVERY = 500  # batch entries validated between two yields to the event loop
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # default cap on one response body, compressed and decompressed
MAX_FEATURES = 64  # health `features` entries looked at
# gzip, or deflate as zlib stream (RFC 9110) or raw (some servers): the only codings we ask for.
_ACCEPT_ENCODING = "gzip, deflate"


class BridgeError(SourceError):
    """A failed request or answer. As a SourceError, `reachable` is left False here: the bridge
    source decides what counts as "the bridge answers" (`agent.sources.bridge.source`)."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        status: int | None = None,
        *,
        ahead_seconds: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(reason, message)
        self.status = status
        self.ahead_seconds = ahead_seconds  # set when the data was refused for clock skew
        self.code = code  # the bridge's `error.code` of an HTTP error answer, when it sent one


def _from_payload(account: int, exc: PayloadError) -> BridgeError:
    ahead = exc.ahead_seconds if isinstance(exc, ClockSkewError) else None
    return BridgeError(exc.reason, f"account {account}: {exc.message}", ahead_seconds=ahead)


def _unexpected(what: str, exc: BaseException) -> BridgeError:
    """Any other exception while reading one answer: a bug or a value nobody foresaw. It stays that
    answer's failure (invalid_payload), logged with its traceback, and never stops the cycle."""
    log.error("%s: unexpected %s while reading the answer", what, type(exc).__name__, exc_info=exc)
    return BridgeError(Reason.INVALID_PAYLOAD, f"{what}: unexpected {type(exc).__name__} reading the answer")


class ResponseTooLarge(BridgeError):
    def __init__(self, endpoint: str, limit: int) -> None:
        super().__init__(Reason.INVALID_PAYLOAD, f"{endpoint}: response larger than {limit} bytes")


@dataclass
class PositionsBatch:
    data: dict[int, PositionsSnapshot] = field(default_factory=dict)
    errors: dict[int, BridgeError] = field(default_factory=dict)
    invalid: int = 0  # entries skipped: not asked for, repeated, or naming no valid account


@dataclass
class BatchResult:
    data: dict[int, AccountSnapshot] = field(default_factory=dict)
    errors: dict[int, BridgeError] = field(default_factory=dict)
    invalid: int = 0  # entries skipped because they named no valid account


def _status_reason(status: int, body: Any) -> Reason:
    """Status plus the bridge's error code -> reason: login_failed (503) and terminal_unavailable
    (502) get their own reasons, as they need different fixes than a generic HTTP error."""
    if status == 404:
        return Reason.NOT_FOUND
    if status == 504:
        return Reason.TIMEOUT
    return reason_for_code(error_code(body), Reason.HTTP_STATUS)


def _error_message(status: int, body: Any) -> str:
    if type(body) is dict and type(body.get("error")) is dict:
        return f"HTTP {status} {error_text(body['error'])}"
    return f"HTTP {status}"


def _decompressor(coding: str, first: bytes) -> Any:
    if coding == "gzip" or coding == "x-gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # deflate: a zlib stream when the first two bytes are a valid zlib header, raw deflate otherwise.
    zlib_header = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
    return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)


async def read_capped(resp: aiohttp.ClientResponse, endpoint: str, limit: int) -> bytes:
    """The body of `resp`, decompressed, reading no further than `limit` bytes on the wire and
    producing no more than `limit` bytes out (a gzip bomb inflates at most one chunk past it).
    Raises ResponseTooLarge the moment either is passed, or BridgeError for a bad encoding."""
    length = resp.content_length
    if length is not None and length > limit:
        raise ResponseTooLarge(endpoint, limit)
    coding = resp.headers.get(aiohttp.hdrs.CONTENT_ENCODING, "").strip().lower()
    if coding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise BridgeError(
            Reason.INVALID_PAYLOAD, f"{endpoint}: unsupported Content-Encoding {coding[:40]!r}", resp.status
        )
    content = resp.content
    chunks: list[bytes] = []
    received = 0
    if coding in ("", "identity"):
        while chunk := await content.readany():
            received += len(chunk)
            if received > limit:
                raise ResponseTooLarge(endpoint, limit)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    d = None
    produced = 0
    try:
        while chunk := await content.readany():
            received += len(chunk)
            if received > limit:
                raise ResponseTooLarge(endpoint, limit)
            if d is None:
                d = _decompressor(coding, chunk)
            # Ask for one byte past the cap: getting it proves the body is too large.
            out = d.decompress(chunk, limit - produced + 1)
            produced += len(out)
            if produced > limit:
                raise ResponseTooLarge(endpoint, limit)
            chunks.append(out)
        if d is None:
            return b""
        out = d.flush()
        produced += len(out)
        if produced > limit:
            raise ResponseTooLarge(endpoint, limit)
        chunks.append(out)
    except zlib.error as exc:
        raise BridgeError(
            Reason.INVALID_PAYLOAD, f"{endpoint}: {coding} body does not decompress ({exc})", resp.status
        ) from None
    if not d.eof:
        raise BridgeError(Reason.INVALID_PAYLOAD, f"{endpoint}: {coding} body cut short", resp.status)
    return b"".join(chunks)


def iso_utc(dt: datetime) -> str:
    """A query time: ISO-8601 UTC with microseconds and a Z (no '+', which a query turns into a space)."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def loads(raw: bytes) -> Any:
    """json.loads that raises only ValueError: JSON nested deeper than the interpreter's recursion
    limit (a RecursionError from the C decoder) is just invalid JSON here."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


class BridgeClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        observer: RequestObserver | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        connection_limit: int = 100,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        clock_skew_tolerance: float = CLOCK_SKEW_TOLERANCE,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self.base_url = base_url.rstrip("/")
        self.max_response_bytes = max_response_bytes
        self.clock_skew_tolerance = clock_skew_tolerance
        self._headers = {"Accept": "application/json", "Accept-Encoding": _ACCEPT_ENCODING}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observer = observer
        self._trace_configs = list(trace_configs or [])
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        # account -> its terminal's UTC offset in minutes, from the last health document listing the
        # terminals (issue 14: broker days); memory only
        self.utc_offsets: dict[int, int] = {}

    async def __aenter__(self) -> BridgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300),
                trace_configs=self._trace_configs or None,
                auto_decompress=False,  # read_capped decompresses, counting both sizes
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def get_json(self, path: str, endpoint: str, params: dict[str, str] | None = None) -> Any:
        """GET a JSON document; raise BridgeError with a closed-set reason on any failure."""
        started = time.perf_counter()
        ok = False
        try:
            async with self._get_session().get(self.base_url + path, params=params) as resp:
                try:
                    raw = await read_capped(resp, endpoint, self.max_response_bytes)
                except BridgeError:
                    resp.close()  # stop reading now: the rest of the body is never fetched
                    raise
                try:
                    body = loads(raw) if raw else None
                except (ValueError, UnicodeDecodeError):
                    body = None
                    if resp.status < 400:
                        raise BridgeError(
                            Reason.INVALID_PAYLOAD, f"{endpoint}: response is not valid JSON", resp.status
                        ) from None
                if resp.status >= 400:
                    raise BridgeError(
                        _status_reason(resp.status, body),
                        _error_message(resp.status, body),
                        resp.status,
                        code=error_code(body),
                    )
                ok = True
                return body
        except BridgeError:
            raise
        except TimeoutError:
            raise BridgeError(
                Reason.TIMEOUT, f"{endpoint}: timed out after {self._timeout.total:g}s"
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise BridgeError(Reason.CONNECTION, f"{endpoint}: response body cut short ({exc})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BridgeError(Reason.CONNECTION, f"{endpoint}: {type(exc).__name__}: {exc}"[:300]) from None
        except Exception as exc:  # anything else is still this request's failure, never the cycle's
            raise _unexpected(endpoint, exc) from None
        finally:
            if self._observer is not None:
                self._observer(endpoint, time.perf_counter() - started, ok)

    async def health(self) -> SourceHealth:
        """The health document; any body that is not one (hostile or broken) is a failed check."""
        started = time.perf_counter()
        body = await self.get_json("/api/mt5/bridge/health", "health")
        elapsed = time.perf_counter() - started
        if type(body) is not dict or type(body.get("status")) is not str or len(body["status"]) > 32:
            raise BridgeError(Reason.INVALID_PAYLOAD, "health: response has no status")
        mt5 = body.get("mt5")
        available = mt5.get("available", True) is not False if type(mt5) is dict else True
        offsets = terminal_offsets(body.get("terminals"))
        if offsets is not None:
            self.utc_offsets = offsets
        features = body.get("features")
        if type(features) is not list:
            features = []
        return SourceHealth(
            status=body["status"],
            available=available,
            features=frozenset(f for f in features[:MAX_FEATURES] if type(f) is str and len(f) <= 64),
            response_time=elapsed,
        )

    async def health_with_retries(self, attempts: int, backoff: float) -> SourceHealth:
        """The seed's "retry 3 times": exponential backoff with full jitter between attempts."""
        last: BridgeError | None = None
        for attempt in range(attempts):
            try:
                health = await self.health()
                if health.usable:
                    return health
                last = BridgeError(Reason.HTTP_STATUS, f"bridge reports {health.status[:32]!r}")
            except BridgeError as exc:
                last = exc
            except Exception as exc:  # never crash a cycle or a probe: the bridge is just unusable
                last = _unexpected("health", exc)
            if attempt + 1 < attempts and backoff > 0:
                await asyncio.sleep(random.uniform(0, backoff * 2**attempt))
        assert last is not None
        raise last

    async def accounts(self) -> list[ListedAccount]:
        """The valid accounts of the summary (see `listing`)."""
        return (await self.listing()).accounts

    async def listing(self) -> AccountListing:
        """The seed's account summary. A malformed entry (not an object, or no valid account id) is
        skipped, counted in `AccountListing.invalid` and logged; it never costs the other accounts."""
        body = await self.get_json("/api/mt5/accounts/summary", "summary")
        items = body.get("accounts") if type(body) is dict else None
        if type(items) is not list:
            raise BridgeError(Reason.INVALID_PAYLOAD, "summary: no accounts list in response")
        seen: dict[int, ListedAccount] = {}
        invalid = 0
        first_problem = ""
        for i, item in enumerate(items):
            if i and not i % BATCH_YIELD_EVERY:
                await asyncio.sleep(0)  # thousands of accounts: let requests in between
            try:
                if type(item) is not dict:
                    raise PayloadError(Reason.INVALID_PAYLOAD, "entry is not an object")
                account = parse_account_id(item.get("account", item.get("login")))
                if account in seen:
                    continue
                get = item.get
                currency = get("currency")
                seen[account] = ListedAccount(
                    account=account,
                    name=text_field(get("name")),
                    server=text_field(get("server")),
                    currency=currency if type(currency) is str and len(currency) <= 16 else None,
                    terminal=text_field(get("terminal")),
                )
            except Exception as exc:
                invalid += 1
                if not first_problem:
                    first_problem = (
                        exc.message if isinstance(exc, PayloadError) else f"unexpected {type(exc).__name__}"
                    )
        if invalid:
            log.warning(
                "summary: skipped %d malformed account entr%s (first: entry %s)",
                invalid,
                "y" if invalid == 1 else "ies",
                first_problem,
                extra={"endpoint": "summary", "invalid_entries": invalid},
            )
        return AccountListing(accounts=list(seen.values()), invalid=invalid)

    async def account_info(self, account: int) -> AccountSnapshot:
        body = await self.get_json(f"/api/mt5/account/{account}/info", "info")
        try:
            return parse_info(account, body, datetime.now(UTC), tolerance=self.clock_skew_tolerance)
        except PayloadError as exc:
            raise _from_payload(account, exc) from None
        except Exception as exc:
            raise _unexpected(f"account {account}", exc) from None

    async def _trade_json(self, account: int, what: str, params: dict[str, str] | None = None) -> Any:
        """GET /positions or /trades; a failure's message names the account and the endpoint. A 404
        that names no unknown account is a bridge without the endpoint (the seed's): said plainly, as
        the reason alone (not_found) cannot tell the two apart."""
        try:
            return await self.get_json(f"/api/mt5/account/{account}/{what}", what, params)
        except BridgeError as exc:
            text = exc.message if exc.message.startswith(f"{what}: ") else f"{what}: {exc.message}"
            if exc.status == 404 and exc.code != "unknown_account":
                text += f" (this bridge serves no {what} endpoint?)"
            exc.message = f"account {account}: {text}"
            exc.args = (exc.message,)
            raise

    async def rates(
        self, account: int, symbol: str, timeframe: str = "M5", count: int = 101
    ) -> tuple[tuple[datetime, float], ...]:
        """Our bridge's `/api/mt5/account/{id}/rates/{symbol}` (feature `rates`): the account's terminal's
        last `count` bars as (open time UTC, close), validated (`parse_rates`)."""
        params = {"timeframe": timeframe, "count": str(count)}
        path = f"/api/mt5/account/{account}/rates/{quote(symbol, safe='')}"
        body = await self.get_json(path, "rates", params)
        return parse_rates(account, symbol, body)

    async def positions(self, account: int) -> PositionsSnapshot:
        """Our bridge's `/api/mt5/account/{id}/positions`, validated (`parse_trades`)."""
        body = await self._trade_json(account, "positions")
        return await self._positions_answer(account, body, datetime.now(UTC))

    async def positions_batch(self, accounts: Sequence[int]) -> PositionsBatch:
        """Our bridge's `/api/mt5/accounts/positions?accounts=...` (feature `positions_batch`): each asked
        account's snapshot, or its own failure (an error entry, or an entry that fails validation
        exactly as its single answer would). Entries for accounts not asked, without a valid account id
        or repeated are skipped and counted; an asked account missing from the answer is in neither."""
        if not accounts:
            return PositionsBatch()
        params = {"accounts": ",".join(str(a) for a in accounts)}
        body = await self.get_json("/api/mt5/accounts/positions", "positions_batch", params)
        received = datetime.now(UTC)
        items = body.get("accounts") if type(body) is dict else None
        if type(items) is not list:
            raise BridgeError(Reason.INVALID_PAYLOAD, "positions_batch: no accounts list in response")
        asked = set(accounts)
        out = PositionsBatch()
        for i, item in enumerate(items):
            if i and not i % BATCH_YIELD_EVERY:
                await asyncio.sleep(0)
            try:
                account = parse_account_id(item.get("account_id")) if type(item) is dict else None
            except PayloadError:
                account = None
            if account is None or account not in asked or account in out.data or account in out.errors:
                out.invalid += 1
                continue
            assert type(item) is dict
            if "error" in item and "positions" not in item:
                status = item.get("status")
                if type(status) is not int or not 400 <= status <= 599:
                    status = 502
                out.errors[account] = BridgeError(
                    _status_reason(status, item), f"account {account}: {_error_message(status, item)}", status
                )
                continue
            try:
                out.data[account] = await self._positions_answer(account, item, received)
            except BridgeError as exc:
                out.errors[account] = exc
        if out.invalid:
            log.warning(
                "positions_batch: skipped %d entr%s not asked for, repeated or without a valid account id",
                out.invalid,
                "y" if out.invalid == 1 else "ies",
                extra={"endpoint": "positions_batch", "invalid_entries": out.invalid},
            )
        return out

    async def _positions_answer(self, account: int, body: Any, received: datetime) -> PositionsSnapshot:
        try:
            as_of, latest, items = positions_body(
                account, body, received, tolerance=self.clock_skew_tolerance
            )
            parsed = []
            for i, item in enumerate(items):
                if i and not i % BATCH_YIELD_EVERY:
                    await asyncio.sleep(0)
                parsed.append(parse_position(account, i, item, latest))
            return PositionsSnapshot(account=account, as_of=as_of, positions=distinct_positions(parsed))
        except PayloadError as exc:
            raise _from_payload(account, exc) from None
        except Exception as exc:
            raise _unexpected(f"account {account} positions", exc) from None

    async def deals(self, account: int, since: datetime, until: datetime) -> list[Deal]:
        """Deals whose time lies in `[since, until]` (tz-aware), `/api/mt5/account/{id}/trades`."""
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
        params = {"from": iso_utc(since), "to": iso_utc(until)}
        body = await self._trade_json(account, "trades", params)
        received = datetime.now(UTC)
        try:
            latest, items = deals_body(account, body, received, tolerance=self.clock_skew_tolerance)
            parsed = []
            for i, item in enumerate(items):
                if i and not i % BATCH_YIELD_EVERY:
                    await asyncio.sleep(0)
                parsed.append(parse_deal(account, i, item, latest))
            return distinct_deals(parsed)
        except PayloadError as exc:
            raise _from_payload(account, exc) from None
        except Exception as exc:
            raise _unexpected(f"account {account} deals", exc) from None

    async def live_batch(self, only: Sequence[int] | None = None) -> BatchResult:
        """Our bridge's `/api/mt5/accounts/live`: every account's live data in one call, or only the
        accounts in `only` (a shard's: `?accounts=`, in requests whose line stays under the servers' 8 KiB
        limit). An entry that names no valid account, or one not asked for, is skipped and counted; one
        account's bad data is its failure."""
        if only is None:
            return await self._live_batch(None)
        out = BatchResult()
        for chunk in _query_chunks(only):
            part = await self._live_batch(chunk)
            out.data.update(part.data)
            out.errors.update(part.errors)
            out.invalid += part.invalid
        return out

    async def _live_batch(self, only: Sequence[int] | None) -> BatchResult:
        params = None if only is None else {"accounts": ",".join(str(a) for a in only)}
        body = await self.get_json("/api/mt5/accounts/live", "live", params)
        received = datetime.now(UTC)
        items = body.get("accounts") if type(body) is dict else None
        if type(items) is not list:
            raise BridgeError(Reason.INVALID_PAYLOAD, "live: no accounts list in response")
        asked = None if only is None else set(only)
        out = BatchResult()
        tolerance = self.clock_skew_tolerance
        for i, item in enumerate(items):
            if i and not i % BATCH_YIELD_EVERY:
                await asyncio.sleep(0)  # thousands of accounts: let requests in between (~5 ms a step)
            if type(item) is not dict:
                out.invalid += 1
                continue
            try:
                account = parse_account_id(item.get("account_id"))
            except PayloadError:
                out.invalid += 1
                continue
            if asked is not None and account not in asked:
                out.invalid += 1
                continue
            try:
                if "error" not in item or item.get("live_data"):
                    # Same shape as one /info answer, including the seed's stored_data fallback.
                    out.data[account] = parse_info(account, item, received, tolerance=tolerance)
                else:  # the status and error its single-account call would have had
                    status = item.get("status")
                    if type(status) is not int or not 400 <= status <= 599:
                        status = 502
                    out.errors[account] = BridgeError(
                        _status_reason(status, item),
                        f"account {account}: {_error_message(status, item)}",
                        status,
                    )
            except PayloadError as exc:
                out.errors[account] = _from_payload(account, exc)
            except Exception as exc:
                out.errors[account] = _unexpected(f"account {account}", exc)
        if out.invalid:
            log.warning(
                "live: skipped %d batch entr%s not asked for or without a valid account id",
                out.invalid,
                "y" if out.invalid == 1 else "ies",
                extra={"endpoint": "live", "invalid_entries": out.invalid},
            )
        return out


QUERY_BUDGET = 6000  # characters of `accounts=` per request: with the path, well under 8 KiB request lines


def _query_chunks(accounts: Sequence[int]) -> list[list[int]]:
    """`accounts` split so that each comma-joined part fits QUERY_BUDGET (one part at least)."""
    chunks: list[list[int]] = [[]]
    used = 0
    for account in accounts:
        cost = len(str(account)) + 1
        if chunks[-1] and used + cost > QUERY_BUDGET:
            chunks.append([])
            used = 0
        chunks[-1].append(account)
        used += cost
    return chunks
