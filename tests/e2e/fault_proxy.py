"""A real HTTP proxy between the agent and a bridge that misbehaves on demand: 500s, broken JSON,
connection resets, hangs, and well-formed JSON with a hostile value. Faults are switched while the run
goes on, so a test can inject them mid-run and clear them again."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass

import aiohttp
from aiohttp import web

MODES = ("http500", "broken_json", "reset", "hang", "hostile_value")
_POSITIONS_OR_TRADES = re.compile(r"/api/mt5/account(s/positions|/\d+/(positions|trades))$")


@dataclass
class Fault:
    mode: str
    path: re.Pattern[str] = _POSITIONS_OR_TRADES  # the requests it applies to


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault: Fault | None = None
        self.served: Counter[str] = Counter()  # "pass" or the fault mode -> requests
        self._cleared = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def set(self, fault: Fault | None) -> None:
        if fault is not None and fault.mode not in MODES:
            raise ValueError(f"unknown fault {fault.mode!r}")
        self.fault = fault
        if fault is None:
            self._cleared.set()
        else:
            self._cleared.clear()

    async def start(self, port: int = 0) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.url

    async def close(self) -> None:
        self._cleared.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self.fault
        if fault is not None and fault.path.search(request.path):
            self.served[fault.mode] += 1
            if fault.mode == "http500":
                return web.json_response({"error": {"code": "internal", "message": "injected"}}, status=500)
            if fault.mode == "broken_json":
                return web.Response(
                    body=b'{"account_id": 1, "positions": [{"ticket": ', content_type="application/json"
                )
            if fault.mode == "reset":
                transport = request.transport
                if transport is not None:
                    transport.abort()  # RST: the agent sees a reset connection, no response
                return web.Response(status=500)
            if fault.mode == "hang":
                await self._cleared.wait()  # held until cleared (or the agent gives up)
        self.served["pass"] += 1
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=_forwarded(request)
            ) as upstream:
                body = await upstream.read()
                status, content_type = upstream.status, upstream.content_type
        except (aiohttp.ClientError, TimeoutError) as exc:  # the bridge is down: what a gateway says
            return web.json_response({"error": {"code": "bad_gateway", "message": str(exc)}}, status=502)
        if fault is not None and fault.mode == "hostile_value" and fault.path.search(request.path):
            body = _hostile(body)
        return web.Response(body=body, status=status, content_type=content_type)


def _forwarded(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}


def _hostile(body: bytes) -> bytes:
    """Well-formed JSON whose first volume is a value no terminal sends (the agent must refuse it, for
    that account only, and lose nothing once the fault is gone)."""
    return re.sub(rb'"volume": ?[0-9.eE+-]+', b'"volume": -1e308', body, count=1)
