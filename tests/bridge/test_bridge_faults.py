"""Each simulated fault gives its documented status and JSON error; the other accounts keep being served."""

from __future__ import annotations

import pytest

A, B, C = 886557, 886066, 886602

# fault -> (status, code) on /info; no_live_data is the seed's partial-data case (200, live_data null)
FAULT_STATUS = {
    "login_failed": (503, "login_failed"),
    "disconnected": (502, "terminal_unavailable"),
    "wrong_account": (502, "account_mismatch"),
    "hang": (504, "terminal_timeout"),
}


@pytest.mark.parametrize("when", ["construction", "runtime"])
@pytest.mark.parametrize("fault", sorted(FAULT_STATUS))
async def test_fault_status_and_others_keep_serving(make_bridge, fault, when) -> None:
    # A and B share terminal sim-1, C is alone on sim-2.
    kw = {"faults": {A: fault}} if when == "construction" else {}
    br = await make_bridge(accounts=[A, C, B], terminals=2, static=True, call_timeout=0.3, **kw)
    assert br.pool.handle(A) is br.pool.handle(B) is not br.pool.handle(C)
    if when == "runtime":
        assert (await br.get(f"/api/mt5/account/{A}/info"))[0] == 200  # now logged in to A
        br.pool.set_fault(A, fault)

    status, code = FAULT_STATUS[fault]
    for endpoint in ("info", "balance", "positions", "trades"):
        got, body = await br.get(f"/api/mt5/account/{A}/{endpoint}")
        assert got == status, (endpoint, body)
        assert set(body) == {"error"} and body["error"]["code"] == code
        assert str(A) in body["error"]["message"] or "sim-1" in body["error"]["message"]

    got, body = await br.get(f"/api/mt5/account/{C}/info")  # another terminal
    assert got == 200 and body["live_data"]["login"] == C
    if fault != "hang":  # the same terminal still serves its other account
        got, body = await br.get(f"/api/mt5/account/{B}/info")
        assert got == 200 and body["live_data"]["login"] == B

    got, batch = await br.get("/api/mt5/accounts/live")
    assert got == 200
    by_id = {e["account_id"]: e for e in batch["accounts"]}
    assert by_id[A]["status"] == status and by_id[A]["error"]["code"] == code
    assert by_id[C]["live_data"]["login"] == C


async def test_wrong_account_never_serves_the_other_accounts_data(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], terminals=1, static=True, faults={A: "wrong_account"})
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 502
    assert body["error"]["message"] == f"asked terminal sim-1 for account {A} but it answered for account {B}"
    _, summary = await br.get("/api/mt5/accounts/summary")
    assert summary["accounts"][0]["balance"] is None, "mismatched data must not become 'last known'"


async def test_wrong_account_on_a_one_account_terminal(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True, faults={A: "wrong_account"})
    status, body = await br.get(f"/api/mt5/account/{A}/balance")
    assert status == 502 and body["error"]["code"] == "account_mismatch"


async def test_no_live_data_serves_stored_data(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], terminals=1, static=True)
    _, first = await br.get(f"/api/mt5/account/{A}/info")
    br.pool.set_fault(A, "no_live_data")

    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 200
    assert body["account_id"] == A and body["live_data"] is None
    stored = body["stored_data"]
    for f in ("balance", "equity", "profit", "margin", "margin_free", "currency", "timestamp"):
        assert stored[f] == first["live_data"][f]
    assert body["live_error"]["code"] == "terminal_unavailable"

    status, batch = await br.get("/api/mt5/accounts/live")
    entry = next(e for e in batch["accounts"] if e["account_id"] == A)
    assert entry["live_data"] is None and entry["stored_data"]["balance"] == first["live_data"]["balance"]
    assert next(e for e in batch["accounts"] if e["account_id"] == B)["live_data"]["login"] == B

    status, body = await br.get(f"/api/mt5/account/{A}/balance")  # no stored fallback for a live value
    assert status == 502 and body["error"]["code"] == "terminal_unavailable"

    _, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "healthy", "the terminal itself is fine"


async def test_no_live_data_before_any_read_has_null_stored_data(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True, faults={A: "no_live_data"})
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 200 and body["live_data"] is None and body["stored_data"] is None


@pytest.mark.parametrize("fault", ["login_failed", "disconnected", "wrong_account", "no_live_data"])
async def test_clearing_a_fault_recovers(make_bridge, fault) -> None:
    br = await make_bridge(accounts=[A], static=True, faults={A: fault})
    status, _ = await br.get(f"/api/mt5/account/{A}/balance")
    assert status != 200
    br.pool.set_fault(A, None)
    status, body = await br.get(f"/api/mt5/account/{A}/balance")
    assert status == 200 and body["account_id"] == A
    _, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "healthy"


async def test_disconnected_marks_the_terminal_unhealthy(make_bridge) -> None:
    br = await make_bridge(accounts=[A, C], static=True, faults={A: "disconnected"})
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 502 and "could not reach the trade server" in body["error"]["message"]
    _, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "degraded"
    # Runtime disconnect while already logged in: caught by terminal_info().connected, not served stale.
    assert (await br.get(f"/api/mt5/account/{C}/info"))[0] == 200
    br.pool.set_fault(C, "disconnected")
    status, body = await br.get(f"/api/mt5/account/{C}/info")
    assert status == 502 and body["error"]["code"] == "terminal_unavailable"
    _, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "unhealthy"


async def test_login_failed_leaves_terminal_healthy(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True, faults={A: "login_failed"})
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 503
    assert body["error"]["message"] == (
        f"login to account {A} on MEXAtlantic-Real failed: Terminal: Authorization failed (-6)"
    )
    _, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "healthy", "a rejected login is the account's problem, not the terminal's"


async def test_set_fault_validates(make_bridge) -> None:
    br = await make_bridge(accounts=[A], static=True)
    with pytest.raises(ValueError, match="unknown fault"):
        br.pool.set_fault(A, "explode")
    with pytest.raises(Exception, match="not served"):
        br.pool.set_fault(999, "hang")


async def test_bad_trades_serves_malformed_positions_and_deals_for_that_account_only(make_bridge) -> None:
    br = await make_bridge(accounts=[A, C], static=True, faults={A: "bad_trades"})
    status, body = await br.get(f"/api/mt5/account/{A}/balance")
    assert status == 200, "the account itself reads fine"
    status, body = await br.get(f"/api/mt5/account/{A}/positions")
    assert status == 200
    bad = [p for p in body["positions"] if p["identifier"] == 0]
    assert len(bad) == 1 and bad[0]["volume"] is None and bad[0]["type"] == 7
    status, body = await br.get(f"/api/mt5/account/{A}/trades?from=2000-01-01")
    assert status == 200
    bad = [d for d in body["deals"] if d["entry"] == 9]
    assert len(bad) == 1 and bad[0]["profit"] is None and bad[0]["volume"] == -1.0
    for path in ("positions", "trades?from=2000-01-01"):
        status, body = await br.get(f"/api/mt5/account/{C}/{path}")
        rows = body.get("positions", body.get("deals"))
        assert status == 200 and all(r.get("entry") != 9 and r.get("identifier") != 0 for r in rows)
    br.pool.set_fault(A, None)
    status, body = await br.get(f"/api/mt5/account/{A}/positions")
    assert status == 200 and all(p["identifier"] != 0 for p in body["positions"])
