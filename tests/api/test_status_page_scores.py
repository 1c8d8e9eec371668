"""The status page's analytics panel and per-trade scores, in a real headless Chromium against a running
agent (its event hub and WS /api/v1/stream): the figures are the analytics API's; each trade shows its
score, and on a click every rule with points, max, passed and reason, and the R-multiple beside it; a
trade opened and then closed while the page is open appears live (TRADE_OPENED with its live score, then
TRADE_CLOSED with its final one) and the figures follow. The events are the detector's own (agent.events
Detector over hand-made positions and deals), stored as the poller would. Screenshots in tmp_path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.domain.accounts import AccountValues
from agent.domain.trades import (
    Deal,
    DealEntry,
    DealType,
    Position,
    PositionsSnapshot,
    PositionType,
    TradeEvent,
)
from agent.events import Detector
from tests.api.conftest import Api, MakeApi
from tests.api.test_status_page import A1, browser

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # inside the analytics' default range
VALUES = AccountValues(balance=10_000.0, equity=10_000.0, margin=220.0, margin_level=500.0)
SCORES_STATE = """(() => {
  const figures = Object.fromEntries([...document.querySelectorAll('#analytics-figures .fig')].map((d) =>
    [d.dataset.field, {value: d.dataset.value, text: d.querySelector('b').textContent}]));
  const trades = [...document.querySelectorAll('#scored tr.trade')].map((tr) => ({...tr.dataset,
    cells: [...tr.cells].map((td) => td.textContent)}));
  const rules = Object.fromEntries([...document.querySelectorAll('#scored tr.rules')].map((tr) => [
    tr.dataset.identifier, {hidden: tr.hidden,
      visible: tr.offsetParent !== null,
      rows: [...tr.querySelectorAll('tr[data-rule]')]
        .map((r) => [...r.cells].map((td) => td.textContent)),
      summary: tr.querySelector('.summary').textContent,
      outcome: tr.querySelector('.outcome').textContent}]));
  return {loaded: document.getElementById('analytics-figures').dataset.loaded || null,
    message: document.getElementById('analytics-message').textContent,
    live: document.getElementById('live-state').dataset.state,
    events: document.querySelectorAll('#events tr').length, figures, trades, rules};
})()"""


def when(condition: str) -> str:
    """The page's scores state (`s`) once `condition` holds of it."""
    return "(() => { const s = " + SCORES_STATE + "; return (" + condition + ") && s; })()"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def deal(
    ticket: int, pid: int, entry: DealEntry, buy: bool, volume: float, at: float, price: float, **kw: Any
) -> Deal:
    return Deal(
        account=A1, ticket=ticket, order=pid if entry is DealEntry.IN else ticket + 9000, time=t(at),
        type=DealType.BUY if buy else DealType.SELL, entry=entry, volume=volume, price=price,
        commission=0.0, swap=0.0, profit=kw.pop("profit", 0.0), fee=0.0, symbol="EURUSD", position_id=pid,
        reason=kw.pop("reason", 0),
    )  # fmt: skip


def position(
    pid: int, buy: bool, volume: float, price: float, sl: float, tp: float, at: float, now: float
) -> Position:
    profit = round((1 if buy else -1) * (now - price) * volume * 100_000, 2)  # 100,000 per 1.0 per lot
    return Position(
        account=A1, ticket=pid, identifier=pid, time=t(at), time_update=t(at),
        type=PositionType(0 if buy else 1), magic=0, reason=0, volume=volume, price_open=price, sl=sl, tp=tp,
        price_current=now, swap=0.0, profit=profit, symbol="EURUSD",
    )  # fmt: skip


class Desk:
    """The detector over the account's rounds; each round's deals then events stored, and the hub told."""

    def __init__(self, api: Api) -> None:
        self.api, self.detector = api, Detector()

    async def round(self, at: float, positions: list[Position], deals: list[Deal]) -> list[TradeEvent]:
        events = self.detector.observe(
            A1, snapshot=PositionsSnapshot(A1, t(at), tuple(positions)), deals=deals, detected_at=t(at + 0.2),
            values=VALUES,
        )  # fmt: skip
        if deals:
            await self.api.store.deals.put_deals(deals)
        stored = await self.api.store.events.append_events(events)
        await self.api.store.positions.replace_positions(A1, PositionsSnapshot(A1, t(at), tuple(positions)))
        if self.api.agent.hub is not None:
            self.api.agent.hub.notify(stored)
        return stored


