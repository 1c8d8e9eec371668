"""The positions batch (feature `positions_batch`): one request, every account's positions exactly as the
per-account endpoint serves them, failures reported per account."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from bridge.openapi import build_document

A, B, EMPTY = 886557, 886066, 886528


def _validate(body: object, name: str) -> None:
    doc = build_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(body))
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].path)}"


async def test_batch_equals_the_per_account_answers(make_bridge, busy_clock) -> None:
    br = await make_bridge(static=True, clock=busy_clock(A, static=True), utc_offset_hours=2)
    status, health = await br.get("/api/mt5/bridge/health")
    assert status == 200 and "positions_batch" in health["features"]
    status, body = await br.get("/api/mt5/accounts/positions")
    assert status == 200
    _validate(body, "PositionsBatchResponse")
    assert [e["account_id"] for e in body["accounts"]] == br.pool.accounts
    by_login = {e["account_id"]: e for e in body["accounts"]}
    assert by_login[A]["positions"] and by_login[EMPTY]["positions"] == []
    for login, entry in by_login.items():
        status, single = await br.get(f"/api/mt5/account/{login}/positions")
        assert status == 200
        assert single["positions"] == entry["positions"]  # static clock: the same answer


async def test_batch_reports_failures_per_account(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], static=True, faults={B: "login_failed"})
    status, body = await br.get(f"/api/mt5/accounts/positions?accounts={B},{A},{B},123")
    assert status == 200
    _validate(body, "PositionsBatchResponse")
    entries = body["accounts"]
    assert [e["account_id"] for e in entries] == [B, A, 123]
    status, single = await br.get(f"/api/mt5/account/{B}/positions")
    assert (entries[0]["status"], entries[0]["error"]) == (status, single["error"])
    assert entries[0]["error"]["code"] == "login_failed"
    assert "positions" in entries[1]
    assert entries[2]["status"] == 404 and entries[2]["error"]["code"] == "unknown_account"
    for bad in ("", ",", "x", "0"):
        status, body = await br.get(f"/api/mt5/accounts/positions?accounts={bad}")
        assert status == 400, bad
    status, _ = await br.get("/api/mt5/accounts/positions", auth=False)
    assert status == 401
