"""Every endpoint's shape and status codes, auth, and the OpenAPI document, over a real loopback server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import bridge.api
from bridge.api import parse_login
from bridge.errors import BadAccountId
from bridge.openapi import build_document
from bridge.simulated import DEMO_ACCOUNTS

A, B = 886557, 886066
LIVE_FIELDS = {
    "login",
    "name",
    "server",
    "currency",
    "leverage",
    "balance",
    "equity",
    "profit",
    "margin",
    "margin_free",
    "margin_level",
    "margin_so_mode",
    "margin_so_call",
    "margin_so_so",
    "trade_allowed",
    "timestamp",
}
ACCOUNT_PATHS = ("info", "balance", "trades", "positions")
# DESIGN.md section 11, exactly.
POSITION_FIELDS = (
    "ticket identifier time time_update type magic reason volume price_open sl tp price_current swap profit "
    "symbol comment"
).split()
DEAL_FIELDS = (
    "ticket order time type entry volume price commission swap profit fee symbol comment position_id magic "
    "reason"
).split()


def _utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def _validate(doc: dict, schema_name: str, body: object) -> None:
    """Check a real response against the served OpenAPI schema (OpenAPI 3.1 schemas are JSON Schema)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(body))
    assert not errors, f"{schema_name}: {errors[0].message} at {list(errors[0].path)}"


async def test_health_with_token_shows_terminal_details(make_bridge) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 200
    status, body = await br.get("/api/mt5/bridge/health")
    assert status == 200
    assert body["status"] == "healthy"
    assert abs(_utc(body["timestamp"]) - datetime.now(UTC)) < timedelta(seconds=30)
    assert body["mt5"]["available"] is True
    assert body["mt5"]["terminal_info"]["connected"] is True
    assert {"connected", "trade_allowed", "name", "company", "build"} <= set(body["mt5"]["terminal_info"])
    assert {"batch", "positions"} <= set(body["features"])
    assert body["terminals"]["total"] == len(DEMO_ACCOUNTS) and body["terminals"]["healthy"] == len(
        DEMO_ACCOUNTS
    )
    assert {i["name"] for i in body["terminals"]["items"]} == {f"sim-{x[0]}" for x in DEMO_ACCOUNTS}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}])
async def test_health_without_valid_token_hides_details(make_bridge, headers) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get("/api/mt5/bridge/health", auth=False, headers=headers)
    assert status == 200
    assert body["status"] == "healthy" and body["mt5"]["available"] is True
    assert "terminal_info" not in body["mt5"]
    assert "terminals" not in body
    assert "sim-" not in str(body)


async def test_no_token_configured_serves_everything(make_bridge) -> None:
    br = await make_bridge(static=True, token=None)
    status, body = await br.get("/api/mt5/bridge/health", auth=False)
    assert status == 200 and "terminals" in body
    status, body = await br.get(f"/api/mt5/account/{A}/balance", auth=False)
    assert status == 200 and body["account_id"] == A


async def test_summary_uses_last_known_values_without_logging_in(make_bridge) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get("/api/mt5/accounts/summary")
    assert status == 200
    assert [a["account"] for a in body["accounts"]] == [x[0] for x in DEMO_ACCOUNTS]
    first = body["accounts"][0]
    assert first == {
        "account": A,
        "name": "Main Balance Account",
        "server": "MEXAtlantic-Real",
        "currency": "USD",
        "balance": None,
        "equity": None,
        "terminal": f"sim-{A}",
        "updated_at": None,
    }
    assert all(br.sim(x[0]).login_calls == 0 for x in DEMO_ACCOUNTS), "summary must not log in"

    _, info = await br.get(f"/api/mt5/account/{A}/info")
    _, body = await br.get("/api/mt5/accounts/summary")
    first = body["accounts"][0]
    assert first["balance"] == info["live_data"]["balance"] == 80_000.00
    assert first["equity"] == info["live_data"]["equity"]
    assert first["updated_at"] == info["live_data"]["timestamp"]
    assert body["accounts"][1]["balance"] is None


