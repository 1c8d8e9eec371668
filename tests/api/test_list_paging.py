"""`GET /api/v1/accounts` over HTTP: paging with an opaque cursor, filters, ETag/If-None-Match (304), gzip;
the whole-fleet answers stay right as time passes without a fleet change (the service clock)."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from agent.api import fleetview
from agent.api.serialize import ACCOUNT_FIELDS
from agent.sync.fleet import AccountState
from tests.api.conftest import ACCOUNTS, ADMIN, CLIENT_A, EXPECTED_STATE, READ, Api, make_jwt

LIST = "/api/v1/accounts"
ORDER = sorted(ACCOUNTS)


def _at(offset: timedelta) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + offset


async def test_without_the_new_parameters_the_answer_keeps_its_shape(api: Api):
    resp, body = await api.json("GET", LIST, READ)
    assert list(body) == ["accounts", "count", "thresholds", "generated_at"]
    assert [a["account"] for a in body["accounts"]] == ORDER and body["count"] == len(ORDER)
    assert all(list(a) == list(ACCOUNT_FIELDS) for a in body["accounts"])
    assert resp.headers["ETag"].startswith('W/"') and resp.headers["Cache-Control"] == "no-cache"


async def test_pages_follow_the_cursor_to_the_end(api: Api):
    seen: list[int] = []
    path = f"{LIST}?limit=2"
    pages = 0
    while True:
        _, body = await api.json("GET", path, READ)
        pages += 1
        seen += [a["account"] for a in body["accounts"]]
        assert body["count"] == len(body["accounts"]) <= 2
        if "next_cursor" not in body:
            break
        assert body["next_cursor"] == str(seen[-1])
        path = f"{LIST}?limit=2&cursor={body['next_cursor']}"
    assert seen == ORDER and pages == 3


async def test_the_cursor_is_stable_across_fleet_versions(api: Api):
    _, first = await api.json("GET", f"{LIST}?limit=2", READ)
    fleet = api.agent.fleet
    # a new version: an account appears before the cursor and one after it changes
    snap = fleet.snapshot()
    changed = [
        dataclasses.replace(s, name="renamed") if s.account == 100004 else s for s in snap.accounts.values()
    ]
    fleet.replace([AccountState(account=1, name="new"), *changed])
    assert fleet.snapshot().version != snap.version
    _, second = await api.json("GET", f"{LIST}?limit=2&cursor={first['next_cursor']}", READ)
    assert [a["account"] for a in second["accounts"]] == [100003, 100004]
    assert second["accounts"][1]["name"] == "renamed"


async def test_filters_by_state_and_source_and_the_scope_of_a_jwt(api: Api):
    _, critical = await api.json("GET", f"{LIST}?state=critical", READ)
    assert [a["account"] for a in critical["accounts"]] == [
        a for a in ORDER if EXPECTED_STATE[a] == "critical"
    ]
    _, live = await api.json("GET", f"{LIST}?source=VPS_LIVE_MT5", READ)
    assert [a["account"] for a in live["accounts"]] == [a for a in ORDER if ACCOUNTS[a][1] is not None]
    _, stored = await api.json("GET", f"{LIST}?source=VPS_STORED&limit=5", READ)
    assert stored["accounts"] == [] and "next_cursor" not in stored
    _, mine = await api.json("GET", f"{LIST}?state=critical&limit=1", make_jwt(CLIENT_A))
    assert [a["account"] for a in mine["accounts"]] == [100002] and mine["next_cursor"] == "100002"
    _, rest = await api.json("GET", f"{LIST}?state=critical&limit=1&cursor=100002", make_jwt(CLIENT_A))
    assert [a["account"] for a in rest["accounts"]] == [100003] and "next_cursor" not in rest


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=10001",
        "limit=x",
        "cursor=abc",
        "cursor=-1",
        "source=MT5",
        "state=stale",
        "limit=1&limit=2",
    ],
)
async def test_bad_parameters_are_400(api: Api, query: str):
    _, body = await api.json("GET", f"{LIST}?{query}", READ, status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_if_none_match_is_304_until_a_state_or_the_fleet_changes(api: Api):
    resp, _ = await api.json("GET", LIST, READ)
    tag = resp.headers["ETag"]

    async def status(etag: str, path: str = LIST) -> tuple[int, str]:
        r = await api.call("GET", path, READ, headers={"If-None-Match": etag})
        body = await r.read()
        if r.status == 304:
            assert body == b""
        return r.status, r.headers["ETag"]

    assert await status(tag) == (304, tag)
    assert (await status(tag, f"{LIST}?limit=2"))[0] == 200  # another query: another representation
    # ages move, no state does (2 minutes on, every account is still in its state)
    api.agent.service.clock = _at(timedelta(minutes=2))
    assert await status(tag) == (304, tag)
    # 10 minutes on: the fresh account is acceptable, the acceptable one degraded
    api.agent.service.clock = _at(timedelta(minutes=10))
    code, moved = await status(tag)
    assert code == 200 and moved != tag
    assert await status(moved) == (304, moved)
    # the fleet changes
    api.agent.fleet.set_client(100001, "someone-else")
    code, changed = await status(moved)
    assert code == 200 and changed != moved


async def test_large_answers_are_gzipped_when_asked(api: Api):
    fixed = datetime.now(UTC)
    api.agent.service.clock = lambda: fixed  # the same ages in both answers
    gz = await api.call("GET", LIST, READ, headers={"Accept-Encoding": "gzip"})
    plain = await api.call("GET", LIST, READ, headers={"Accept-Encoding": "identity"})
    assert gz.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in gz.headers["Vary"]
    assert "Content-Encoding" not in plain.headers
    assert (await gz.json())["accounts"] == (await plain.json())["accounts"]
    refused = await api.call("GET", LIST, READ, headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers
    # what went over the wire really is gzip
    raw = await api.client.session.get(
        api.client.make_url(LIST),
        headers={"Authorization": f"Bearer {READ}", "Accept-Encoding": "gzip"},
        auto_decompress=False,
    )
    assert gzip.decompress(await raw.read()).startswith(b'{"accounts":[')
    small = await api.call("GET", f"{LIST}?limit=1", READ, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers  # under GZIP_ABOVE bytes: not worth it


async def test_time_passing_without_a_fleet_change_moves_every_whole_fleet_answer(api: Api):
    version = api.agent.fleet.snapshot().version
    api.agent.service.clock = _at(timedelta(minutes=16))  # every synced account is now critical
    _, listed = await api.json("GET", LIST, READ)
    assert {a["freshness"]["state"] for a in listed["accounts"]} == {"critical"}
    ages = {a["account"]: a["freshness"]["age_seconds"] for a in listed["accounts"]}
    assert ages[100001] == pytest.approx((16 + 0.5) * 60, abs=30) and ages[100003] is None
    _, status = await api.json("GET", "/api/v1/status", READ)
    assert status["accounts"]["by_state"] == {"fresh": 0, "acceptable": 0, "degraded": 0, "critical": 5}
    _, health = await api.json("GET", "/api/admin/mt5-health", ADMIN)
    assert health["data_freshness"]["staleness"] == "critical"
    _, portfolio = await api.json("GET", f"/api/client/{CLIENT_A}/portfolio", ADMIN)
    assert {a["freshness"]["state"] for a in portfolio["accounts"]} == {"critical"}
    _, single = await api.json("GET", "/api/v1/accounts/100001", READ)
    assert single["freshness"]["state"] == "critical"
    assert api.agent.fleet.snapshot().version == version


async def test_one_changed_account_is_the_only_one_serialised_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
):
    made: list[int] = []
    real = fleetview.make_piece

    def counting(state: AccountState) -> fleetview.Piece:
        made.append(state.account)
        return real(state)

    view = api.client.app[fleetview_key()]
    monkeypatch.setattr(view, "_make", counting)
    await api.json("GET", LIST, READ)
    await api.json("GET", "/api/v1/status", READ)
    first = sorted(made)
    made.clear()
    for path, token in [(LIST, READ), ("/api/v1/status", READ), ("/api/admin/mt5-health", ADMIN)]:
        await api.json("GET", path, token)
    assert made == []  # same version: nothing serialised
    api.agent.fleet.set_client(100004, "someone-else")
    _, body = await api.json("GET", LIST, READ)
    assert made == [100004] and len(body["accounts"]) == len(ACCOUNTS)
    assert first == ORDER  # each account serialised once by the first whole-fleet reads


def fleetview_key():  # the app key, imported late: agent.api.keys is the API's, not the tests'
    from agent.api.keys import FLEET_VIEW

    return FLEET_VIEW
