"""The analytics' trade events (issue 14, at real history sizes): the detector's final score where a
TRADE_CLOSED carries one (a trade whose TRADE_OPENED came from its deal alone, `sl: null`, is judged as
the detector saw it), recomputed where none or an invalid one; the events are tailed (only ids after the
last one taken are read) and the behaviour flags are computed again only when their facts changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import agent.api.analytics as analytics_api
from agent.analytics.score import RULES, balance_before
from agent.api.analytics import ScoreBody, cache_of
from agent.domain.trades import EventType, TradeEvent
from tests.analytics.test_stats_fixture import history
from tests.api.conftest import ALL_TOKENS, READ, Api, MakeApi

A1 = 100001
RANGE = "from=2026-03-01T00:00:00Z&to=2026-03-10T00:00:00Z"
PATH = f"/api/v1/accounts/{A1}/analytics"
OPENED_101 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def detector_score(points: dict[str, int], passed: dict[str, bool | None]) -> dict[str, Any]:
    rules = [
        {"rule": n, "points": points.get(n, m), "max_points": m, "passed": passed.get(n, True), "reason": "r"}
        for n, m, _ in RULES
    ]
    return {"score": 9, "rules": rules, "complete": True}


def event(identifier: int, type_: EventType, key: str, when: datetime, data: dict[str, Any]) -> TradeEvent:
    return TradeEvent(A1, identifier, type_, key, when, when, "EURUSD", data)


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    api = await make_api(**ALL_TOKENS)
    assert await api.agent.service.load_state()
    await api.store.deals.put_deals(history(A1).deals)
    closed_101 = OPENED_101 + timedelta(hours=1)
    final = {"score": detector_score({"risk_at_open": 1}, {}), "r_multiple": 1.5, "r_multiple_reason": None}
    bad = {"score": {"score": 10, "rules": [{"rule": "made_up", "points": 9, "max_points": 9}]}}
    events = [
        event(101, EventType.TRADE_OPENED, "o101", OPENED_101, {"sl": None, "tp": None}),  # its deal alone
        event(101, EventType.TRADE_CLOSED, "c101", closed_101, final),
        event(102, EventType.TRADE_CLOSED, "c102", closed_101 + timedelta(hours=2), bad),
    ]
    assert len(await api.store.events.append_events(events)) == 3
    return api


async def test_a_closed_trade_reports_the_detectors_final_score(api: Api) -> None:
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    scores = {s["identifier"]: s for s in body["scores"]}
    s101 = scores[101]
    assert set(s101) == {f.alias or n for n, f in ScoreBody.model_fields.items()}
    assert (s101["score"], s101["score_source"], s101["points"], s101["max_points"]) == (9, "detector", 9, 10)
    assert {r["rule"]: r["passed"] for r in s101["rules"]}["stop_loss_set"] is True  # the detector saw it
    assert s101["r_multiple"] == 1.5
    # the detector's money at risk (result / R = 93 / 1.5 = 62) over the balance before the open (10,000)
    assert s101["risk_percent"] == pytest.approx(0.62)
    entry = cache_of(api.client.app).entry(A1)
    assert entry.ledger is not None and balance_before(entry.ledger, OPENED_101) == 10000
    # an invalid payload (a rule the table does not name) is not used; no event at all: recomputed
    assert scores[102]["score_source"] == "analytics" and scores[103]["score_source"] == "analytics"
    rules_102 = {r["rule"]: r["passed"] for r in scores[102]["rules"]}
    assert rules_102["stop_loss_set"] is None  # its stop was never seen by the analytics


async def test_events_are_tailed_and_flags_recomputed_only_on_new_facts(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    events_store = api.store.events
    real = events_store.list_events

    async def spy(**kw: Any) -> list[TradeEvent]:
        reads.append(kw["after"])
        return await real(**kw)

    monkeypatch.setattr(events_store, "list_events", spy)
    computed: list[int] = []
    real_flags = analytics_api.flags

    def counting(*args: Any, **kw: Any) -> Any:
        computed.append(1)
        return real_flags(*args, **kw)

    monkeypatch.setattr(analytics_api, "flags", counting)
    _, first = await api.json("GET", f"{PATH}?{RANGE}", READ)
    entry = cache_of(api.client.app).entry(A1)
    assert reads == [0] and entry.events_read == 3 and len(computed) == 1
    last = entry.events_after
    _, again = await api.json("GET", f"{PATH}?{RANGE}", READ)
    assert reads == [0, last] and entry.events_read == 3 and len(computed) == 1  # nothing new: kept
    assert again["behaviour"] == first["behaviour"]
    # one more event: only it is read, the stop history grows, the flags are computed again
    moved = event(
        106, EventType.TRADE_UPDATED, "u106", datetime(2026, 3, 3, 15, tzinfo=UTC),
        {"change": "sl_tp", "sl": 1.3, "tp": 1.0},
    )  # fmt: skip
    opened = event(
        106, EventType.TRADE_OPENED, "o106", datetime(2026, 3, 3, 14, tzinfo=UTC), {"sl": 1.2, "tp": 1.0}
    )
    (m, o) = await api.store.events.append_events([moved, opened])  # stored out of time order
    _, body = await api.json("GET", f"{PATH}?{RANGE}", READ)
    assert reads[-1] == last and entry.events_read == 5 and entry.events_after == o.id and len(computed) == 2
    assert [s.sl for s in entry.stops[106]] == [1.2, 1.3]  # by time, as stop_histories orders them
    s106 = next(s for s in body["scores"] if s["identifier"] == 106)
    rules = {r["rule"]: (r["points"], r["passed"]) for r in s106["rules"]}
    assert rules["stop_loss_set"] == (2, True) and rules["stop_never_widened"] == (0, False)
    assert m.id is not None and m.id < o.id
    # an event that moves no stop (a volume change) is taken, the flags are kept
    volume = event(
        106, EventType.TRADE_UPDATED, "v106", datetime(2026, 3, 4, 9, tzinfo=UTC), {"change": "volume"}
    )
    await api.store.events.append_events([volume])
    await api.json("GET", f"{PATH}?{RANGE}", READ)
    assert entry.events_read == 6 and len(computed) == 2
