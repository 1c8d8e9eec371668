"""A running agent for API tests, built the way production builds it: settings from
`load_settings(**overrides)`, `build_agent(settings, store=...)`, `create_app(agent, schedule=False)`,
served on a real TCP port on 127.0.0.1 (so a browser or schemathesis can reach it too)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from agent.app import Agent, build_agent, create_app
from agent.config import ENV_PREFIX, load_settings
from agent.store import open_store
from agent.store.base import Store
from tests.agent.fake_seed_bridge import SeedBridge, serve_seed_bridge

ADMIN = "admin-token-5b0f7c1e9d2a4e6f8a1b3c5d"
READ = "read-token-0c2e4a6b8d1f3a5c7e9b2d4f"
JWT_SECRET = "jwt-secret-for-tests-3f1a9c7e5b2d4f6a8c0e"  # >= 32 bytes: no short-HMAC-key warning
METRICS = "metrics-token-7d3b1f5a9c2e4d6b8a0c1e3f"

# Sentinels stored on account documents: they must never appear in any response.
PASSWORD = "PASSWORD-sentinel-7f3a9c"
CLIENT_A = "client-A-sentinel-41d2"
CLIENT_B = "client-B-sentinel-93e7"
FUND_TYPE = "FUNDTYPE-sentinel-55aa"
BROKER = "BROKER-sentinel-66bb"
TARGET_AMOUNT = 987654.321
PRIVATE_VALUES = (PASSWORD, CLIENT_A, CLIENT_B, FUND_TYPE, BROKER, "987654.321")
PRIVATE_KEYS = ("password", "client_id", "fund_type", "broker", "target_amount", "credentials")

ALL_TOKENS = {"admin_token": ADMIN, "api_token": READ, "jwt_secret": JWT_SECRET}

# account -> (client, minutes since live data or None for never synced, balance, equity, profit, currency)
ACCOUNTS: dict[int, tuple[str, float | None, float | None, float | None, float | None, str | None]] = {
    100001: (CLIENT_A, 0.5, 10000.10, 10050.20, 50.10, "USD"),  # fresh
    100002: (CLIENT_A, 20.0, 2500.25, 2400.00, -100.25, "USD"),  # critical (20 min old)
    100003: (CLIENT_A, None, None, None, None, None),  # provisioned, never synced: critical, age null
    100004: (CLIENT_A, 7.0, 300.0, 300.0, 0.0, "EUR"),  # acceptable
    200001: (CLIENT_B, 12.0, 80000.00, 79990.50, -9.50, "USD"),  # degraded
}
EXPECTED_STATE = {
    100001: "fresh",
    100002: "critical",
    100003: "critical",
    100004: "acceptable",
    200001: "degraded",
}


def account_documents(now: datetime) -> list[dict[str, Any]]:
    docs = []
    for account, (client, minutes, balance, equity, profit, currency) in ACCOUNTS.items():
        doc: dict[str, Any] = {
            "account": account,
            "name": f"Account {account}",
            "server": "MEXAtlantic-Real",
            "client_id": client,
            "fund_type": FUND_TYPE,
            "broker": BROKER,
            "target_amount": TARGET_AMOUNT,
            "password": PASSWORD,
            "credentials": {"password": PASSWORD, "investor_password": PASSWORD},
        }
        if minutes is not None:
            live = now - timedelta(minutes=minutes)
            doc.update(
                balance=balance,
                equity=equity,
                profit=profit,
                margin=0.0,
                margin_free=balance,
                margin_level=None,
                leverage=100,
                currency=currency,
                trade_allowed=True,
                updated_at=live,
                vps_sync_timestamp=live,
                synced_from_vps=True,
                data_source="VPS_LIVE_MT5",
                live_data_at=live,
            )
        docs.append(doc)
    return docs


def make_jwt(sub: Any = CLIENT_A, *, exp_in: float = 300, secret: str = JWT_SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time() + exp_in), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm="HS256")


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


@dataclass
class Api:
    client: TestClient
    agent: Agent
    store: Store

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def call(
        self, method: str, path: str, token: str | None = None, headers: Mapping[str, str] | None = None
    ) -> ClientResponse:
        return await self.client.request(method, path, headers={**bearer(token), **(headers or {})})

    async def json(
        self,
        method: str,
        path: str,
        token: str | None = None,
        status: int = 200,
        body: Any = None,
    ) -> tuple[ClientResponse, Any]:
        if body is None:
            resp = await self.call(method, path, token)
        else:
            resp = await self.client.request(method, path, headers=bearer(token), json=body)
        body = await resp.json()
        assert resp.status == status, (method, path, resp.status, body)
        assert resp.content_type == "application/json"
        return resp, body

    async def raw(self, request: bytes, *, before: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send bytes as they are (no client library tidying them up); (status, headers, body) of the
        answer. `before`: a good request sent and answered first on the same connection."""
        port = self.client.server.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                if before is not None:
                    writer.write(before)
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
                writer.write(request)
                await writer.drain()
                data = await reader.read()  # every answer to a bad request closes the connection
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        return int(status_line.split()[1]), headers, body


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from the test: an MT5_AGENT_* variable in the shell would win over them."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
async def fake_bridge() -> AsyncIterator[tuple[SeedBridge, str]]:
    async with serve_seed_bridge() as running:
        yield running


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[MakeApi]:
    """`await make_api(seed=True, **settings_overrides)` -> a live agent; closed at teardown."""
    clients: list[TestClient] = []

    async def make(*, seed: bool = True, store: Store | None = None, **overrides: Any) -> Api:
        db = tmp_path / f"agent-{len(clients)}.db"
        overrides.setdefault("store_url", f"sqlite:///{db}")
        overrides.setdefault("bridge_url", "http://127.0.0.1:9")  # nothing listens: no cycle runs here
        overrides.setdefault("health_backoff", 0.01)
        settings = load_settings(**overrides)
        if store is None:
            store = open_store(settings.store_url)
            if seed:
                await store.open()
                await store.accounts.put_account_documents(account_documents(datetime.now(UTC)))
        agent = build_agent(settings, store=store)
        client = TestClient(TestServer(create_app(agent, schedule=False), host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return Api(client=client, agent=agent, store=store)

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    """All three credentials configured, seeded store."""
    return await make_api(**ALL_TOKENS)