async def test_info_live_and_stored_data(make_bridge) -> None:
    br = await make_bridge(static=True)
    doc = build_document()
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 200
    _validate(doc, "AccountInfoResponse", body)
    assert body["account_id"] == A and body["stored_data"] is None
    live = body["live_data"]
    assert set(live) == LIVE_FIELDS
    assert live["login"] == A and live["name"] == "Main Balance Account" and live["currency"] == "USD"
    assert live["balance"] == 80_000.00 and live["leverage"] == 100 and live["trade_allowed"] is True
    # the broker's levels (issue 14): the simulated MEXAtlantic-Real calls margin at 100 %, stops out at 50 %
    assert (live["margin_so_mode"], live["margin_so_call"], live["margin_so_so"]) == ("percent", 100.0, 50.0)
    assert abs(_utc(live["timestamp"]) - datetime.now(UTC)) < timedelta(seconds=30)

    status, again = await br.get(f"/api/mt5/account/{A}/info")
    stored = again["stored_data"]
    assert stored is not None
    for f in ("balance", "equity", "profit", "margin", "margin_free", "currency"):
        assert stored[f] == live[f]
    assert stored["timestamp"] == live["timestamp"]  # the previous read, not this one


async def test_balance_positions_trades_shapes(make_bridge, busy_clock) -> None:
    br = await make_bridge(static=True, clock=busy_clock(A, static=True))
    doc = build_document()
    status, bal = await br.get(f"/api/mt5/account/{A}/balance")
    assert status == 200
    _validate(doc, "BalanceResponse", bal)
    assert set(bal) == {"account_id", "balance", "equity", "profit", "currency", "timestamp"}
    assert bal["account_id"] == A and bal["balance"] == 80_000.00

    status, pos = await br.get(f"/api/mt5/account/{A}/positions")
    assert status == 200
    _validate(doc, "PositionsResponse", pos)
    assert pos["account_id"] == A and pos["positions"], "the demo account should hold open positions"
    assert round(sum(p["profit"] + p["swap"] for p in pos["positions"]), 2) == bal["profit"]
    assert len(pos["positions"]) == len(br.sim(A).positions_get() or ())
    assert set(pos) == {"account_id", "timestamp", "positions"}
    assert all(set(p) == set(POSITION_FIELDS) for p in pos["positions"])
    assert all(_utc(p["time"]) <= _utc(p["time_update"]) <= _utc(pos["timestamp"]) for p in pos["positions"])

    status, tr = await br.get(f"/api/mt5/account/{A}/trades")
    assert status == 200
    _validate(doc, "TradesResponse", tr)
    assert _utc(tr["to"]) - _utc(tr["from"]) == timedelta(days=7)  # default window
    deals = tr["deals"]
    assert set(tr) == {"account_id", "from", "to", "deals"}
    assert all(set(d) == set(DEAL_FIELDS) for d in deals)
    assert {d["entry"] for d in deals} == {0, 1, 2}, "in, out and inout (reversal) deals"
    assert {d["reason"] for d in deals} >= {0, 3, 4, 5}
    assert deals and all(_utc(tr["from"]) <= _utc(d["time"]) <= _utc(tr["to"]) for d in deals)
    assert [d["time"] for d in deals] == sorted(d["time"] for d in deals)
    assert deals[0]["comment"] == "Deposit" and deals[0]["type"] == 2
    # The whole history adds up to the balance (the deposit is the first deal).
    total = sum(d["profit"] + d["commission"] + d["swap"] + d["fee"] for d in deals)
    assert round(total, 2) == bal["balance"]


