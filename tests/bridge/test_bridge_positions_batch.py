"""The positions batch (feature `positions_batch`): one request, every account's positions exactly as the
per-account endpoint serves them, failures reported per account."""

from __future__ import annotations

import time

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


async def test_a_hang_mid_batch_fails_in_time_and_blocks_only_its_terminal(make_bridge) -> None:
    """One worker job per terminal, yet call_timeout per account: the hung account answers 504 after it,
    the accounts after it on that terminal 504 as blocked, another terminal's accounts 200."""
    C, D = 886602, 885822
    accounts = [
        {"login": x, "password": "p", "server": "S", "terminal": t}
        for x, t in ((A, "t1"), (B, "t1"), (C, "t1"), (D, "t2"))
    ]
    br = await make_bridge(accounts=accounts, static=True, faults={B: "hang"}, call_timeout=0.4)
    t0 = time.perf_counter()
    status, body = await br.get("/api/mt5/accounts/positions")
    assert status == 200 and time.perf_counter() - t0 < 2.0
    _validate(body, "PositionsBatchResponse")
    by_id = {e["account_id"]: e for e in body["accounts"]}
    assert [e["account_id"] for e in body["accounts"]] == [A, B, C, D]
    assert "positions" in by_id[A] and "positions" in by_id[D]
    assert by_id[B]["status"] == 504 and "did not answer within 0.4 s" in by_id[B]["error"]["message"]
    assert by_id[C]["status"] == 504 and "still blocked" in by_id[C]["error"]["message"]
