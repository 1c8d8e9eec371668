"""Every account's positions in one request (`BridgeSource.read_positions_many` over the bridge's
`positions_batch`), over real HTTP on loopback: the same snapshots as one read per account, one request
instead of N, a hung terminal kept from holding the others up (and back in the batch once it answers),
a batch answer that leaves accounts out or carries junk, and a bridge without the feature."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.domain.accounts import Reason
from agent.domain.trades import PositionsSnapshot
from agent.sources.base import PositionsRead, ReadFailure
from agent.sources.bridge import BridgeClient, BridgeSource
from bridge.api import create_app
from bridge.simulated import demo_accounts, simulated_pool
from tests.sources.payloads import position_json, positions_answer


async def _serve(app: web.Application) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


async def _all(source: BridgeSource, accounts: list[int], deadline: float) -> dict[int, PositionsRead]:
    out: dict[int, PositionsRead] = {}
    async for account, read in source.read_positions_many(accounts, deadline):
        assert account not in out, f"account {account} yielded twice"
        out[account] = read
    return out


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Any, BridgeSource, Counter[str]]]:
    """The demo desk, one terminal per account (a hung one holds only its own account)."""
    pool = simulated_pool(seed=7, static=True, hang_seconds=30.0)  # frozen: two reads see the same
    server, url = await _serve(create_app(pool, call_timeout=3.0))
    seen: Counter[str] = Counter()
    client = BridgeClient(url, timeout=5.0, observer=lambda e, _s, _ok: seen.update([e]))
    source = BridgeSource(client)
    await source.health()
    yield pool, source, seen
    for login in pool.accounts:
        pool.set_fault(login, None)
    await source.close()
    await server.close()
    pool.close()


async def test_one_request_gives_what_one_read_per_account_gives(sim) -> None:
    pool, source, seen = sim
    logins = pool.accounts
    many = await _all(source, logins, 5.0)
    assert set(many) == set(logins)
    assert seen == Counter({"health": 1, "positions_batch": 1})
    assert source.batch_requests == 1
    for login in logins:
        one = await source.read_positions(login, 5.0)
        got = many[login]
        assert isinstance(got, PositionsSnapshot) and isinstance(one, PositionsSnapshot), (got, one)
        assert got.account == login and got.positions == one.positions
    assert any(isinstance(r, PositionsSnapshot) and r.positions for r in many.values()), "no open position"


async def test_a_hung_terminal_is_read_alone_and_rejoins_once_it_answers(sim) -> None:
    pool, source, seen = sim
    logins = pool.accounts
    hung = logins[0]
    pool.set_fault(hung, "hang")

    # first call: the batch overruns its share of the deadline; everyone is read alone, the hung one
    # times out, the others answer
    started = time.monotonic()
    first = await _all(source, logins, 1.0)
    assert time.monotonic() - started < 1.5
    assert isinstance(first[hung], ReadFailure) and first[hung].reason is Reason.TIMEOUT
    assert all(isinstance(first[a], PositionsSnapshot) for a in logins if a != hung), first

    # next calls: the batch leaves the hung account out and answers at once
    for _ in range(2):
        started = time.monotonic()
        seen.clear()
        again = await _all(source, logins, 1.0)
        others_at = time.monotonic() - started
        assert isinstance(again[hung], ReadFailure) and again[hung].reason is Reason.TIMEOUT
        assert all(isinstance(again[a], PositionsSnapshot) for a in logins if a != hung)
        assert seen["positions_batch"] == 1 and seen["positions"] == 1  # the hung one, alone
        assert others_at < 1.5

    # the terminal answers again: read alone once (quick), then back in the batch
    pool.set_fault(hung, None)
    back = await _all(source, logins, 3.0)
    assert all(isinstance(r, PositionsSnapshot) for r in back.values()), back
    seen.clear()
    await _all(source, logins, 3.0)
    assert seen == Counter({"positions_batch": 1})


async def test_a_bridge_without_the_feature_is_read_one_account_at_a_time(sim) -> None:
    pool, source, seen = sim
    source.use_batch = False
    many = await _all(source, pool.accounts, 5.0)
    assert all(isinstance(r, PositionsSnapshot) for r in many.values())
    assert seen["positions_batch"] == 0 and seen["positions"] == len(pool.accounts)


async def test_a_batch_answer_with_junk_and_gaps_costs_only_what_it_lacks() -> None:
    """Entries not asked for, repeated or without an account id are skipped; an account left out is read
    alone; an error entry is that account's failure; a bad entry fails only its account."""
    a, b, c, d, e = 886001, 886002, 886003, 886004, 886005
    singles: Counter[int] = Counter()

    def answer(account: int) -> dict[str, Any]:
        doc = positions_answer(position_json(account * 10), account=account)
        doc["timestamp"] = "2026-01-05T12:00:00Z"
        return doc

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "features": ["positions", "positions_batch"]})

    async def batch(_: web.Request) -> web.Response:
        bad = answer(d)
        bad["positions"][0]["volume"] = "lots"
        return web.json_response(
            {
                "accounts": [
                    answer(a),
                    answer(a),  # repeated
                    answer(999),  # not asked for
                    {"account_id": "x"},
                    "junk",
                    {"account_id": c, "error": {"code": "login_failed", "message": "no"}, "status": 503},
                    bad,
                    answer(e),
                ]
            }
        )

    async def single(request: web.Request) -> web.Response:
        account = int(request.match_info["id"])
        singles[account] += 1
        return web.json_response(answer(account))

    app = web.Application()
    app.router.add_get("/api/mt5/bridge/health", health)
    app.router.add_get("/api/mt5/accounts/positions", batch)
    app.router.add_get("/api/mt5/account/{id}/positions", single)
    server, url = await _serve(app)
    source = BridgeSource(BridgeClient(url, timeout=5.0))
    try:
        await source.health()
        got = await _all(source, [a, b, c, d, e], 5.0)
        assert isinstance(got[a], PositionsSnapshot) and got[a].positions[0].identifier == a * 10
        assert isinstance(got[e], PositionsSnapshot)
        assert isinstance(got[b], PositionsSnapshot)  # left out of the answer: read alone
        assert singles == Counter({b: 1})
        assert isinstance(got[c], ReadFailure) and got[c].reason is Reason.LOGIN_FAILED
        assert isinstance(got[d], ReadFailure) and got[d].reason is Reason.INVALID_PAYLOAD
        assert "volume" in got[d].message
    finally:
        await source.close()
        await server.close()


async def test_a_failing_batch_falls_back_to_one_read_per_account() -> None:
    logins = [e.login for e in demo_accounts()][:3]
    calls: Counter[str] = Counter()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "features": ["positions", "positions_batch"]})

    async def batch(_: web.Request) -> web.Response:
        calls["batch"] += 1
        return web.json_response({"error": {"code": "internal", "message": "boom"}}, status=500)

    async def single(request: web.Request) -> web.Response:
        calls["single"] += 1
        account = int(request.match_info["id"])
        doc = positions_answer(account=account)
        doc["timestamp"] = "2026-01-05T12:00:00Z"
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/api/mt5/bridge/health", health)
    app.router.add_get("/api/mt5/accounts/positions", batch)
    app.router.add_get("/api/mt5/account/{id}/positions", single)
    server, url = await _serve(app)
    source = BridgeSource(BridgeClient(url, timeout=5.0))
    try:
        await source.health()
        got = await _all(source, logins, 5.0)
        assert all(isinstance(r, PositionsSnapshot) for r in got.values()), got
        assert calls == Counter({"batch": 1, "single": 3})
    finally:
        await source.close()
        await server.close()