async def test_trades_query_parameters(make_bridge) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/trades?from=2025-10-01&to=2025-10-02T12:00:00")
    assert status == 200
    assert body["from"] == "2025-10-01T00:00:00.000Z" and body["to"] == "2025-10-02T12:00:00.000Z"
    assert body["deals"] == []  # long before the simulated history
    # An offset is honoured; an unencoded '+' (arrives as a space) too.
    status, body = await br.get(f"/api/mt5/account/{A}/trades?from=2025-10-01T02:00:00%2B02:00&to=2025-10-02")
    assert status == 200 and body["from"] == "2025-10-01T00:00:00.000Z"
    status, body = await br.get(f"/api/mt5/account/{A}/trades?from=2025-10-01T02:00:00+02:00&to=2025-10-02")
    assert status == 200 and body["from"] == "2025-10-01T00:00:00.000Z"
    for query in ("from=yesterday", "to=2025-13-01", "from=2025-10-02&to=2025-10-01"):
        status, body = await br.get(f"/api/mt5/account/{A}/trades?{query}")
        assert status == 400, query
        assert body["error"]["code"] == "bad_request" and body["error"]["message"]
    assert br.sim(A).login_calls == 1


async def test_live_batch_shape(make_bridge) -> None:
    br = await make_bridge(static=True)
    doc = build_document()
    status, body = await br.get("/api/mt5/accounts/live")
    assert status == 200
    _validate(doc, "LiveBatchResponse", body)
    assert [e["account_id"] for e in body["accounts"]] == [x[0] for x in DEMO_ACCOUNTS]
    for entry, (login, name, balance) in zip(body["accounts"], DEMO_ACCOUNTS, strict=True):
        assert entry["live_data"]["login"] == login and entry["live_data"]["name"] == name
        assert entry["live_data"]["balance"] == balance

    status, body = await br.get(f"/api/mt5/accounts/live?accounts={B},{A},{B},123")
    assert status == 200
    _validate(doc, "LiveBatchResponse", body)
    entries = body["accounts"]
    assert [e["account_id"] for e in entries] == [B, A, 123]
    assert entries[0]["live_data"]["login"] == B and entries[1]["live_data"]["login"] == A
    assert entries[0]["stored_data"]["balance"] == 10_000.00  # read by the first batch
    assert entries[2] == {
        "account_id": 123,
        "status": 404,
        "error": {"code": "unknown_account", "message": "account 123 is not served by this bridge"},
    }
    for bad in ("abc", "1,,2", "", "0", "-1"):
        status, body = await br.get(f"/api/mt5/accounts/live?accounts={bad}")
        assert status == 400 and body["error"]["code"] == "bad_account_id", bad


@pytest.mark.parametrize(
    "bad_id", ["abc", "0", "-5", "1.5", "1e3", "%EF%BC%91%EF%BC%92", "9" * 25, "%20886557"]
)
@pytest.mark.parametrize("endpoint", ACCOUNT_PATHS)
async def test_bad_account_id_is_400(make_bridge, bad_id, endpoint) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{bad_id}/{endpoint}")
    assert status == 400
    assert body["error"]["code"] == "bad_account_id" and "positive integer" in body["error"]["message"]


@pytest.mark.parametrize("endpoint", ACCOUNT_PATHS)
async def test_unknown_account_is_404(make_bridge, endpoint) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/123456/{endpoint}")
    assert status == 404
    assert body == {
        "error": {"code": "unknown_account", "message": "account 123456 is not served by this bridge"}
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/mt5/accounts/summary",
        "/api/mt5/accounts/live",
        "/api/mt5/accounts/positions",
        *(f"/api/mt5/account/{A}/{p}" for p in ACCOUNT_PATHS),
        "/api/mt5/account/abc/info",
        "/no/such/route",
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-token-5f1c"}, {"Authorization": ""}],
)
async def test_missing_or_wrong_token_is_401(make_bridge, path, headers) -> None:
    br = await make_bridge(static=True)
    async with br.client.get(path, headers=headers) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await r.json())["error"]["code"] == "unauthorized"
    assert all(br.sim(x[0]).login_calls == 0 for x in DEMO_ACCOUNTS)


async def test_token_scheme_is_case_insensitive(make_bridge, token) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/balance", headers={"Authorization": f"bearer {token}"})
    assert status == 200 and body["account_id"] == A


