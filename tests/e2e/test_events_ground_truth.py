"""Hours of simulated trading, time-accelerated, against the simulator's ground truth: the real agent
(`mt5-agent run`, a subprocess polling positions every 0.25 s) watches 24 accounts of a real simulated
bridge (`mt5-bridge --simulate --time-scale 60`: a wall second is a trading minute) through a proxy that
injects 500s, broken JSON, resets, hangs and hostile values mid-run, while the agent is SIGKILLed and
restarted and the bridge is SIGKILLed and restarted (on the same clock: the same desk continues) at
random moments. Afterwards every change the desk made yields exactly the expected events from the
agent's store: none missing, none duplicated, none invented, right types, realised P&L to the cent.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from agent.domain.trades import EventType, TradeEvent
from agent.store import open_store
from bridge.config import AccountEntry
from bridge.sim_clock import SimClock
from bridge.sim_trades import TruthChange
from bridge.simulated import SimulatedTerminal
from tests.e2e.fault_proxy import MODES, Fault, FaultProxy
from tests.e2e.stack import Proc, clean_env, wait_for
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ACCOUNTS = 24
SEED = 11
SCALE = 60.0  # simulated seconds per wall second
UTC_OFFSET = 2  # broker time, converted back by the bridge
POLL = "0.25"
BEHIND_S = 8 * 3600  # the desk's clock starts this far in the past (agents refuse times from the future)
RUN_WALL_S = (6.0, 14.0)  # undisturbed running between two disruptions, wall seconds
DRAIN_SIM_S = 240.0  # after the last disruption: every change up to T_check is polled past this margin
ACTIONS = ["kill_agent", "kill_agent", "kill_agent", "kill_bridge", *(f"fault:{m}" for m in MODES)]
DEAL_CHANGES = ("volume_added", "partial_close", "reversal")


def _accounts() -> list[AccountEntry]:
    from pydantic import SecretStr

    return [
        AccountEntry(
            login=5_100_000 + i,
            password=SecretStr(f"gt-{i}"),
            name=f"Ground truth {i}",
            server="GroundTruth-Sim",
            balance=5_000.0 + 1_000 * i,
        )
        for i in range(ACCOUNTS)
    ]


@dataclass
class Run:
    tmp: Path
    clock: SimClock
    bridge_port: int = field(default_factory=free_port)
    agent_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)

    def proc(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        p = Proc(name, argv, self.tmp / f"{name}.log", env)
        self.procs.append(p)
        return p


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    anchor = time.time()
    r = Run(tmp_path, SimClock(start=anchor - BEHIND_S, anchor=anchor, scale=SCALE))
    try:
        yield r
    finally:
        for p in r.procs:
            await p.stop(grace=5.0)
        for p in r.procs:  # the logs' tails, for a failure's report (pytest shows captured output)
            print(f"--- {p.name} log tail ---\n{p.tail(40)}")


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as r:
        return r.status


async def _ready(session: aiohttp.ClientSession, proc: Proc, url: str) -> None:
    async def check() -> bool:
        proc.check_alive()
        return await _status(session, url) == 200

    await wait_for(check, 30.0, f"{proc.name} at {url}")


async def _as_of(session: aiohttp.ClientSession, agent: str, login: int) -> float | None:
    async with session.get(f"{agent}/api/v1/accounts/{login}/positions") as r:
        if r.status != 200:
            return None
        body = await r.json()
    if body["as_of"] is None:  # not polled yet
        return None
    return datetime.fromisoformat(body["as_of"].replace("Z", "+00:00")).timestamp()


async def test_hours_of_trading_with_kills_and_faults_yield_exactly_the_expected_events(
    run: Run,
) -> None:
    rng = random.Random(SEED)
    accounts = _accounts()
    logins = [a.login for a in accounts]
    accounts_file = run.tmp / "accounts.json"
    accounts_file.write_text(
        json.dumps(
            {
                "utc_offset_hours": UTC_OFFSET,
                "accounts": [
                    {
                        **a.model_dump(mode="json", exclude={"password"}),
                        "password": a.password.get_secret_value(),
                    }
                    for a in accounts
                ],
            }
        )
    )
    bridge = run.proc(
        "bridge",
        [
            sys.executable,
            "-m",
            "bridge.cli",
            "--simulate",
            "--accounts",
            str(accounts_file),
            "--seed",
            str(SEED),
            "--port",
            str(run.bridge_port),
            f"--clock-start={run.clock.start!r}",
            f"--clock-anchor={run.clock.anchor!r}",
            "--time-scale",
            f"{SCALE:g}",
            "--log-level",
            "WARNING",
        ],
        clean_env(),
    )
    bridge_url = f"http://127.0.0.1:{run.bridge_port}"
    proxy = FaultProxy(bridge_url)
    proxy_url = await proxy.start()
    db = run.tmp / "agent.db"
    agent = run.proc(
        "agent",
        [sys.executable, "-m", "agent.cli", "run"],
        clean_env(
            MT5_AGENT_BRIDGE_URL=proxy_url,
            MT5_AGENT_STORE_URL=f"sqlite:///{db}",
            MT5_AGENT_LISTEN=f"127.0.0.1:{run.agent_port}",
            MT5_AGENT_SCHEDULE="60s",
            MT5_AGENT_POSITIONS_INTERVAL=POLL,
            MT5_AGENT_REQUEST_TIMEOUT="2",
            MT5_AGENT_LOG_FORMAT="json",
            MT5_AGENT_LOG_LEVEL="WARNING",
        ),
    )
    agent_url = f"http://127.0.0.1:{run.agent_port}"
    timeline: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        try:
            await bridge.start()
            await _ready(http, bridge, f"{bridge_url}/api/mt5/bridge/health")
            started = run.clock.now()
            await agent.start()
            await _ready(http, agent, f"{agent_url}/healthz")

            # the agent's first look at each account: a trade that closed before it (while the agent was
            # still starting) is history, which it may back-fill but need not
            async def first_polls() -> float | None:
                seen = [await _as_of(http, agent_url, login) for login in logins]
                return None if None in seen else max(t for t in seen if t is not None)

            first_start, _ = await wait_for(first_polls, 60.0, "every account's first positions poll")
            timeline.append(f"first poll of every account {first_start - started:.0f} sim-s after the start")

            actions = ACTIONS * 2
            rng.shuffle(actions)
            for action in actions:
                await asyncio.sleep(rng.uniform(*RUN_WALL_S))  # trading goes on undisturbed
                agent.check_alive()
                bridge.check_alive()
                down = rng.uniform(1.0, 6.0)
                timeline.append(f"{run.clock.now() - started:8.0f} sim-s {action} for {down:.1f} s")
                if action == "kill_agent":
                    assert agent.process is not None
                    agent.process.kill()  # SIGKILL: no shutdown, possibly mid-write
                    await agent.process.wait()
                    await asyncio.sleep(down)  # the desk goes on trading while the agent is down
                    await agent.start()
                    await _ready(http, agent, f"{agent_url}/healthz")
                elif action == "kill_bridge":
                    assert bridge.process is not None
                    bridge.process.kill()
                    await bridge.process.wait()
                    await asyncio.sleep(down)
                    await bridge.start()  # same start, anchor and seed: the same desk continues
                    await _ready(http, bridge, f"{bridge_url}/api/mt5/bridge/health")
                else:
                    proxy.set(Fault(action.split(":", 1)[1]))
                    await asyncio.sleep(down)
                    proxy.set(None)

            # drain: every change up to T_check must have been polled past it by a healthy agent
            t_check = run.clock.now()

            async def drained() -> bool:
                agent.check_alive()
                for login in logins:
                    as_of = await _as_of(http, agent_url, login)
                    if as_of is None or as_of < t_check + DRAIN_SIM_S:
                        return False
                return True

            await wait_for(drained, 60.0, "every account polled past the drain margin", interval=0.5)
            assert await agent.stop() == 0, agent.tail()
            t_final = run.clock.now()
        finally:
            await proxy.close()

    store = open_store(f"sqlite:///{db}")
    await store.open()
    try:
        events = await store.events.list_events(limit=1_000_000)
    finally:
        await store.close()

    # what a failure needs to be re-checked offline against the same store (tmp dirs are kept)
    (run.tmp / "run.json").write_text(
        json.dumps({"first_start": first_start, "t_check": t_check, "t_final": t_final, "timeline": timeline})
    )
    served = dict(proxy.served)
    for mode in MODES:  # every fault was really served to the agent, not just switched on
        assert served.get(mode, 0) > 0, (mode, served, timeline)
    checked = _check_against_truth(events, accounts, first_start, t_check, t_final, timeline)
    summary = {"checked": dict(checked), "events": len(events), "faults_served": served, "timeline": timeline}
    (run.tmp / "checked.json").write_text(json.dumps(summary, indent=1))


def _truth(accounts: list[AccountEntry], since: float, until: float) -> dict[int, list[TruthChange]]:
    term = SimulatedTerminal(accounts, seed=SEED, utc_offset_hours=UTC_OFFSET, clock=lambda: until)
    return {a.login: term.ground_truth(a.login, int(since * 1000), int(until * 1000)) for a in accounts}


def _check_against_truth(
    events: list[TradeEvent],
    accounts: list[AccountEntry],
    first_start: float,
    t_check: float,
    t_final: float,
    timeline: list[str],
) -> Counter[str]:
    """Every stored event is right (no duplicate, nothing invented, values as the desk made them); every
    change of a trade the agent had to see (opened after it first started, or still open then) up to
    T_check is there. Trades closed before the first start may be back-filled from the deal history:
    if they are, they must be right too."""
    assert events, ("no event stored in hours of trading", timeline)
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "event ids are not unique and increasing"
    assert len({e.dedup_key for e in events}) == len(events)

    truth = _truth(accounts, first_start - 3 * 86_400, t_final + 3600)
    check_ms, start_ms, final_ms = int(t_check * 1000), int(first_start * 1000), int(t_final * 1000)
    by_trade: dict[tuple[int, int], list[TradeEvent]] = defaultdict(list)
    for e in events:
        by_trade[(e.account, e.identifier)].append(e)

    checked: Counter[str] = Counter()
    for login, changes in truth.items():
        trades: dict[int, list[TruthChange]] = defaultdict(list)
        for c in changes:
            if c.kind != "balance":  # deposits and withdrawals are not trade events
                trades[c.identifier].append(c)
        for identifier, life in trades.items():
            got = by_trade.pop((login, identifier), [])
            checked["back-filled" if _was_closed_before(life, start_ms) and got else "trades"] += 1
            _check_trade(
                f"account {login} trade {identifier}", life, got, start_ms, check_ms, final_ms, checked
            )
    assert not by_trade, ("events for trades the desk never made", dict(list(by_trade.items())[:5]))
    # the run must have exercised what it claims to prove
    assert checked["opened"] >= 200 and checked["closed"] >= 200, (checked, timeline)
    assert checked["deal_changes"] >= 50 and checked["sl_tp"] >= 20, checked
    return checked


def _was_closed_before(life: list[TruthChange], ms: int) -> bool:
    closed = next((c for c in life if c.kind == "closed"), None)
    return closed is not None and closed.data.get("deal_visible_ms", closed.time_ms) < ms


def _check_trade(
    where: str,
    life: list[TruthChange],
    got: list[TradeEvent],
    start_ms: int,
    check_ms: int,
    final_ms: int,
    checked: Counter[str],
) -> None:
    opened = next((c for c in life if c.kind == "opened"), None)
    closed = next((c for c in life if c.kind == "closed"), None)
    if opened is None or opened.time_ms > final_ms:
        assert not got, (where, "events for a trade not opened yet", got)
        return
    # must the agent have seen all of it? (trades opened during the drain may or may not be seen)
    required = not _was_closed_before(life, start_ms) and opened.time_ms <= check_ms
    if not required and not got:
        return
    kinds = Counter(e.type for e in got)
    assert kinds[EventType.TRADE_OPENED] == 1, (where, "opened once", got)
    ev_open = next(e for e in got if e.type == EventType.TRADE_OPENED)
    assert ev_open.symbol == opened.data["symbol"], (where, ev_open, opened)
    assert ev_open.data["side"] == ("buy" if opened.data["buy"] else "sell"), (where, ev_open, opened)
    assert ev_open.data["volume"] == pytest.approx(opened.data["volume"]), (where, ev_open, opened)
    checked["opened"] += 1

    # deal-borne changes: each exactly once (by its deal), none invented
    truth_deals = {c.data["deal"]: c.kind for c in life if c.kind in DEAL_CHANGES}
    stored = [e for e in got if e.type == EventType.TRADE_UPDATED and e.data["change"] in DEAL_CHANGES]
    have = {e.data["deal"]: e.data["change"] for e in stored}
    assert len(have) == len(stored), (where, "a deal change stored twice", stored)
    assert all(truth_deals.get(d) == k for d, k in have.items()), (where, "invented", have, truth_deals)
    if required:
        due = {c.data["deal"] for c in life if c.kind in DEAL_CHANGES and c.time_ms <= check_ms}
        assert due <= have.keys(), (where, "deal changes missing", due - have.keys(), life)
        checked["deal_changes"] += len(due)

    # SL/TP moves: two moves between polls show as one, but none may be invented (a reversal sets the
    # new position's SL/TP too: that change is reported as sl_tp besides the reversal)
    moves = {(c.data["sl"], c.data["tp"]) for c in life if c.kind in ("sl_tp", "reversal")}
    for e in got:
        if e.type == EventType.TRADE_UPDATED and e.data["change"] == "sl_tp":
            assert (e.data["sl"], e.data["tp"]) in moves, (where, "an SL/TP move never made", e)
            checked["sl_tp"] += 1

    ev_closed = [e for e in got if e.type == EventType.TRADE_CLOSED]
    assert len(ev_closed) <= 1, (where, "closed twice", ev_closed)
    if closed is None or closed.time_ms > final_ms:
        assert not ev_closed, (where, "closed but the desk never closed it", ev_closed)
        return
    if not ev_closed:
        assert not (required and closed.data.get("deal_visible_ms", closed.time_ms) <= check_ms), (
            where,
            "close missing",
            got,
            closed,
        )
        return
    data = ev_closed[0].data
    assert Decimal(data["pnl_exact"]).quantize(Decimal("0.01")) == Decimal(
        str(closed.data["realised"])
    ).quantize(Decimal("0.01")), (where, data, closed)
    assert data["close_reason"] == closed.data["reason"], (where, data, closed)
    assert data["close_price"] == pytest.approx(closed.data["price"]), (where, data, closed)
    checked["closed"] += 1
