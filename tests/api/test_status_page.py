"""The status page in a real headless Chromium against a running agent: it shows every account, the
balances, and the stale account as `critical`; with read auth configured it asks for a token and
shows no data; a selected account shows its open positions and recent trade events, and new events at the
next refresh. Chromium missing: skipped loudly locally, a failure in CI (CI=true).

One-shot checks use `--dump-dom`; the trades view, which changes while it runs, is driven over the
DevTools protocol (a WebSocket on 127.0.0.1) with a small client here: no browser-automation package."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agent.app import build_poller
from agent.domain.trades import EventType, Position, PositionsSnapshot, PositionType, TradeEvent
from bridge.api import create_app as create_bridge_app
from bridge.simulated import simulated_pool
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.api.conftest import (
    ACCOUNTS,
    ALL_TOKENS,
    CLIENT_A,
    EXPECTED_STATE,
    PRIVATE_VALUES,
    READ,
    Api,
    MakeApi,
    make_jwt,
)

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium not found (looked for " + ", ".join(CHROMIUM_CANDIDATES) + "): status page NOT tested"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(f"!!! {reason} !!!")


async def _chromium_run(url: str, tmp: Path, *args: str) -> str:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp}",
        "--virtual-time-budget=5000",
        *args,
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("Chromium did not finish within 60 s")
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return out.decode()


class _Rows(HTMLParser):
    """Collects the account rows (`tr[data-account]`): attributes, cell texts, state badges."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict] = {}
        self.body_attrs: dict[str, str | None] = {}
        self._row: dict | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body_attrs = a
        elif tag == "tr" and "data-account" in a:
            self._row = {"state": a.get("data-state"), "cells": [], "badge": None, "values": {}}
            self.rows[int(a["data-account"] or 0)] = self._row
        elif tag == "td" and self._row is not None:
            self._cell = []
            cls = (a.get("class") or "").split()
            for f in ("balance", "equity"):
                if f in cls:
                    self._row["values"][f] = a.get("data-value")
        elif tag == "span" and self._row is not None and a.get("class") == "state":
            self._row["badge"] = a.get("data-state")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


