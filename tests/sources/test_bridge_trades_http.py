"""Positions and deals over real HTTP on loopback: our simulated bridge (shapes, validation, faults
mapped to the closed set of reasons), the seed's bridge (no positions: said, never polled), and
hostile servers (one account's bad answer fails that account only, never an exception)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.domain.accounts import Reason
from agent.domain.trades import Deal, PositionsSnapshot
from agent.sources import POSITIONS_UNAVAILABLE, Source
from agent.sources.base import ReadFailure
from agent.sources.bridge import BridgeClient, BridgeSource
from bridge.api import create_app
from bridge.simulated import simulated_pool
from tests.agent.fake_seed_bridge import serve_seed_bridge
from tests.sources.checks import check_deal, check_position
from tests.sources.payloads import deal_json, deals_answer, position_json, positions_answer

TOKEN = "bridge-token-for-tests"
LOGINS = [886557, 886066, 886602, 885822]


async def _serve(app: web.Application) -> tuple[TestServer, str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def ours() -> AsyncIterator[tuple[Any, BridgeSource, list[str]]]:
    """Our simulated bridge with two terminals behind a UTC+3 broker clock, and a source on it."""
    pool = simulated_pool(seed=7, utc_offset_hours=3.0)
    # 30 days of deals per account, read under load: no hang is scripted here, so no tight call timeout
    server, url = await _serve(create_app(pool, token=TOKEN, call_timeout=5.0))
    seen: list[str] = []
    client = BridgeClient(url, token=TOKEN, timeout=5.0, observer=lambda e, _s, _ok: seen.append(e))
    source = BridgeSource(client)
    yield pool, source, seen
    await source.close()
    await server.close()
    pool.close()


async def test_our_bridge_serves_valid_positions_and_deals(ours) -> None:
    _, source, seen = ours
    assert isinstance(source, Source)
    assert not source.positions_supported()  # nothing known before a health check
    health = await source.usable_health(3, 0.01)
    assert source.positions_supported(health) and source.positions_supported()
    accounts = [a.account for a in (await source.list_accounts()).accounts]
    assert len(accounts) >= 2
    until = datetime.now(UTC)
    since = until - timedelta(days=30)
    open_positions = deals_seen = 0
    for account in accounts:
        before = datetime.now(UTC)
        snap = await source.read_positions(account, deadline=5.0)
        assert isinstance(snap, PositionsSnapshot), snap
        assert snap.account == account and snap.as_of <= datetime.now(UTC)
        assert snap.as_of >= before - timedelta(seconds=1)
        for p in snap.positions:
            assert p.account == account
            check_position(p, account, datetime.now(UTC) + timedelta(seconds=5))
        open_positions += len(snap.positions)
        deals = await source.read_deals(account, since, until, deadline=5.0)
        assert isinstance(deals, list), deals
        for d in deals:
            assert isinstance(d, Deal) and d.account == account
            check_deal(d, account, datetime.now(UTC) + timedelta(seconds=5))
            # Broker time (UTC+3) converted: every deal inside the asked window.
            assert since <= d.time <= until, (d.ticket, d.time)
        assert [(d.time, d.ticket) for d in deals] == sorted((d.time, d.ticket) for d in deals)
        deals_seen += len(deals)
    assert deals_seen > 0  # the simulator trades: the test sees real content, not empty lists
    assert {"positions", "trades"} <= set(seen)


async def test_the_deals_window_is_sent_as_utc_iso_times() -> None:
    asked: list[dict[str, str]] = []

    async def trades(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        return web.json_response(deals_answer(account=int(request.match_info["id"])))

    app = web.Application()
    app.router.add_get("/api/mt5/account/{id}/trades", trades)
    server, url = await _serve(app)
    source = BridgeSource(BridgeClient(url, timeout=5.0))
    try:
        since = datetime(2026, 1, 5, 9, 0, 0, 250000, tzinfo=UTC)
        # 12:00 UTC, given at +05:00: sent as the same instant in UTC.
        until = datetime(2026, 1, 5, 17, 0, tzinfo=timezone(timedelta(hours=5)))
        assert await source.read_deals(886557, since, until) == []
        (query,) = asked
        assert query == {"from": "2026-01-05T09:00:00.250000Z", "to": "2026-01-05T12:00:00.000000Z"}
        with pytest.raises(ValueError, match="timezone-aware"):
            await source.read_deals(886557, datetime(2026, 1, 1), until)
    finally:
        await source.close()
        await server.close()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("login_failed", Reason.LOGIN_FAILED),
        ("disconnected", Reason.NO_LIVE_DATA),
        ("wrong_account", Reason.ACCOUNT_MISMATCH),
        ("hang", Reason.TIMEOUT),
    ],
)
async def test_our_bridge_faults_fail_that_account_only(fault: str, reason: Reason) -> None:
    bad = LOGINS[1]
    pool = simulated_pool(seed=7, faults={bad: fault}, hang_seconds=30.0)
    server, url = await _serve(create_app(pool, token=TOKEN, call_timeout=0.5))
    source = BridgeSource(BridgeClient(url, token=TOKEN, timeout=5.0))
    try:
        await source.usable_health(3, 0.01)
        accounts = [a.account for a in (await source.list_accounts()).accounts]
        now = datetime.now(UTC)
        reads = await asyncio.gather(*(source.read_positions(a, deadline=3.0) for a in accounts))
        sweeps = await asyncio.gather(
            *(source.read_deals(a, now - timedelta(days=1), now, deadline=3.0) for a in accounts)
        )
        for account, snap, deals in zip(accounts, reads, sweeps, strict=True):
            if account == bad:
                assert isinstance(snap, ReadFailure) and snap.reason is reason, snap
                assert isinstance(deals, ReadFailure) and deals.reason is reason, deals
            else:
                assert isinstance(snap, PositionsSnapshot), (account, snap)
                assert isinstance(deals, list), (account, deals)
        unknown = await source.read_positions(999_999_999)
        assert isinstance(unknown, ReadFailure) and unknown.reason is Reason.NOT_FOUND
        assert "endpoint" not in unknown.message  # the bridge named the account as unknown
    finally:
        await source.close()
        await server.close()
        pool.close()


async def test_the_seed_bridge_has_no_positions_and_is_never_asked() -> None:
    async with serve_seed_bridge() as (_bridge, url):
        seen: list[str] = []
        source = BridgeSource(BridgeClient(url, timeout=5.0, observer=lambda e, _s, _ok: seen.append(e)))
        try:
            # Before any health check the source does not know: it asks, and says what the 404 means.
            first = await source.read_positions(886557)
            assert isinstance(first, ReadFailure) and first.reason is Reason.NOT_FOUND
            assert "serves no positions endpoint" in first.message
            health = await source.usable_health(3, 0.01)
            assert not source.positions_supported(health) and not source.positions_supported()
            seen.clear()
            now = datetime.now(UTC)
            for read in (
                await source.read_positions(886557),
                await source.read_deals(886557, now - timedelta(hours=1), now),
            ):
                assert isinstance(read, ReadFailure) and read.reason is Reason.NOT_FOUND
                assert POSITIONS_UNAVAILABLE in read.message
            assert seen == []  # known unsupported: no request at all
            # Balances keep working.
            reads = await source.read_accounts([886557, 886066], 5.0)
            assert all(not isinstance(r, ReadFailure) for r in reads.results.values())
        finally:
            await source.close()


# -- hostile servers ---------------------------------------------------------------------------------

GOOD, BAD = 886557, 886066


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


HOSTILE: list[tuple[str, Any, Reason, str]] = [
    (
        "bad_volume",
        {
            "positions": positions_answer(position_json(1, volume=-1), account=BAD),
            "trades": deals_answer(deal_json(1, volume=-1), account=BAD),
        },
        Reason.INVALID_PAYLOAD,
        "[0].volume -1.0 is not a volume",
    ),
    (
        "naive_time",
        {
            "positions": positions_answer(position_json(1, time="2026-01-05T09:00:00"), account=BAD),
            "trades": deals_answer(deal_json(1, time="2026-01-05T09:00:00"), account=BAD),
        },
        Reason.INVALID_PAYLOAD,
        "[0].time '2026-01-05T09:00:00' has no UTC offset",
    ),
    (
        "other_account",
        {"positions": positions_answer(account=GOOD), "trades": deals_answer(account=GOOD)},
        Reason.ACCOUNT_MISMATCH,
        f"account {GOOD} when asked",
    ),
    ("not_json", b"{'positions': [", Reason.INVALID_PAYLOAD, "not valid JSON"),
    ("deep", b"[" * 30_000 + b"]" * 30_000, Reason.INVALID_PAYLOAD, "not valid JSON"),
    ("too_large", b'{"x": "' + b"a" * 70_000 + b'"}', Reason.INVALID_PAYLOAD, "larger than 65536 bytes"),
    (
        "gzip_bomb",
        ("gzip", gzip.compress(b" " * 5_000_000)),
        Reason.INVALID_PAYLOAD,
        "larger than 65536 bytes",
    ),
    (
        "http_503",
        (503, {"error": {"code": "login_failed", "message": "bad password"}}),
        Reason.LOGIN_FAILED,
        "bad password",
    ),
    ("http_502", (502, {"error": {"code": "terminal_unavailable"}}), Reason.NO_LIVE_DATA, "HTTP 502"),
    ("http_504", (504, {"error": {"code": "terminal_timeout"}}), Reason.TIMEOUT, "HTTP 504"),
    ("http_500", (500, "boom"), Reason.HTTP_STATUS, "HTTP 500"),
    ("http_404", (404, {"error": {"code": "unknown_account"}}), Reason.NOT_FOUND, "unknown_account"),
    (
        "future",
        {
            "positions": positions_answer(account=BAD, timestamp="2030-01-01T00:00:00Z"),
            "trades": deals_answer(deal_json(1, time="2030-01-01T00:00:00Z"), account=BAD),
        },
        Reason.INVALID_PAYLOAD,
        "ahead of the receive time",
    ),
    ("hang", "hang", Reason.TIMEOUT, "no answer within"),
    ("reset", "reset", Reason.CONNECTION, ""),
]


def _hostile_app(bad: Any, release: asyncio.Event) -> web.Application:
    async def respond(request: web.Request, good: Any) -> web.StreamResponse:
        account = int(request.match_info["id"])
        if account != BAD:
            return web.json_response(good(account))
        if bad == "hang":
            await release.wait()
        if bad == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if type(bad) is tuple and bad[0] == "gzip":
            return web.Response(
                body=bad[1], headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        if type(bad) is tuple:
            status, body = bad
            return web.Response(body=_bytes(body), status=status, content_type="application/json")
        if type(bad) is bytes:
            return web.Response(body=bad, content_type="application/json")
        # Per endpoint: the last path segment names the body.
        doc = bad[request.path.rsplit("/", 1)[1]]
        return web.json_response(doc)

    async def positions(request: web.Request) -> web.StreamResponse:
        return await respond(request, lambda a: positions_answer(position_json(1), account=a))

    async def trades(request: web.Request) -> web.StreamResponse:
        return await respond(request, lambda a: deals_answer(deal_json(1), account=a))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "mt5": {"available": True}, "features": ["positions"]})

    app = web.Application()
    app.router.add_get("/api/mt5/bridge/health", health)
    app.router.add_get("/api/mt5/account/{id}/positions", positions)
    app.router.add_get("/api/mt5/account/{id}/trades", trades)

    async def release_on_shutdown(app: web.Application) -> None:
        release.set()

    app.on_shutdown.append(release_on_shutdown)
    return app


@pytest.mark.parametrize(("name", "bad", "reason", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_answer_fails_that_account_only(
    name: str, bad: Any, reason: Reason, message: str
) -> None:
    release = asyncio.Event()
    server, url = await _serve(_hostile_app(bad, release))
    source = BridgeSource(BridgeClient(url, timeout=5.0, max_response_bytes=65536))
    try:
        assert source.positions_supported(await source.usable_health(1, 0))
        good, failed = await asyncio.gather(
            source.read_positions(GOOD, deadline=0.5), source.read_positions(BAD, deadline=0.5)
        )
        assert isinstance(good, PositionsSnapshot) and len(good.positions) == 1
        assert isinstance(failed, ReadFailure), failed
        assert failed.reason is reason and message in failed.message, failed
        assert len(failed.message) < 500
        if name == "future":  # a snapshot from the future: clock skew, its lead kept
            assert failed.ahead_seconds is not None and failed.ahead_seconds > 3600
        now = datetime.now(UTC)
        good_deals, bad_deals = await asyncio.gather(
            source.read_deals(GOOD, now - timedelta(days=1), now, deadline=0.5),
            source.read_deals(BAD, now - timedelta(days=1), now, deadline=0.5),
        )
        assert isinstance(good_deals, list) and len(good_deals) == 1
        assert isinstance(bad_deals, ReadFailure), bad_deals
        assert bad_deals.reason is reason and message in bad_deals.message, bad_deals
    finally:
        release.set()
        await source.close()
        await server.close()


async def test_only_a_usable_health_document_decides_support() -> None:
    doc: dict[str, Any] = {"status": "unhealthy", "mt5": {"available": False}}

    async def health(request: web.Request) -> web.Response:
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/api/mt5/bridge/health", health)
    server, url = await _serve(app)
    source = BridgeSource(BridgeClient(url, timeout=5.0))
    try:
        await source.health()  # a bridge starting up lists no features: nothing is concluded
        assert not source.positions_supported() and source._positions is None
        doc.update(status="healthy", mt5={"available": True}, features=["batch", "positions"])
        await source.health()  # the prober's check counts as well as the cycle's
        assert source.positions_supported()
        doc["status"] = "unhealthy"
        doc.pop("features")
        await source.health()
        assert source.positions_supported()  # kept until a usable document says otherwise
        doc["status"] = "degraded"
        await source.health()
        assert not source.positions_supported()
    finally:
        await source.close()
        await server.close()