async def test_unknown_route_and_method_are_json(make_bridge) -> None:
    br = await make_bridge(static=True)
    status, body = await br.get("/api/mt5/nothing/here")
    assert status == 404 and body["error"]["code"] == "not_found"
    async with br.client.post(
        f"/api/mt5/account/{A}/info", headers={"Authorization": f"Bearer {br.token}"}
    ) as r:
        assert r.status == 405 and r.content_type == "application/json"
        assert (await r.json())["error"]["code"] == "method_not_allowed"


async def test_unexpected_error_is_json_500_without_traceback(make_bridge, monkeypatch) -> None:
    def boom(_read: object) -> dict:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(bridge.api, "live_data", boom)
    br = await make_bridge(static=True)
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 500
    assert body == {"error": {"code": "internal_error", "message": "internal error"}}


async def test_openapi_describes_every_route(make_bridge) -> None:
    br = await make_bridge(static=True)
    status, doc = await br.get("/api/openapi.json", auth=False)
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in br.client.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert len(routes) == 11  # ten, and the rates (issue 14)
    for method, path in routes:
        assert path in doc["paths"], path
        assert method in doc["paths"][path], (method, path)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/api/mt5/bridge/health"]["get"]["security"] == [{}, {"bearerAuth": []}]
    assert "Error" in doc["components"]["schemas"]
    info_responses = doc["paths"]["/api/mt5/account/{id}/info"]["get"]["responses"]
    assert {"200", "400", "401", "404", "502", "503", "504"} <= set(info_responses)
    Draft202012Validator.check_schema(
        {"$ref": "#/components/schemas/Health", "components": doc["components"]}
    )


async def test_health_and_error_bodies_match_openapi(make_bridge) -> None:
    br = await make_bridge(static=True)
    doc = build_document()
    _, health = await br.get("/api/mt5/bridge/health")
    _validate(doc, "Health", health)
    _, hidden = await br.get("/api/mt5/bridge/health", auth=False)
    _validate(doc, "Health", hidden)
    _, summary = await br.get("/api/mt5/accounts/summary")
    _validate(doc, "SummaryResponse", summary)
    for path in ("/api/mt5/account/x/info", "/api/mt5/account/1/info", "/nope"):
        _, err = await br.get(path)
        _validate(doc, "Error", err)
    with pytest.raises(AssertionError):  # the validator does reject a wrong shape
        _validate(doc, "Error", {"error": "flat string"})


@given(st.text(max_size=30))
def test_parse_login_accepts_only_positive_ascii_integers(text: str) -> None:
    try:
        login = parse_login(text)
    except BadAccountId as e:
        assert e.status == 400
        assert not (text.isascii() and text.isdigit() and 0 < int(text) < 2**63)
    else:
        assert text.isascii() and text.isdigit() and login == int(text) > 0


def test_openapi_schemas_are_generated_from_the_response_models() -> None:
    from bridge.schema import RESPONSE_MODELS

    schemas = build_document()["components"]["schemas"]
    assert {m.__name__ for m in RESPONSE_MODELS} <= set(schemas)
    assert schemas["Health"]["properties"]["status"]["enum"] == ["healthy", "degraded", "unhealthy"]
    assert set(schemas["LiveEntry"]) >= {"oneOf"}  # an entry has data or failed, never both
    assert schemas["TradesResponse"]["required"] == ["account_id", "from", "to", "deals"]
    assert schemas["PositionsResponse"]["required"] == ["account_id", "timestamp", "positions"]
    assert sorted(schemas["Position"]["required"]) == sorted(POSITION_FIELDS)
    assert sorted(schemas["Deal"]["required"]) == sorted(DEAL_FIELDS)
    for name in ("Position", "Deal"):
        props = schemas[name]["properties"]
        assert props["time"]["format"] == "date-time" and "UTC" in props["time"]["description"]
        assert "MT5" in props["type"]["description"] and "MT5" in props["reason"]["description"]