async def test_analytics_panel_and_trade_scores_with_their_reasons_live(
    make_api: MakeApi, tmp_path: Path
) -> None:
    api = await make_api()
    assert await api.agent.service.load_state()
    desk = Desk(api)
    deposit = Deal(A1, 1, 0, t(0), DealType.BALANCE, DealEntry.IN, 0.0, 0.0, 0.0, 0.0, 10_000.0, 0.0, "", 0)
    await api.store.deals.put_deals([deposit])
    # 1001: buy 0.2 at 1.1, SL 1.095 (risk 100 = 1 %), TP 1.11 (reward:risk 2), closed at TP: +200, R 2
    p1 = position(1001, True, 0.2, 1.1, 1.095, 1.11, 60, 1.1005)
    await desk.round(61, [p1], [deal(11, 1001, DealEntry.IN, True, 0.2, 60, 1.1)])
    await desk.round(
        3601, [], [deal(12, 1001, DealEntry.OUT, False, 0.2, 3600, 1.11, profit=200.0, reason=5)]
    )
    # 1002: sell 0.5 without stop or target, closed at a loss: -150, no R-multiple
    p2 = position(1002, False, 0.5, 1.1, 0.0, 0.0, 3700, 1.1001)
    await desk.round(3701, [p2], [deal(21, 1002, DealEntry.IN, False, 0.5, 3700, 1.1)])
    await desk.round(4001, [], [deal(22, 1002, DealEntry.OUT, True, 0.5, 4000, 1.103, profit=-150.0)])

    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/#account={A1}")
        page = await b.wait_for(
            when("s.loaded === 'ok' && s.events === 4 && s.trades.length === 2"),
            "the analytics and the two scored trades",
        )
        assert page["message"] == ""
        _, body = await api.json("GET", f"/api/v1/accounts/{A1}/analytics")
        assert body["trades"] == 2 and body["profit"] == 50.0
        figures = page["figures"]
        assert figures["trades"] == {"value": "2", "text": "2"}
        assert figures["profit"]["text"] == "50.00" and figures["won_trades_percent"]["text"] == "50 %"
        assert figures["profit_factor"]["text"] == "1.33"  # 200 / 150
        for field, shown in figures.items():  # every figure shown is the API's
            if shown["value"]:
                assert float(shown["value"]) == body[field], field
            else:
                assert body[field] is None and shown["text"].startswith(("n/a", "\u221e")), (field, shown)
        assert figures["sharpe_ratio"]["text"] == "n/a (" + body["undefined"]["sharpe_ratio"] + ")"

        by_id = {r["identifier"]: r for r in page["trades"]}
        assert [r["identifier"] for r in page["trades"]] == ["1002", "1001"]  # newest close first
        assert by_id["1001"]["cells"] == [
            "1001",
            "EURUSD",
            "buy",
            "closed",
            "200.00",
            "10/10",
            "2.00",
            by_id["1001"]["cells"][7],
        ]
        assert by_id["1001"]["source"] == "event"  # the detector's final score (it knew the margin level)
        assert by_id["1002"]["cells"][3:7] == ["closed", "-150.00", "5/10", "n/a"]
        assert all(r["hidden"] for r in page["rules"].values())  # reasons on a click

        # a click shows every rule with its points, max, passed and reason, and the R-multiple beside
        await b.evaluate("document.querySelector('#scored tr.trade[data-identifier=\"1001\"]').click(); true")
        page = await b.wait_for(
            when("s.rules['1001'].visible"),
            "trade 1001's rules",
        )
        rules = page["rules"]["1001"]
        assert rules["rows"] == [
            ["stop_loss_set", "2", "2", "yes", "stop-loss 1.095 set 0 s after open"],
            ["risk_at_open", "2", "2", "yes", "risk 1.00 % of balance (<= 1 %)"],
            ["reward_risk", "2", "2", "yes", "planned reward:risk 2.00 (>= 2)"],
            ["stop_never_widened", "1", "1", "yes", "stop never moved away from price"],
            ["margin_level_after_open", "1", "1", "yes", "margin level 500 % (>= 300 %)"],
            ["no_revenge_entry", "1", "1", "yes", "no loss closed in the 30 min before it"],
            ["not_stopped_out", "1", "1", "yes", "not closed by a stop-out"],
        ]
        assert rules["summary"].startswith("Final score: 10/10 = 1 + 9 \u00d7 10/10 points")
        assert rules["outcome"].startswith("R-multiple 2.00 (")
        await b.evaluate("document.querySelector('#scored tr.trade[data-identifier=\"1002\"]').click(); true")
        page = await b.wait_for(
            when("s.rules['1002'].visible"),
            "trade 1002's rules",
        )
        assert page["rules"]["1002"]["rows"][0] == [
            "stop_loss_set",
            "0",
            "2",
            "no",
            "no stop-loss within 60 s of the open",
        ]
        assert page["rules"]["1002"]["outcome"] == "R-multiple n/a: no_initial_stop_loss."
        await b.screenshot(tmp_path / "scores-view.png")

        # live: 1003 opens (0.6 lot within 30 min of the loss on 1002: revenge; reward:risk 0.5)...
        await b.wait_for(f"{SCORES_STATE}.live === 'live'", "the live stream")

        def event_reads() -> list[str]:
            return [url for url, _ in b.responses if "/api/v1/events?" in url]

        reads_when_live = event_reads()
        p3 = position(1003, True, 0.6, 1.1, 1.098, 1.101, 4100, 1.1002)
        (opened,) = await desk.round(4101, [p3], [deal(31, 1003, DealEntry.IN, True, 0.6, 4100, 1.1)])
        assert opened.data["score"]["score"] == 6
        page = await b.wait_for(
            when("s.trades.some((r) => r.identifier === '1003')"),
            "the opened trade's live score",
        )
        row = next(r for r in page["trades"] if r["identifier"] == "1003")
        assert row["status"] == "open" and row["cells"][5] == "6/10" and row["cells"][6] == ""
        assert page["trades"][0]["identifier"] == "1003"  # open trades first
        await b.evaluate("document.querySelector('#scored tr.trade[data-identifier=\"1003\"]').click(); true")
        page = await b.wait_for(when("s.rules['1003'].visible"), "1003's rules")
        live_rules = {r[0]: r[1:] for r in page["rules"]["1003"]["rows"]}
        assert live_rules["no_revenge_entry"] == [
            "0",
            "1",
            "no",
            "larger entry (0.6 > 0.5 lots) soon after loss on 1002",
        ]
        assert live_rules["risk_at_open"] == ["1", "2", "yes", "risk 1.20 % of balance (<= 2 %, above 1 %)"]
        assert "not_stopped_out" not in live_rules  # judged at the close
        assert page["rules"]["1003"]["outcome"] == "R-multiple: at the close."
        # ...and closes at its stop: -120, R -1; the figures follow
        (closed,) = await desk.round(
            4201, [], [deal(32, 1003, DealEntry.OUT, False, 0.6, 4200, 1.098, profit=-120.0, reason=4)]
        )
        assert closed.data["score"]["score"] == 6 and closed.data["r_multiple"] == -1.0
        page = await b.wait_for(
            when(
                "s.figures.trades.value === '3' && "
                "s.trades.some((r) => r.identifier === '1003' && r.status === 'closed')"
            ),
            "the closed trade and the figures after it",
        )
        row = next(r for r in page["trades"] if r["identifier"] == "1003")
        assert row["cells"][3:7] == ["closed", "-120.00", "6/10", "-1.00"]
        assert page["rules"]["1003"]["visible"]  # still expanded, now with every rule
        assert len(page["rules"]["1003"]["rows"]) == 7 and page["figures"]["profit"]["text"] == "-70.00"
        await b.screenshot(tmp_path / "scores-live.png")
        assert await b.csp_violations() == [], b.console
        assert not [c for c in b.console if "error" in c.lower() or c.startswith("exception")], b.console
        # the live events came over the stream: no events read since it was live
        assert event_reads() == reads_when_live, b.responses
