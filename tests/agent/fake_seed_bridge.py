"""A real aiohttp server that speaks exactly the seed's bridge JSON (seed sections 1.2, 2, 6.1).

It is a fake of the *existing* bridge, not of the terminal: the agent must work against it as well as
against ours. `behaviour` maps an account to a fault, settable between cycles. The hostile-input hooks
(`live_patch`, `info_patch`, `raw_info`, `summary_extra`, `batch`, ... all off by default) let a test
serve any value or any bytes in any place a bridge could put them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

SEED_ACCOUNTS: dict[int, dict[str, Any]] = {
    886557: {"name": "Main Balance Account", "balance": 80000.00},
    886066: {"name": "Secondary Balance Account", "balance": 10000.00},
    886602: {"name": "Tertiary Balance Account", "balance": 9960.68},
    885822: {"name": "Core Account", "balance": 10014.57},
    886528: {"name": "Separation Account", "balance": 0.00},
    891215: {"name": "Interest Earnings Trading", "balance": 27047.52},
    891234: {"name": "Account 891234", "balance": 8000.00},
}

DROP = object()  # in a patch: remove the key


def _patched(doc: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    if not patch:
        return doc
    out = {**doc, **patch}
    return {k: v for k, v in out.items() if v is not DROP}


def _raw(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


FAULTS = (
    "ok",
    "hang",  # never answers (the agent's timeout must fire)
    "reset",  # connection closed without a response
    "http_500",
    "not_found",
    "broken_json",
    "truncated",  # Content-Length promises more than is sent
    "nan_balance",
    "string_balance",
    "wrong_login",  # live_data.login of another account
    "no_live_data",  # live_data {} with stored_data present (seed 4.5)
    "missing_equity",
)


@dataclass
class SeedBridge:
    accounts: dict[int, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in SEED_ACCOUNTS.items()}
    )
    behaviour: dict[int, str] = field(default_factory=dict)
    healthy: bool = True
    health_fault: str = "ok"  # ok | http_500 | hang
    summary_fault: str = "ok"  # ok | broken_json | http_500
    requests: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set to free hung handlers
    # Hostile-input hooks. A patch is merged into what would be served (a value of DROP removes the key).
    live_patch: dict[int, dict[str, Any]] = field(default_factory=dict)  # into an account's live_data
    info_patch: dict[int, dict[str, Any]] = field(default_factory=dict)  # into its /info body
    summary_patch: dict[int, dict[str, Any]] = field(default_factory=dict)  # into its summary entry
    summary_extra: list[Any] = field(default_factory=list)  # raw entries appended to the summary list
    raw_info: dict[int, bytes] = field(default_factory=dict)  # an account's whole /info body, as is
    raw_health: bytes | None = None  # the whole health body, as is
    raw_summary: bytes | None = None  # the whole summary body, as is
    batch: bool = False  # serve /api/mt5/accounts/live (our bridge's batch) and advertise it
    batch_extra: list[Any] = field(default_factory=list)  # raw entries appended to the batch list
    raw_batch: bytes | None = None  # the whole batch body, as is

    def live_data(self, account: int) -> dict[str, Any]:
        a = self.accounts[account]
        # The seed's live_data: no login, no timestamp, only these fields.
        return {
            "balance": a["balance"],
            "equity": a.get("equity", a["balance"]),
            "profit": a.get("profit", 0.0),
            "margin": a.get("margin", 0),
            "margin_free": a.get("margin_free", a["balance"]),
            "currency": "USD",
        }

    async def _hang(self) -> None:
        await self.release.wait()

    async def health(self, request: web.Request) -> web.StreamResponse:
        self.requests.append("health")
        if self.health_fault == "hang":
            await self._hang()
        if self.health_fault == "http_500":
            return web.Response(status=500, text="Internal Server Error")
        if self.raw_health is not None:
            return _raw(self.raw_health)
        body: dict[str, Any] = {
            "status": "healthy" if self.healthy else "unhealthy",
            "timestamp": "2025-10-24T15:53:19Z",
            "mt5": {
                "available": self.healthy,
                "terminal_info": {"connected": True, "trade_allowed": True, "name": "MEXAtlantic-Real"},
            },
            "mongodb": {"connected": True},
        }
        if self.batch:
            body["features"] = ["batch"]
        return web.json_response(body)

    async def summary(self, request: web.Request) -> web.StreamResponse:
        self.requests.append("summary")
        if self.summary_fault == "broken_json":
            return web.Response(text='{"accounts": [', content_type="application/json")
        if self.summary_fault == "http_500":
            return web.Response(status=500)
        if self.raw_summary is not None:
            return _raw(self.raw_summary)
        entries = [
            _patched({"account": k, "name": v["name"], "balance": v["balance"]}, self.summary_patch.get(k))
            for k, v in self.accounts.items()
        ]
        return web.json_response({"accounts": entries + list(self.summary_extra)})

    def info_body(self, account: int) -> dict[str, Any]:
        """The /info document for a healthy account, with this account's patches applied."""
        live = _patched(self.live_data(account), self.live_patch.get(account))
        stored = {
            "balance": self.accounts[account].get("stored_balance", self.accounts[account]["balance"] - 100)
        }
        body = {"account_id": account, "live_data": live, "stored_data": stored}
        return _patched(body, self.info_patch.get(account))

    async def live_batch(self, request: web.Request) -> web.StreamResponse:
        """Our bridge's batch shape, built from the same per-account documents as /info."""
        if not self.batch:  # the seed's bridge has no batch endpoint
            return web.json_response({"detail": "Not Found"}, status=404)
        self.requests.append("live")
        if self.raw_batch is not None:
            return _raw(self.raw_batch)
        entries = [self.info_body(a) for a in self.accounts if self.behaviour.get(a, "ok") == "ok"]
        return web.json_response({"accounts": entries + list(self.batch_extra)})

    async def info(self, request: web.Request) -> web.StreamResponse:
        account = int(request.match_info["id"])
        self.requests.append(f"info:{account}")
        fault = self.behaviour.get(account, "ok")
        if account not in self.accounts or fault == "not_found":
            return web.json_response({"detail": "Account not found"}, status=404)
        if fault == "hang":
            await self._hang()
        if account in self.raw_info:
            return _raw(self.raw_info[account])
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "http_500":
            return web.json_response({"detail": "MT5 login failed"}, status=500)
        if fault == "broken_json":
            return web.Response(
                text='{"account_id": 1, "live_data": {"balance": 1', content_type="application/json"
            )
        if fault == "truncated":
            resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "400"})
            await resp.prepare(request)
            await resp.write(b'{"account_id": ' + str(account).encode() + b', "live_data": {"bal')
            assert request.transport is not None
            request.transport.close()
            return resp
        live = self.live_data(account)
        stored = {
            "balance": self.accounts[account].get("stored_balance", self.accounts[account]["balance"] - 100)
        }
        if fault == "nan_balance":
            body = json.dumps({"account_id": account, "live_data": {**live, "balance": float("nan")}})
            return web.Response(text=body, content_type="application/json")
        if fault == "string_balance":
            live["balance"] = "27047.52"
        if fault == "wrong_login":
            live["login"] = next(a for a in self.accounts if a != account)
        if fault == "missing_equity":
            del live["equity"]
        if fault == "no_live_data":
            live = {}
        if fault == "ok":
            return web.json_response(self.info_body(account))
        return web.json_response({"account_id": account, "live_data": live, "stored_data": stored})

    async def balance(self, request: web.Request) -> web.StreamResponse:
        account = int(request.match_info["id"])
        a = self.accounts[account]
        return web.json_response({"account_id": account, "balance": a["balance"], "currency": "USD"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/mt5/bridge/health", self.health)
        app.router.add_get("/api/mt5/accounts/summary", self.summary)
        app.router.add_get("/api/mt5/account/{id}/info", self.info)
        app.router.add_get("/api/mt5/account/{id}/balance", self.balance)
        app.router.add_get("/api/mt5/accounts/live", self.live_batch)

        async def release_on_shutdown(app: web.Application) -> None:
            self.release.set()

        app.on_shutdown.append(release_on_shutdown)
        return app


@contextlib.asynccontextmanager
async def serve_seed_bridge(bridge: SeedBridge | None = None) -> AsyncIterator[tuple[SeedBridge, str]]:
    """Run the fake on a free loopback port; yields it and its base URL, and frees hung handlers at exit."""
    bridge = bridge or SeedBridge()
    server = TestServer(bridge.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield bridge, str(server.make_url("")).rstrip("/")
    finally:
        bridge.release.set()
        await server.close()
