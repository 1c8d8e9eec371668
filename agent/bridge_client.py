"""HTTP client for a bridge: ours or the seed's existing one (same endpoints, same JSON shapes).

Every failure is turned into a `BridgeError` carrying a reason from the closed set, so the sync cycle
can count it without free text ever reaching a metric label.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from agent.models import Reason
from agent.payloads import AccountData, PayloadError, parse_account_id, parse_info

RequestObserver = Callable[[str, float, bool], None]  # endpoint, seconds, ok
BATCH_YIELD_EVERY = 500  # batch entries validated between two yields to the event loop


class BridgeError(Exception):
    def __init__(self, reason: Reason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True)
class BridgeHealth:
    status: str
    available: bool
    features: frozenset[str] = frozenset()
    response_time: float = 0.0

    @property
    def usable(self) -> bool:
        return self.available and self.status in ("healthy", "degraded")


@dataclass(frozen=True)
class AccountSummary:
    account: int
    name: str | None = None
    server: str | None = None
    currency: str | None = None


@dataclass
class BatchResult:
    data: dict[int, AccountData] = field(default_factory=dict)
    errors: dict[int, BridgeError] = field(default_factory=dict)


def _status_reason(status: int, body: Any) -> Reason:
    code = (
        body.get("error", {}).get("code")
        if isinstance(body, dict) and isinstance(body.get("error"), dict)
        else None
    )
    if status == 404:
        return Reason.NOT_FOUND
    if status == 504 or code == "terminal_timeout":
        return Reason.TIMEOUT
    if code == "account_mismatch":
        return Reason.ACCOUNT_MISMATCH
    return Reason.HTTP_STATUS


def _error_message(status: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"HTTP {status} {err.get('code', '')}: {str(err.get('message', ''))[:200]}".strip()
    return f"HTTP {status}"


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observer = observer
        self._trace_configs = list(trace_configs or [])
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None

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
                raw = await resp.read()
                try:
                    body = json.loads(raw) if raw else None
                except (ValueError, UnicodeDecodeError):
                    body = None
                    if resp.status < 400:
                        raise BridgeError(
                            Reason.INVALID_PAYLOAD, f"{endpoint}: response is not valid JSON", resp.status
                        ) from None
                if resp.status >= 400:
                    raise BridgeError(
                        _status_reason(resp.status, body), _error_message(resp.status, body), resp.status
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
        finally:
            if self._observer is not None:
                self._observer(endpoint, time.perf_counter() - started, ok)

    async def health(self) -> BridgeHealth:
        started = time.perf_counter()
        body = await self.get_json("/api/mt5/bridge/health", "health")
        elapsed = time.perf_counter() - started
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise BridgeError(Reason.INVALID_PAYLOAD, "health: response has no status")
        mt5 = body.get("mt5") if isinstance(body.get("mt5"), dict) else {}
        available = mt5.get("available", True) is not False
        features = body.get("features") if isinstance(body.get("features"), list) else []
        return BridgeHealth(
            status=body["status"],
            available=available,
            features=frozenset(f for f in features if isinstance(f, str)),
            response_time=elapsed,
        )

    async def health_with_retries(self, attempts: int, backoff: float) -> BridgeHealth:
        """The seed's "retry 3 times": exponential backoff with full jitter between attempts."""
        last: BridgeError | None = None
        for attempt in range(attempts):
            try:
                health = await self.health()
                if health.usable:
                    return health
                last = BridgeError(Reason.HTTP_STATUS, f"bridge reports {health.status}")
            except BridgeError as exc:
                last = exc
            if attempt + 1 < attempts and backoff > 0:
                await asyncio.sleep(random.uniform(0, backoff * 2**attempt))
        assert last is not None
        raise last

    async def accounts(self) -> list[AccountSummary]:
        body = await self.get_json("/api/mt5/accounts/summary", "summary")
        items = body.get("accounts") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BridgeError(Reason.INVALID_PAYLOAD, "summary: no accounts list in response")
        seen: dict[int, AccountSummary] = {}
        for i, item in enumerate(items):
            if i and not i % BATCH_YIELD_EVERY:
                await asyncio.sleep(0)  # thousands of accounts: let requests in between
            if not isinstance(item, dict):
                raise BridgeError(Reason.INVALID_PAYLOAD, "summary: an account entry is not an object")
            try:
                account = parse_account_id(item.get("account", item.get("login")))
            except PayloadError as exc:
                raise BridgeError(Reason.INVALID_PAYLOAD, f"summary: {exc.message}") from None
            seen.setdefault(
                account,
                AccountSummary(
                    account=account,
                    name=item.get("name") if isinstance(item.get("name"), str) else None,
                    server=item.get("server") if isinstance(item.get("server"), str) else None,
                    currency=item.get("currency") if isinstance(item.get("currency"), str) else None,
                ),
            )
        return list(seen.values())

    async def account_info(self, account: int) -> AccountData:
        body = await self.get_json(f"/api/mt5/account/{account}/info", "info")
        try:
            return parse_info(account, body, datetime.now(UTC))
        except PayloadError as exc:
            raise BridgeError(exc.reason, f"account {account}: {exc.message}") from None

    async def live_batch(self) -> BatchResult:
        """Our bridge's `/api/mt5/accounts/live`: every account's live data in one call."""
        body = await self.get_json("/api/mt5/accounts/live", "live")
        received = datetime.now(UTC)
        items = body.get("accounts") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise BridgeError(Reason.INVALID_PAYLOAD, "live: no accounts list in response")
        out = BatchResult()
        for i, item in enumerate(items):
            if i and not i % BATCH_YIELD_EVERY:
                await asyncio.sleep(0)  # thousands of accounts: let requests in between (~5 ms a step)
            if not isinstance(item, dict):
                continue
            try:
                account = parse_account_id(item.get("account_id"))
            except PayloadError:
                continue
            if item.get("live_data") or item.get("stored_data"):
                # Same shape as one /info answer, including the seed's stored_data fallback.
                try:
                    out.data[account] = parse_info(account, item, received)
                except PayloadError as exc:
                    out.errors[account] = BridgeError(exc.reason, f"account {account}: {exc.message}")
            else:
                status = item.get("status") if isinstance(item.get("status"), int) else 502
                out.errors[account] = BridgeError(
                    _status_reason(status, item), f"account {account}: {_error_message(status, item)}", status
                )
        return out
