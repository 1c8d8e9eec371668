"""Broker days without a query parameter (issue 14), end to end: our simulated bridge with its terminals
at UTC+2 over real HTTP, the agent as `build_agent` makes it (its sync cycle reads the bridge's health
document, its positions poller stores the desk's deals while the desk's clock crosses the broker's
midnight, 22:00 UTC), and `GET /api/v1/accounts/{a}/analytics` with no `broker_utc_offset_minutes`:
`daily` is by broker day (the terminal's UTC+2), `daily_utc` by UTC day, the answer says which offset it
used and where it came from; the parameter still overrides; an account no source knows is "unknown"."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestServer

from agent.api.analytics import learned_offset
from agent.app import build_poller
from agent.sources.bridge.parse_offsets import terminal_offsets
from bridge.api import create_app as create_bridge_app
from bridge.simulated import demo_accounts, simulated_pool
from tests.api.conftest import ALL_TOKENS, READ, MakeApi

TOKEN = "bridge-token-broker-days"
STEP_S = 20.0
ROUNDS = 360  # two simulated hours, 21:00 to 23:00 UTC: the broker's 23:00 to 01:00


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def desk() -> AsyncIterator[tuple[str, list[float], datetime]]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(hours=3)  # yesterday 21:00 UTC: the whole walk is in the past
    clock = [start.timestamp()]
    pool = simulated_pool(seed=3, utc_offset_hours=2, clock=lambda: clock[0])
    server = TestServer(create_bridge_app(pool, token=TOKEN, call_timeout=5.0), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), clock, start
    await server.close()
    pool.close()


async def test_daily_figures_are_broker_days_without_a_parameter(
    desk: tuple[str, list[float], datetime], make_api: MakeApi
) -> None:
    url, clock, start = desk
    api = await make_api(seed=False, bridge_url=url, bridge_token=TOKEN, **ALL_TOKENS)
    agent = api.agent
    run = await agent.service.run_cycle()  # lists the desk's accounts, reads its health document
    assert run.synced_live == len(demo_accounts()), run
    poller = build_poller(agent)  # as `mt5-agent run` starts it, ticked by the test
    assert poller is not None
    for _ in range(ROUNDS):
        result = await poller.tick()
        assert result is not None and not result.failed, result
        clock[0] += STEP_S
    rng = f"from={_iso(start - timedelta(hours=1))}&to={_iso(start + timedelta(hours=3))}"
    # the account with the most trades closed on each side of the broker's midnight (22:00 UTC)
    midnight = start + timedelta(hours=1)
    sides: Counter[tuple[int, bool]] = Counter()
    for e in demo_accounts():
        for d in await api.store.deals.get_deals(e.login):
            if d.entry != 0 and start <= d.time < start + timedelta(hours=2):  # closing deals
                sides[(e.login, d.time >= midnight)] += 1
    login = max((e.login for e in demo_accounts()), key=lambda a: min(sides[(a, False)], sides[(a, True)]))
    assert min(sides[(login, False)], sides[(login, True)]) > 0, sides

    path = f"/api/v1/accounts/{login}/analytics"
    _, body = await api.json("GET", f"{path}?{rng}", READ)
    assert body["broker_utc_offset_minutes"] == 120 and body["broker_utc_offset_source"] == "terminal"
    broker_day = (midnight + timedelta(hours=2)).date()  # the broker's day after its midnight
    assert [d["date"] for d in body["daily"]] == [
        (broker_day - timedelta(days=1)).isoformat(),
        broker_day.isoformat(),
    ]
    assert body["daily"][1]["date_utc"] == _iso(midnight).replace("Z", ".000Z")  # 22:00 UTC
    assert [d["date"] for d in body["daily_utc"]] == [start.date().isoformat()]  # all of it one UTC day
    assert sum(d["trades"] for d in body["daily"]) == body["trades"] == body["daily_utc"][0]["trades"]

    # the parameter still overrides; 0 is a UTC answer
    _, utc = await api.json("GET", f"{path}?{rng}&broker_utc_offset_minutes=0", READ)
    assert utc["broker_utc_offset_source"] == "query" and utc["broker_utc_offset_minutes"] == 0
    assert [d["date"] for d in utc["daily"]] == [start.date().isoformat()]


def test_an_offset_is_only_what_a_source_reported() -> None:
    class Bridge:
        name = "vps-a"
        broker_utc_offsets = {1: 120, 2: -300}

    class MetaApi:
        name = "metaapi"

    assert learned_offset([MetaApi(), Bridge()], 1, "vps-a") == timedelta(hours=2)
    assert learned_offset([MetaApi(), Bridge()], 2, None) == timedelta(hours=-5)
    assert learned_offset([MetaApi()], 1, "metaapi") is None  # MetaAPI's sources do not learn it
    assert learned_offset([Bridge()], 3, "vps-a") is None
    # the health document's terminals, validated: a bad offset or a clash between terminals is unknown
    items = [
        {"accounts": [1, 2], "utc_offset_hours": 2},
        {"accounts": [2, 3], "utc_offset_hours": 3},  # 2 listed twice, different offsets
        {"accounts": [4], "utc_offset_hours": 15},  # beyond +14 h
        {"accounts": [5, "6", True, -7], "utc_offset_hours": 5.5},
        {"accounts": [8], "utc_offset_hours": "2"},
        "junk",
    ]
    assert terminal_offsets({"items": items}) == {1: 120, 3: 180, 5: 330}
    assert terminal_offsets(None) is None and terminal_offsets({"items": "x"}) is None
