"""One account at a time per terminal, terminals in parallel, and a hung terminal that blocks nobody else."""

from __future__ import annotations

import asyncio
import time

from bridge.simulated import demo_accounts, simulated_pool

A, B, C, D = 886557, 886066, 886602, 885822


def _warm(br, logins: list[int]) -> None:
    """Build each account's simulated history up front (CPU work under the GIL), so the timings below
    measure what they are about: logins waiting on a terminal."""
    for login in logins:
        assert br.sim(login).simulated_trades(login) is not None


async def test_200_concurrent_requests_on_one_terminal_never_mix_accounts(make_bridge) -> None:
    logins = [A, B, C, D]
    br = await make_bridge(accounts=logins, terminals=1, static=True, latency=0.0002)
    term = br.sim(A)
    assert len(br.pool.handles) == 1
    expected = {x.login: x.balance for x in demo_accounts() if x.login in logins}
    kinds = ("info", "balance", "positions", "info")

    async def one(i: int) -> tuple[int, str, int, dict]:
        login, kind = logins[i % 4], kinds[(i // 4) % 4]
        status, body = await br.get(f"/api/mt5/account/{login}/{kind}")
        return login, kind, status, body

    results = await asyncio.gather(*(one(i) for i in range(200)))
    for login, kind, status, body in results:
        assert status == 200, body
        assert body["account_id"] == login
        if kind == "info":
            assert body["live_data"]["login"] == login
            assert body["live_data"]["balance"] == expected[login]
        elif kind == "balance":
            assert body["balance"] == expected[login]
        else:  # simulated tickets carry the last two digits of the owner's login in digits 3-4
            assert all((p["ticket"] // 100) % 100 == login % 100 for p in body["positions"])
    assert term.login_calls > len(logins), "the requests should have made the terminal switch accounts"


async def test_skips_login_when_terminal_is_already_on_the_account(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], terminals=1, static=True)
    for _ in range(5):
        assert (await br.get(f"/api/mt5/account/{A}/balance"))[0] == 200
    assert br.sim(A).login_calls == 1
    assert (await br.get(f"/api/mt5/account/{B}/balance"))[0] == 200
    assert (await br.get(f"/api/mt5/account/{A}/balance"))[0] == 200
    assert br.sim(A).login_calls == 3


async def test_terminals_serve_in_parallel_with_a_login_cost(make_bridge) -> None:
    """Each first request for an account costs a login. Measured, not assumed: the same requests one by
    one, concurrently on one terminal, and concurrently on a pool of terminals."""
    cost = 0.15
    logins = [x.login for x in demo_accounts()]

    serial = await make_bridge(login_cost=cost, static=True)
    _warm(serial, logins)
    t0 = time.perf_counter()
    for login in logins:
        status, body = await serial.get(f"/api/mt5/account/{login}/info")
        assert status == 200 and body["live_data"]["login"] == login
    serial_sum = time.perf_counter() - t0

    one_terminal = await make_bridge(login_cost=cost, static=True, terminals=1)
    _warm(one_terminal, logins)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_terminal.get(f"/api/mt5/account/{x}/info") for x in logins))
    one_terminal_wall = time.perf_counter() - t0
    assert all(s == 200 and b["live_data"]["login"] == x for (s, b), x in zip(results, logins, strict=True))

    parallel = await make_bridge(login_cost=cost, static=True)
    _warm(parallel, logins)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(parallel.get(f"/api/mt5/account/{x}/info") for x in logins))
    parallel_wall = time.perf_counter() - t0
    assert all(s == 200 and b["live_data"]["login"] == x for (s, b), x in zip(results, logins, strict=True))

    assert serial_sum >= len(logins) * cost
    assert one_terminal_wall >= len(logins) * cost, "one terminal must serialise its logins"
    assert parallel_wall < 0.5 * serial_sum, (parallel_wall, serial_sum)


async def test_batch_reads_terminals_in_parallel(make_bridge) -> None:
    cost = 0.2
    logins = [A, B, C, D]
    one = await make_bridge(accounts=logins, login_cost=cost, static=True, terminals=1)
    _warm(one, logins)
    t0 = time.perf_counter()
    status, body = await one.get("/api/mt5/accounts/live")
    one_wall = time.perf_counter() - t0
    assert status == 200 and [e["live_data"]["login"] for e in body["accounts"]] == logins

    many = await make_bridge(accounts=logins, login_cost=cost, static=True)
    _warm(many, logins)
    t0 = time.perf_counter()
    status, body = await many.get("/api/mt5/accounts/live")
    many_wall = time.perf_counter() - t0
    assert status == 200 and [e["live_data"]["login"] for e in body["accounts"]] == logins

    assert one_wall >= len(logins) * cost
    assert many_wall < 0.5 * one_wall, (many_wall, one_wall)