async def test_status_page_shows_accounts_and_stale_state(make_api: MakeApi, tmp_path: Path):
    api = await make_api()  # nothing configured, loopback: reads are open, as in `mt5-agent demo`
    url = api.base_url + "/"
    dom = await _chromium_run(url, tmp_path / "profile-dom", "--dump-dom")

    page = _Rows()
    page.feed(dom)
    assert page.body_attrs.get("data-auth") == "ok", dom[:2000]
    assert set(page.rows) == set(ACCOUNTS), dom[:3000]
    for account, (_, _, balance, equity, _, _) in ACCOUNTS.items():
        row = page.rows[account]
        assert row["state"] == EXPECTED_STATE[account] == row["badge"], (account, row)
        assert EXPECTED_STATE[account] in row["cells"]  # the state as visible text, not only a colour
        if balance is None:
            assert row["values"] == {"balance": "", "equity": ""} and "n/a" in row["cells"]
            assert "never" in row["cells"]
        else:
            assert float(row["values"]["balance"]) == balance and float(row["values"]["equity"]) == equity
            assert f"{balance:,.2f}" in row["cells"] and f"{equity:,.2f}" in row["cells"]
            assert "VPS_LIVE_MT5" in row["cells"]
    stale = page.rows[100002]
    assert stale["state"] == "critical" and "20m" in " ".join(stale["cells"])
    # Status bar: store up, bridge unknown (no cycle yet), and the freshness counts.
    assert 'id="store" class="up">up<' in dom
    assert 'id="bridge" class="unknown">unknown<' in dom
    assert "5 (1 fresh, 1 acceptable, 1 degraded, 2 critical)" in dom
    for value in PRIVATE_VALUES:
        assert value not in dom

    shot = tmp_path / "status.png"
    await _chromium_run(url, tmp_path / "profile-shot", "--window-size=1280,800", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


async def test_status_page_asks_for_a_token_when_reads_need_one(make_api: MakeApi, tmp_path: Path):
    api = await make_api(api_token=READ)
    dom = await _chromium_run(api.base_url + "/", tmp_path / "profile", "--dump-dom")
    page = _Rows()
    page.feed(dom)
    assert page.body_attrs.get("data-auth") == "required", dom[:2000]
    assert page.rows == {}  # the API said 401: the page shows no account
    assert '<form id="login">' in dom  # no longer hidden
    assert "credentials required" in dom


async def test_status_page_lists_a_never_synced_account_as_critical(
    make_api: MakeApi, fake_bridge, tmp_path: Path
):
    """Issue 10 finding 8: an account the bridge lists that never synced (no document) is on the page too,
    as critical with no values, the way /metrics and the alerts see it."""
    bridge, url = fake_bridge
    never = 885822
    bridge.behaviour[never] = "http_500"
    api = await make_api(bridge_url=url)
    await api.agent.service.run_cycle()
    assert await api.store.accounts.get_account(never) is None

    dom = await _chromium_run(api.base_url + "/", tmp_path / "profile-dom", "--dump-dom")
    page = _Rows()
    page.feed(dom)
    assert set(page.rows) == set(ACCOUNTS) | set(SEED_ACCOUNTS), dom[:3000]
    row = page.rows[never]
    assert row["state"] == row["badge"] == "critical", row
    assert row["values"] == {"balance": "", "equity": ""}
    assert {"n/a", "never", "none", SEED_ACCOUNTS[never]["name"]} <= set(row["cells"]), row


# --- the trades view, driven over the DevTools protocol ---------------------------------------------------

# Recorded in the page before any of its own script runs: every CSP violation, whatever reports it.
CSP_RECORDER = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation',"
    " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)
WAIT_S = 30  # a shared 2-core machine: generous, but every wait ends on its condition


class Browser:
    """Headless Chromium on a DevTools WebSocket: evaluate, wait for a condition, screenshot, and what it
    said on its console (console API, log entries such as CSP refusals, uncaught exceptions)."""

    def __init__(self, proc: asyncio.subprocess.Process, http: aiohttp.ClientSession) -> None:
        self.proc, self.http = proc, http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.console: list[str] = []
        self.responses: list[tuple[str, int]] = []  # (url, status) of every response the page got
        self.paused: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # Fetch.requestPaused, when enabled
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, port: int) -> None:
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Page.addScriptToEvaluateOnNewDocument", source=CSP_RECORDER)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                self.console.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                self.console.append(f"log {entry['source']}/{entry['level']}: {entry['text']}")
            elif method == "Runtime.exceptionThrown":
                self.console.append(f"exception: {json.dumps(params['exceptionDetails'])[:500]}")
            elif method == "Fetch.requestPaused":
                self.paused.put_nowait(params)
            elif method == "Network.responseReceived":
                self.responses.append((params["response"]["url"], params["response"]["status"]))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self._ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = fut
        await self.ws.send_json({"id": self._ids, "method": method, "params": params})
        answer = await asyncio.wait_for(fut, timeout=WAIT_S)
        assert "error" not in answer, (method, answer)
        return answer["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str) -> Any:
        """Poll `expression` until it is truthy (its value returned); fail naming `what` after WAIT_S."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                state = await self.evaluate(TRADES_STATE)
                pytest.fail(
                    f"page never showed {what} within {WAIT_S}s; page: {state}; console: {self.console}"
                )
            await asyncio.sleep(0.1)

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", "a load")

    async def state_when(self, condition: str, what: str) -> dict[str, Any]:
        """The trades view (TRADES_STATE as `s`) once `condition` holds of it."""
        return await self.wait_for(
            f"(() => {{ const s = {TRADES_STATE}; return ({condition}) && s; }})()", what
        )

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        await asyncio.to_thread(path.write_bytes, data)

    async def csp_violations(self) -> list[str]:
        return list(await self.evaluate("window.__csp")) + [
            c for c in self.console if "Content Security" in c
        ]


@contextlib.asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[Browser]:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    async with aiohttp.ClientSession() as http:
        b = Browser(proc, http)
        try:
            port_file = profile / "DevToolsActivePort"
            async with asyncio.timeout(WAIT_S):
                while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                    assert proc.returncode is None, "Chromium exited at start"
                    await asyncio.sleep(0.05)
            await b.connect(int(port_file.read_text().splitlines()[0]))
            yield b
        finally:
            if b.ws is not None:
                await b.ws.close()
            if b._reader is not None:
                b._reader.cancel()
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), timeout=10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


# The trades view as the page shows it: each row's data attributes, cell texts and raw values.
TRADES_STATE = """(() => {
  const rows = (sel) => [...document.querySelectorAll(sel)].map((tr) => ({
    data: {...tr.dataset},
    cells: [...tr.cells].map((td) => td.textContent),
    values: Object.fromEntries([...tr.cells].filter((td) => td.classList.length > 1 && 'value' in td.dataset)
      .map((td) => [td.classList[1], td.dataset.value])),
  }));
  const text = (id) => document.getElementById(id).textContent;
  return {
    shown: !document.getElementById('trades').hidden,
    loaded: document.getElementById('trades').dataset.loaded || null,
    account: text('trades-account'),
    message: text('trades-message'),
    positions: rows('#positions tr'),
    positionsTable: !document.getElementById('positions-table').hidden,
    totals: rows('#positions-totals tr'),
    asOf: text('positions-as-of'),
    positionsEmpty: text('positions-empty'),
    events: rows('#events tr'),
    eventsEmpty: text('events-empty'),
    selected: [...document.querySelectorAll('#accounts tr.selected')].map((tr) => tr.dataset.account),
    title: document.title,
  };
})()"""

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A1, A2, B1 = 100001, 100002, 200001  # tests/api/conftest.py: CLIENT_A's two, CLIENT_B's one
MARKUP = '<img src=x id="pwned" onerror="document.title=\'pwned\'">&amp;<b>'


def _position(account: int, identifier: int, side: PositionType, symbol: str, **values: float) -> Position:
    return Position(
        account=account,
        ticket=identifier,
        identifier=identifier,
        time=T0 + timedelta(minutes=identifier),
        time_update=T0 + timedelta(minutes=identifier, seconds=5),
        type=side,
        magic=7,
        reason=0,
        symbol=symbol,
        comment="",
        **values,  # type: ignore[arg-type]
    )


POSITIONS = (
    _position(
        A1, 11, PositionType.SELL, "EURUSD", volume=0.25, price_open=1.0825, sl=1.09, tp=0.0,
        price_current=1.0811, swap=-0.4, profit=35.0,
    ),
    _position(
        A1, 12, PositionType.BUY, MARKUP, volume=1.5, price_open=2345.5, sl=2300.0, tp=2400.0,
        price_current=2350.25, swap=-1.25, profit=712.5,
    ),
)  # fmt: skip


def _event(
    account: int, identifier: int, kind: EventType, key: str, data: dict[str, Any], symbol: str = "EURUSD"
):
    at = T0 + timedelta(minutes=identifier, seconds=len(key))
    return TradeEvent(
        account=account,
        identifier=identifier,
        type=kind,
        dedup_key=f"{account}:{key}",
        time=at,
        detected_at=at + timedelta(milliseconds=420),
        symbol=symbol,
        data=data,
    )


OPENED_11 = _event(
    A1,
    11,
    EventType.TRADE_OPENED,
    "o11",
    {"side": "sell", "volume": 0.25, "price_open": 1.0825, "sl": 1.09, "tp": 0.0},
)
OTHER_ACCOUNT = _event(
    B1, 31, EventType.TRADE_OPENED, "o31", {"side": "buy", "volume": 9.0, "price_open": 1.5}
)
MOVED_11 = _event(
    A1,
    11,
    EventType.TRADE_UPDATED,
    "m11",
    {"change": "sl_tp", "changes": {"sl": [1.095, 1.09]}, "sl": 1.09, "tp": 0.0},
)
CLOSED_9 = _event(
    A1, 9, EventType.TRADE_CLOSED, "c9",
    {"side": "buy", "close_price": 1.1, "close_volume": 0.1, "close_reason": 5, "pnl": -12.34,
     "pnl_complete": True},
    symbol=MARKUP,
)  # fmt: skip
LATER_12 = _event(
    A1, 12, EventType.TRADE_UPDATED, "p12",
    {"change": "partial_close", "changes": {"volume": [2.0, 1.5]}, "deal": 77, "price": 2350.5,
     "volume": 0.5},
    symbol=MARKUP,
)  # fmt: skip


async def _trades_agent(make_api: MakeApi, **settings: Any) -> Api:
    """A live agent (by default reads open on loopback) whose store holds A1's positions and events of A1
    and B1."""
    api = await make_api(**settings)
    assert await api.agent.service.load_state()
    stored = await api.store.events.append_events([OPENED_11, OTHER_ACCOUNT, MOVED_11, CLOSED_9])
    assert [e.id for e in stored] == [1, 2, 3, 4]
    snap = await api.store.positions.replace_positions(A1, PositionsSnapshot(A1, T0, POSITIONS))
    assert snap.as_of_event_id == 4
    return api


async def test_trades_view_shows_positions_events_and_a_new_event(make_api: MakeApi, tmp_path: Path):
    api = await _trades_agent(make_api)
    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/?stream=off#account={A1}")  # the plain-read path
        page = await b.state_when(
            "s.loaded === 'ok' && s.events.length === 3",
            "the positions and events of the account",
        )
        assert page["shown"] and page["account"] == str(A1) and page["message"] == ""
        assert page["selected"] == [str(A1)]  # the accounts table marks the selection

        # Positions: every field the API gives, formatted, the markup symbol as text.
        _, body = await api.json("GET", f"/api/v1/accounts/{A1}/positions")
        assert page["positionsTable"] and page["positionsEmpty"] == ""
        assert (
            page["asOf"]
            == "As read from the terminal at 2026-11-30T12:00:00.000Z (UTC), reflecting events up to 4"
        )
        by_id = {int(r["data"]["identifier"]): r for r in page["positions"]}
        assert set(by_id) == {p["identifier"] for p in body["positions"]} == {11, 12}
        assert by_id[11]["cells"] == [
            "11", "EURUSD", "sell", "0.25", "1.0825", "1.0811", "1.09", "none", "-0.40", "35.00",
            "2026-11-30T12:11:00.000Z",
        ]  # fmt: skip
        assert by_id[12]["cells"] == [
            "12", MARKUP, "buy", "1.50", "2,345.5", "2,350.25", "2,300", "2,400", "-1.25", "712.50",
            "2026-11-30T12:12:00.000Z",
        ]  # fmt: skip
        for p in body["positions"]:
            values = by_id[p["identifier"]]["values"]
            for field in ("volume", "swap", "profit"):
                assert float(values[field]) == p[field], (field, values)
        (totals,) = page["totals"]
        assert totals["cells"] == ["2 positions", "-1.65", "747.50", ""]

        # Events: A1's only, newest first, per type.
        _, events = await api.json("GET", f"/api/v1/events?account={A1}")
        ids = [int(r["data"]["eventId"]) for r in page["events"]]
        assert ids == [e["id"] for e in reversed(events["events"])] == [4, 3, 1]
        closed, moved, opened = (r["cells"] for r in page["events"])
        assert closed == [
            "4", "TRADE_CLOSED", "close (take profit)", "9", MARKUP, "0.10", "1.1", "-12.34",
            "2026-11-30T12:09:02.000Z", "2026-11-30T12:09:02.420Z",
        ]  # fmt: skip
        assert moved[1:5] == ["TRADE_UPDATED", "SL/TP moved: sl 1.095 \u2192 1.09", "11", "EURUSD"]
        assert moved[5:8] == ["", "", ""]  # an SL/TP move has no deal volume, price or P&L
        assert opened[1:8] == ["TRADE_OPENED", "open sell (SL 1.09)", "11", "EURUSD", "0.25", "1.0825", ""]

        # Markup in a value is text: no element made of it, no handler ran.
        assert await b.evaluate("document.getElementById('pwned') === null && document.images.length === 0")
        assert page["title"] == "MT5 agent status"

        # A new event: shown on top at the next refresh, read with the cursor (after=4), not from the start.
        (later,) = await api.store.events.append_events([LATER_12])
        page = await b.state_when("s.events.length === 4", "the new event")
        top = page["events"][0]
        assert top["data"]["eventId"] == str(later.id) == "5"
        assert top["cells"][1:8] == [
            "TRADE_UPDATED", "partial close: volume 2 \u2192 1.5", "12", MARKUP, "0.50", "2,350.5", "",
        ]  # fmt: skip
        event_reads = [url for url, _ in b.responses if "/api/v1/events?" in url]
        assert any(f"account={A1}&after=4&" in url for url in event_reads), event_reads
        # from the start only once: the first load's look back from the positions' as_of_event_id
        assert sum(f"account={A1}&after=0&" in url for url in event_reads) == 1, event_reads

        await b.screenshot(tmp_path / "trades-view.png")
        assert await b.csp_violations() == [], b.console
        assert not [c for c in b.console if "error" in c.lower() or c.startswith("exception")], b.console

        # The checks above can fail: a style attribute is refused by the CSP and recorded.
        await b.evaluate("document.body.setAttribute('style', 'color: red'); true")
        await b.wait_for("window.__csp.length > 0", "the deliberate CSP violation")
        assert any("style-src" in v for v in await b.csp_violations())


async def test_trades_view_selected_by_click_says_when_no_positions_are_reported(
    make_api: MakeApi, tmp_path: Path
):
    """An account whose positions were never read (as with the seed bridge, which serves none) says so
    instead of an empty table; the selection follows a click on the accounts table."""
    api = await _trades_agent(make_api)
    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/")
        await b.wait_for(
            f"document.querySelector('#accounts tr[data-account=\"{A2}\"] a') !== null", "the accounts"
        )
        assert await b.evaluate("document.getElementById('trades').hidden")  # nothing selected yet
        await b.evaluate(
            f"document.querySelector('#accounts tr[data-account=\"{A2}\"] td.balance').click(); true"
        )
        page = await b.state_when(
            "s.loaded === 'ok'",
            "the selected account",
        )
        assert await b.evaluate("location.hash") == f"#account={A2}"
        assert page["account"] == str(A2) and page["selected"] == [str(A2)]
        assert not page["positionsTable"] and page["positions"] == [] and page["asOf"] == ""
        assert page["positionsEmpty"].startswith("No positions reported for this account")
        assert "seed bridge" in page["positionsEmpty"]
        assert page["events"] == [] and page["eventsEmpty"].startswith("No trade events")
        await b.screenshot(tmp_path / "trades-no-positions.png")

        # Another account by its link: the view follows, and shows only that account's events.
        await b.evaluate(f"document.querySelector('#accounts tr[data-account=\"{B1}\"] a').click(); true")
        page = await b.state_when(
            f"s.account === '{B1}' && s.loaded === 'ok'",
            "the second account",
        )
        assert [r["data"]["eventId"] for r in page["events"]] == ["2"]
        assert await b.csp_violations() == [], b.console


async def test_trades_view_resumes_after_an_expired_cursor(make_api: MakeApi, tmp_path: Path):
    """The page's cursor falls out of the retained history (410 cursor_expired): it re-reads the positions,
    resumes from their as_of_event_id, and goes on showing new events."""
    api = await _trades_agent(make_api)
    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/?stream=off#account={A1}")  # the plain-read path
        await b.state_when(
            "s.loaded === 'ok' && s.events.length === 3",
            "the first events",
        )
        # Hold the page's next events read in the browser while the history moves on, so that read
        # meets it whatever the timing: two new events, all but the newest pruned (the page's cursor, 4,
        # is now older than the oldest retained, 6), and the positions stored after them (as_of_event_id 6).
        await b.send("Fetch.enable", patterns=[{"urlPattern": "*/api/v1/events?*"}])
        held = await asyncio.wait_for(b.paused.get(), timeout=WAIT_S)
        assert f"account={A1}&after=4&" in held["request"]["url"], held["request"]["url"]
        extra = _event(
            A1, 13, EventType.TRADE_OPENED, "o13", {"side": "buy", "volume": 0.01, "price_open": 1.0}
        )
        stored = await api.store.events.append_events([LATER_12, extra])
        assert [e.id for e in stored] == [5, 6]
        assert await api.store.events.prune_events(max_events=1) == 5
        await api.store.positions.replace_positions(
            A1, PositionsSnapshot(A1, T0 + timedelta(minutes=1), POSITIONS)
        )
        await b.send("Fetch.continueRequest", requestId=held["requestId"])
        await b.send("Fetch.disable")  # lets any other held read go on
        page = await b.state_when(
            "s.events.length === 1",
            "the retained event after the reload",
        )
        assert page["events"][0]["data"]["eventId"] == "6" and page["message"] == ""
        assert "reflecting events up to 6" in page["asOf"]
        assert (f"{api.base_url}/api/v1/events?account={A1}&after=4&limit=500", 410) in b.responses

        # Resumed from 6: the next event is appended at the next refresh.
        (after,) = await api.store.events.append_events(
            [
                _event(
                    A1,
                    13,
                    EventType.TRADE_CLOSED,
                    "c13",
                    {
                        "close_price": 1.2,
                        "close_volume": 0.01,
                        "close_reason": 0,
                        "pnl": 2.0,
                        "pnl_complete": False,
                    },
                )
            ]
        )
        page = await b.state_when(
            "s.events.length === 2",
            "the event after it",
        )
        assert [r["data"]["eventId"] for r in page["events"]] == [str(after.id), "6"]
        assert page["events"][0]["cells"][7] == "2.00 (opening deal not seen)"
        # the 410 is the only error the page met, and it said nothing about it on the console but the
        # browser's own line for a failed fetch
        assert await b.csp_violations() == []
        await b.screenshot(tmp_path / "trades-resumed.png")


async def test_trades_view_reads_with_the_pages_token_and_a_client_sees_its_own(
    make_api: MakeApi, tmp_path: Path
):
    """Reads need a token: the view uses the one given to the page (a client JWT here), so the client's
    account shows and another client's account is refused, with no data shown."""
    api = await _trades_agent(make_api, **ALL_TOKENS)
    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/#account={B1}")
        await b.wait_for("document.body.dataset.auth === 'required'", "the token form")
        token = make_jwt(CLIENT_A)
        await b.evaluate(
            f"document.getElementById('token').value = '{token}';"
            "document.getElementById('login').requestSubmit(); true"
        )
        page = await b.state_when("s.loaded === 'error'", "the refusal of another client's account")
        assert page["account"] == str(B1) and page["message"].startswith("Not allowed: ")
        assert page["positions"] == [] and page["events"] == [] and not page["positionsTable"]
        assert await b.wait_for("document.body.dataset.auth === 'ok'", "the client's accounts")

        await b.evaluate(f"location.hash = 'account={A1}'; true")
        page = await b.state_when(
            f"s.account === '{A1}' && s.loaded === 'ok' && s.events.length === 3", "the client's own account"
        )
        assert len(page["positions"]) == 2 and page["message"] == ""
        reads = [(url, status) for url, status in b.responses if "/api/v1/" in url]
        assert (f"{api.base_url}/api/v1/accounts/{B1}/positions", 403) in reads
        assert (f"{api.base_url}/api/v1/accounts/{A1}/positions", 200) in reads
        assert await b.csp_violations() == [], b.console


async def test_trades_view_follows_the_simulated_desk(make_api: MakeApi, tmp_path: Path):
    """End to end: our simulated bridge (its clock moved by the test), the agent's own positions poller,
    the API, the page. The page shows what the API answers for the busiest account, and the events the
    desk makes later appear at the next refresh."""
    sim_now = [time.time() - 6 * 3600]  # behind the wall clock: no clock-skew rejections
    bridge = TestServer(create_bridge_app(simulated_pool(clock=lambda: sim_now[0], seed=7)), host="127.0.0.1")
    await bridge.start_server()
    try:
        api = await make_api(seed=False, bridge_url=str(bridge.make_url("")).rstrip("/"))
        await api.agent.service.run_cycle()
        poller = build_poller(api.agent)
        assert poller is not None
        api.agent.poller = poller  # stopped with the agent (it is never started: the test ticks it)

        async def positions_of_all() -> dict[int, list[dict[str, Any]]]:
            result = await poller.tick()
            assert result is not None and not result.failed, result
            _, listed = await api.json("GET", "/api/v1/accounts")
            out = {}
            for a in listed["accounts"]:
                _, snap = await api.json("GET", f"/api/v1/accounts/{a['account']}/positions")
                out[a["account"]] = snap["positions"]
            return out

        for _ in range(60):  # simulated hours until some account has two positions open at once
            busiest, held = max((await positions_of_all()).items(), key=lambda kv: len(kv[1]))
            if len(held) >= 2:
                break
            sim_now[0] += 120
        else:
            pytest.fail("the simulated desk never held two positions in one account")

        async def api_events() -> list[str]:
            _, page = await api.json("GET", f"/api/v1/events?account={busiest}&limit=1000")
            assert not page["has_more"]
            return [str(e["id"]) for e in reversed(page["events"])][:100]

        async with browser(tmp_path / "profile") as b:
            await b.open(f"{api.base_url}/#account={busiest}")
            want = ",".join(await api_events())
            page = await b.state_when(
                f"s.loaded === 'ok' && s.events.map((r) => r.data.eventId).join(',') === '{want}'",
                "the busiest account's events",
            )
            _, snap = await api.json("GET", f"/api/v1/accounts/{busiest}/positions")
            shown = {int(r["data"]["identifier"]): r for r in page["positions"]}
            assert set(shown) == {p["identifier"] for p in snap["positions"]}
            for p in snap["positions"]:
                row = shown[p["identifier"]]
                assert row["cells"][1:3] == [p["symbol"], ("buy", "sell")[p["type"]]]
                assert (
                    float(row["values"]["profit"]) == p["profit"] and row["cells"][9] == f"{p['profit']:,.2f}"
                )
            assert page["totals"][0]["cells"][0] == f"{len(snap['positions'])} positions"
            await b.screenshot(tmp_path / "trades-simulated.png")

            before = want.split(",")
            for _ in range(60):  # the desk trades on: new events for this account
                sim_now[0] += 120
                await positions_of_all()
                if (now := await api_events()) != before:
                    break
            else:
                pytest.fail("the simulated desk made no new event for the account in two hours")
            want = ",".join(now)
            await b.state_when(
                f"s.events.map((r) => r.data.eventId).join(',') === '{want}'", "the desk's new events"
            )
            assert await b.csp_violations() == [], b.console
            assert not [c for c in b.console if "error" in c.lower() or c.startswith("exception")], b.console
    finally:
        await bridge.close()


async def test_trades_view_against_the_seed_bridge_says_no_positions(
    make_api: MakeApi, fake_bridge, tmp_path: Path
):
    """The seed bridge serves balances only: its accounts sync, the poller finds no positions support, and
    the view says positions are not reported instead of showing an empty table."""
    _, url = fake_bridge
    api = await make_api(seed=False, bridge_url=url)
    await api.agent.service.run_cycle()
    poller = build_poller(api.agent)
    assert poller is not None
    api.agent.poller = poller
    assert await poller.tick() is None and poller.available is False  # nothing to poll
    account = next(iter(SEED_ACCOUNTS))
    _, snap = await api.json("GET", f"/api/v1/accounts/{account}/positions")
    assert snap == {"account": account, "as_of": None, "as_of_event_id": None, "positions": []}
    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/#account={account}")
        page = await b.state_when("s.loaded === 'ok'", "the seed account")
        assert page["positionsEmpty"].startswith("No positions reported for this account")
        assert not page["positionsTable"] and page["events"] == [] and page["message"] == ""
        assert await b.csp_violations() == [], b.console


async def test_trades_view_finds_recent_events_among_other_accounts_and_keeps_the_newest(
    make_api: MakeApi, tmp_path: Path
):
    """Event ids are shared by every account: the view looks back from the positions' as_of_event_id over
    windows of ids until it has the account's newest events (here three, behind 1500 of another account),
    shows at most 100, newest first, and drops the oldest when a new one comes."""
    api = await make_api()
    assert await api.agent.service.load_state()

    def opened(account: int, n: int) -> TradeEvent:
        return _event(
            account, n, EventType.TRADE_OPENED, f"o{n}", {"side": "buy", "volume": 0.01, "price_open": 1}
        )

    await api.store.events.append_events([opened(A1, n) for n in (1, 2, 3)])
    await api.store.events.append_events([opened(B1, n) for n in range(1000, 2500)])
    snap = await api.store.positions.replace_positions(A1, PositionsSnapshot(A1, T0, POSITIONS))
    assert snap.as_of_event_id == 1503
    await api.store.events.append_events([opened(A1, n) for n in (4, 5)])  # after the positions: 1504, 1505
    async with browser(tmp_path / "profile") as b:
        await b.open(f"{api.base_url}/?stream=off#account={A1}")  # the plain-read path
        page = await b.state_when("s.loaded === 'ok' && s.events.length === 5", "the account's five events")
        assert [r["data"]["eventId"] for r in page["events"]] == ["1505", "1504", "3", "2", "1"]
        reads = [url for url, _ in b.responses if f"/api/v1/events?account={A1}" in url]
        assert len(reads) <= 6, reads  # the probe, the newer ones, three windows back

        # 110 more: the newest 100 shown, in order; one more pushes the oldest out
        more = await api.store.events.append_events([opened(A1, n) for n in range(100, 210)])
        await b.state_when(
            f"s.events.length === 100 && s.events[0].data.eventId === '{more[-1].id}'", "the 100"
        )
        (last,) = await api.store.events.append_events([opened(A1, 500)])
        page = await b.state_when(f"s.events[0].data.eventId === '{last.id}'", "the newest event on top")
        ids = [int(r["data"]["eventId"]) for r in page["events"]]
        assert last.id is not None and ids == list(range(last.id, last.id - 100, -1))

        # a bad or an unknown account says so
        await b.evaluate("location.hash = 'account=abc'; true")
        page = await b.state_when("s.message !== ''", "the refusal of a bad account")
        assert page["message"] == "Not an account number: abc" and page["events"] == []
        await b.evaluate("location.hash = 'account=999999'; true")
        page = await b.state_when("s.loaded === 'error'", "the unknown account")
        assert "neither stored nor listed" in page["message"] and page["positions"] == []
        assert await b.csp_violations() == [], b.console
