"""`GET /api/v1/accounts/{account}/positions` and `GET /api/v1/events` (DESIGN.md section 11): shapes,
the cursor (after, limit, has_more, next_after), filters, 410 cursor_expired, and the same access as
accounts (a client JWT sees only its accounts' positions and events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.domain.trades import EventType, Position, PositionsSnapshot, PositionType, TradeEvent
from tests.api.conftest import ADMIN, ALL_TOKENS, CLIENT_A, CLIENT_B, READ, Api, MakeApi, make_jwt

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A1, A2, B1 = 100001, 100002, 200001  # CLIENT_A's two, CLIENT_B's one (tests/api/conftest.py)


def _position(account: int, identifier: int) -> Position:
    return Position(
        account=account,
        ticket=identifier,
        identifier=identifier,
        time=T0,
        time_update=T0 + timedelta(seconds=5),
        type=PositionType.SELL,
        magic=7,
        reason=0,
        volume=0.25,
        price_open=1.0825,
        sl=1.09,
        tp=0.0,
        price_current=1.0811,
        swap=-0.4,
        profit=35.0,
        symbol="EURUSD",
        comment="hedge",
    )


def _event(account: int, n: int, kind: EventType = EventType.TRADE_OPENED) -> TradeEvent:
    return TradeEvent(
        account=account,
        identifier=n,
        type=kind,
        dedup_key=f"{account}:{n}:{kind.value}",
        time=T0 + timedelta(seconds=n),
        detected_at=T0 + timedelta(seconds=n, milliseconds=300),
        symbol="EURUSD",
        data={"side": "buy", "volume": 0.1, "price_open": 1.1},
    )


@pytest.fixture
async def trades_api(make_api: MakeApi) -> Api:
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    events = [_event(A1, 1), _event(B1, 2), _event(A2, 3, EventType.TRADE_CLOSED), _event(A1, 4)]
    stored = await api.store.events.append_events(events)
    assert [e.id for e in stored] == [1, 2, 3, 4]
    await api.store.positions.replace_positions(A1, PositionsSnapshot(A1, T0, (_position(A1, 11),)))
    return api


async def test_positions_shape_and_cursor_anchor(trades_api: Api) -> None:
    _, body = await trades_api.json("GET", f"/api/v1/accounts/{A1}/positions", READ)
    assert body["account"] == A1 and body["as_of"] == "2026-11-30T12:00:00.000Z"
    assert body["as_of_event_id"] == 4  # the newest event stored with it
    (p,) = body["positions"]
    assert set(p) == {
        "ticket", "identifier", "time", "time_update", "type", "magic", "reason", "volume", "price_open",
        "sl", "tp", "price_current", "swap", "profit", "symbol", "comment",
    }  # fmt: skip
    assert (p["identifier"], p["type"], p["volume"], p["sl"], p["symbol"]) == (11, 1, 0.25, 1.09, "EURUSD")


async def test_positions_of_an_account_never_polled_are_empty(trades_api: Api) -> None:
    _, body = await trades_api.json("GET", f"/api/v1/accounts/{A2}/positions", READ)
    assert body == {"account": A2, "as_of": None, "as_of_event_id": None, "positions": []}


async def test_events_page_through_with_the_cursor(trades_api: Api) -> None:
    _, first = await trades_api.json("GET", "/api/v1/events?limit=3", READ)
    assert [e["id"] for e in first["events"]] == [1, 2, 3]
    assert first["has_more"] is True and first["next_after"] == 3 and first["oldest_available"] == 1
    _, rest = await trades_api.json("GET", f"/api/v1/events?after={first['next_after']}&limit=3", READ)
    assert [e["id"] for e in rest["events"]] == [4] and rest["has_more"] is False and rest["next_after"] == 4
    _, empty = await trades_api.json("GET", "/api/v1/events?after=4", READ)
    assert empty["events"] == [] and empty["next_after"] == 4 and empty["has_more"] is False
    e = first["events"][0]
    assert set(e) == {
        "id",
        "account",
        "identifier",
        "type",
        "dedup_key",
        "time",
        "detected_at",
        "symbol",
        "data",
    }
    assert e["type"] == "TRADE_OPENED" and e["data"] == {"side": "buy", "volume": 0.1, "price_open": 1.1}


async def test_events_filters(trades_api: Api) -> None:
    _, by_account = await trades_api.json("GET", f"/api/v1/events?account={A1}", READ)
    assert [e["id"] for e in by_account["events"]] == [1, 4]
    _, by_type = await trades_api.json("GET", "/api/v1/events?type=TRADE_CLOSED", READ)
    assert [e["id"] for e in by_type["events"]] == [3]


@pytest.mark.parametrize(
    "query",
    ["after=-1", "after=x", "limit=0", "limit=1001", "type=TRADE_EXPLODED", "account=0", "account=١٢"],
)
async def test_bad_parameters_are_400(trades_api: Api, query: str) -> None:
    _, body = await trades_api.json("GET", f"/api/v1/events?{query}", READ, status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_an_expired_cursor_is_410(trades_api: Api) -> None:
    removed = await trades_api.store.events.prune_events(max_events=1)
    assert removed == 3
    _, body = await trades_api.json("GET", "/api/v1/events?after=1", READ, status=410)
    assert body["error"]["code"] == "cursor_expired"
    assert body["error"]["oldest_available"] == 4 and body["error"]["latest_id"] == 4
    _, ok = await trades_api.json("GET", "/api/v1/events?after=3", READ)  # just before the oldest kept
    assert [e["id"] for e in ok["events"]] == [4] and ok["oldest_available"] == 4


async def test_a_client_sees_only_its_accounts(trades_api: Api) -> None:
    token = make_jwt(CLIENT_A)
    _, mine = await trades_api.json("GET", "/api/v1/events", token)
    assert [e["account"] for e in mine["events"]] == [A1, A2, A1]
    await trades_api.json("GET", f"/api/v1/events?account={B1}", token, status=403)
    await trades_api.json("GET", f"/api/v1/accounts/{B1}/positions", token, status=403)
    _, b = await trades_api.json("GET", "/api/v1/events", make_jwt(CLIENT_B))
    assert [e["account"] for e in b["events"]] == [B1]
    await trades_api.json("GET", "/api/v1/events", None, status=401)
    await trades_api.json("GET", "/api/v1/events", make_jwt(CLIENT_A, exp_in=-60), status=401)
    _, admin = await trades_api.json("GET", "/api/v1/events", ADMIN)
    assert len(admin["events"]) == 4


async def test_unknown_account_is_404(trades_api: Api) -> None:
    await trades_api.json("GET", "/api/v1/accounts/999999/positions", READ, status=404)
    await trades_api.json("GET", "/api/v1/events?account=999999", READ, status=404)


async def test_an_event_stored_while_the_page_is_read_is_no_expired_cursor(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty store, and the first event lands between the API's two cursor reads: `after=0` is not
    expired (nothing was ever pruned), whichever read comes first."""
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    events = api.agent.store.events
    for name in ("oldest_available", "latest_id"):
        inner = getattr(events, name)
        landed: list[bool] = []

        serial = 100 + len(name)

        async def read_then_land(inner=inner, landed=landed, serial=serial):  # lands right after this read
            value = await inner()
            if not landed:
                landed.append(True)
                await api.store.events.append_events([_event(A1, serial)])
            return value

        monkeypatch.setattr(events, name, read_then_land)
        await api.json("GET", "/api/v1/events?after=0", READ)  # 200, not 410
        monkeypatch.undo()
        assert landed, name