async def test_hung_terminal_blocks_only_itself(make_bridge, wait_until) -> None:
    accounts = [
        {"login": A, "password": "a", "server": "S", "terminal": "t1", "balance": 1000},
        {"login": B, "password": "b", "server": "S", "terminal": "t1", "balance": 2000},
        {"login": C, "password": "c", "server": "S", "terminal": "t2", "balance": 3000},
    ]
    br = await make_bridge(accounts=accounts, static=True, call_timeout=1.0)
    hung = br.sim(A)
    assert (await br.get(f"/api/mt5/account/{A}/info"))[0] == 200

    br.pool.set_fault(A, "hang")
    stuck = asyncio.create_task(br.get(f"/api/mt5/account/{A}/info"))
    await wait_until(lambda: hung.hung_calls == 1, "the call on t1 to hang")

    # While t1's lock is held by the hung call: health answers from cache, t2 serves normally.
    status, health = await br.get("/api/mt5/bridge/health")
    assert status == 200 and health["status"] == "healthy"
    status, other = await br.get(f"/api/mt5/account/{C}/info")
    assert status == 200 and other["live_data"]["login"] == C
    assert not stuck.done(), "health and t2 must not wait for the hung terminal"

    status, body = await stuck
    assert status == 504
    assert (
        body["error"]["code"] == "terminal_timeout"
        and "did not answer within 1 s" in body["error"]["message"]
    )

    status, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "degraded" and health["mt5"]["available"] is True
    assert health["terminals"]["total"] == 2 and health["terminals"]["healthy"] == 1
    t1 = next(i for i in health["terminals"]["items"] if i["name"] == "t1")
    assert t1["healthy"] is False and t1["last_error"].startswith("terminal_timeout")

    # The other account on the stuck terminal fails fast instead of queueing behind the hung call.
    t0 = time.perf_counter()
    status, body = await br.get(f"/api/mt5/account/{B}/info")
    assert status == 504 and "still blocked" in body["error"]["message"]
    assert time.perf_counter() - t0 < 0.9

    status, batch = await br.get("/api/mt5/accounts/live")
    assert status == 200
    by_id = {e["account_id"]: e for e in batch["accounts"]}
    assert by_id[A]["status"] == 504 and by_id[B]["status"] == 504
    assert by_id[C]["live_data"]["login"] == C

    # Clearing the fault lets the stuck call finish; the terminal is healthy again after a success.
    br.pool.set_fault(A, None)
    await wait_until(lambda: hung.hung_calls == 0, "the hung call to be released")
    await wait_until(lambda: br.pool.handle(A).stuck.done(), "the worker to finish the released call")
    status, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "degraded", "unhealthy until a later call succeeds"
    status, body = await br.get(f"/api/mt5/account/{B}/info")
    assert status == 200 and body["live_data"]["login"] == B
    status, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "healthy" and health["terminals"]["healthy"] == 2


async def test_close_releases_a_hung_call(make_bridge) -> None:
    pool = simulated_pool([A, B], faults={A: "hang"}, static=True)
    br = await make_bridge(pool, call_timeout=0.3)
    status, body = await br.get(f"/api/mt5/account/{A}/info")
    assert status == 504 and br.sim(A).hung_calls == 1
    pool.close()
    assert pool.join(2.0), "close() must release the hung simulated call so its thread ends"
    status, body = await br.get(f"/api/mt5/account/{B}/info")
    assert status == 502 and body["error"]["code"] == "terminal_unavailable"


async def test_all_terminals_unhealthy_reports_unhealthy(make_bridge) -> None:
    br = await make_bridge(accounts=[A, B], faults={A: "disconnected", B: "disconnected"}, static=True)
    for login in (A, B):
        assert (await br.get(f"/api/mt5/account/{login}/info"))[0] == 502
    _, health = await br.get("/api/mt5/bridge/health")
    assert health["status"] == "unhealthy" and health["mt5"]["available"] is False
    _, hidden = await br.get("/api/mt5/bridge/health", auth=False)
    assert hidden["status"] == "unhealthy" and "terminals" not in hidden
