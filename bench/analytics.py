"""Trade analytics (DESIGN.md section 12) of one account with a large history.

`--deals` deals (default 100,000: a deposit, then trades of an IN and an OUT deal, one in ten closed in
two partial OUTs, a trade every ~10 minutes: 100,000 deals span ~330 days, one API range) are generated
reproducibly. Reported, each the median of `--repeat` runs:
- `ledger_build_ms`: a Ledger from every deal (what the endpoint does once per account, then caches);
- `cold_answer_ms`: that plus the whole API answer (`agent.api.analytics.build_body`: the figures,
  behaviour flags, the scores of the newest 100 closed trades);
- `compute_ms`: the figures alone on a built ledger;
- `warm_answer_ms`: the whole answer from the cached ledger (the target: < 200 ms);
- `incremental_add_us_per_closed_trade` / `incremental_answer_ms`: one more closed trade fed to the
  cached ledger (`Ledger.add` of its two deals), then the whole answer again;
- `stored` (unless `--no-store`): the account as the agent holds it in a real SQLite store: the deals, a
  TRADE_OPENED per trade (with SL/TP), a TRADE_UPDATED sl_tp for one trade in five, a TRADE_CLOSED with
  the detector's final score per closed trade; the answer as the endpoint computes it
  (`agent.api.analytics.answer`: tail deals and events, read positions and equity, figures, flags, scores,
  then `json.dumps`): `cold_ms` (a fresh cache entry), `warm_ms` (nothing new), `incremental_ms` (one more
  closed trade, its two deals and its OPENED and CLOSED events stored, then the answer), and the same for
  the previous algorithm (`before`: every OPENED/UPDATED event of the account read on each request, every
  score and flag computed again);
- `store_read_ms` (unless `--no-store`): reading every deal back from a real SQLite store (`get_deals`),
  which a cold request does before building the ledger;
- `equity_recording` (unless `--no-store`): recording equity after a sync cycle of `--equity-accounts`
  accounts (agent.analytics.equity over the fleet's AccountState): sampling on the event loop when every
  account has a new live value (`observe_ms_new`) and when none has (`observe_ms_nothing_new`), and the one
  SQLite write of those points (`write_ms`, on the store's thread).
The machine's load average is reported at start and end: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common
from _common import note, r

from agent.analytics import Ledger, compute
from agent.analytics.cache import CachedLedger
from agent.analytics.equity import EquityRecorder
from agent.analytics.score import RULES, stop_histories
from agent.api.analytics import EVENTS_PAGE, answer, build_body, ledger_of
from agent.domain.accounts import AccountValues, DataSource
from agent.domain.trades import Deal, DealEntry, DealType, EventType, TradeEvent
from agent.store import open_store
from agent.sync.fleet import AccountState

ACCOUNT = 7_000_001
START = datetime(2024, 1, 1, tzinfo=UTC)
TARGET_MS = 200.0


def make_deals(n: int, seed: int = 7) -> list[Deal]:
    rng = random.Random(seed)
    deals = [Deal(ACCOUNT, 1, 1, START, DealType.BALANCE, DealEntry.IN, 0.0, 0.0, 0.0, 0.0, 1e5, 0.0, "", 0)]
    t, pid = START, 0
    while len(deals) < n:
        pid += 1
        t += timedelta(minutes=rng.randint(1, 9))
        side = rng.choice((DealType.BUY, DealType.SELL))
        other = DealType.SELL if side is DealType.BUY else DealType.BUY
        volume = rng.choice((0.1, 0.2, 0.5, 1.0))
        price = round(1.05 + rng.random() / 10, 5)
        symbol = rng.choice(("EURUSD", "GBPUSD", "USDJPY", "XAUUSD"))
        closes = 2 if pid % 10 == 0 else 1
        legs = [(t, side, DealEntry.IN, volume, 0.0, round(-3.5 * volume, 2))]
        for _ in range(closes):
            t += timedelta(minutes=rng.randint(1, 9))
            profit = round(rng.gauss(5, 60) * volume, 2)
            legs.append((t, other, DealEntry.OUT, volume / closes, profit, round(-3.5 * volume / closes, 2)))
        for when, kind, entry, vol, profit, comm in legs:
            ticket = len(deals) + 1
            deals.append(
                Deal(
                    ACCOUNT,
                    ticket,
                    ticket,
                    when,
                    kind,
                    entry,
                    vol,
                    price,
                    comm,
                    0.0,
                    profit,
                    0.0,
                    symbol,
                    pid,
                )
            )
    return deals[:n]


def sl_events(deals: list[Deal], last: int = 200) -> list[TradeEvent]:
    out = []
    for d in deals[-last:]:
        if d.entry is DealEntry.IN:
            sl = d.price - 0.005 if d.type is DealType.BUY else d.price + 0.005
            out.append(
                TradeEvent(
                    ACCOUNT,
                    d.position_id,
                    EventType.TRADE_OPENED,
                    f"o{d.position_id}",
                    d.time,
                    d.time,
                    d.symbol,
                    {"sl": sl, "tp": 0.0},
                    id=len(out) + 1,
                )
            )
    return out


def final_score(pid: int) -> dict[str, Any]:
    """A TRADE_CLOSED's data as the detector writes it (agent.analytics.score.score_json + R)."""
    rules = [
        {
            "rule": n,
            "points": m if (pid + k) % 4 else 0,
            "max_points": m,
            "passed": bool((pid + k) % 4),
            "reason": "as judged at detection",
        }
        for k, (n, m, _) in enumerate(RULES)
    ]
    earned = sum(int(r["points"]) for r in rules)  # type: ignore[call-overload]
    score = round(1 + 9 * earned / sum(m for _, m, _ in RULES))
    return {
        "score": {"score": score, "rules": rules, "complete": True},
        "r_multiple": round(((pid % 7) - 3) / 2, 2) or None,
        "r_multiple_reason": None if (pid % 7) - 3 else "risk_not_known",
    }


def trade_events(deals: list[Deal]) -> list[TradeEvent]:
    """What the detector stores for these deals: OPENED per trade, UPDATED sl_tp for one in five,
    CLOSED with its final score when the trade's volume is all closed."""
    out: list[TradeEvent] = []
    open_volume: dict[int, float] = {}
    for d in deals:
        if d.type is DealType.BALANCE:
            continue
        sign = 1.0 if d.type is DealType.BUY else -1.0
        if d.entry is DealEntry.IN:
            open_volume[d.position_id] = d.volume
            sl, tp = round(d.price - sign * 0.005, 5), round(d.price + sign * 0.01, 5)
            key = f"{ACCOUNT}:{d.position_id}:opened"
            out.append(
                TradeEvent(
                    ACCOUNT,
                    d.position_id,
                    EventType.TRADE_OPENED,
                    key,
                    d.time,
                    d.time,
                    d.symbol,
                    {"sl": sl, "tp": tp, "volume": d.volume},
                )
            )
            if d.position_id % 5 == 0:
                when = d.time + timedelta(seconds=30)
                out.append(
                    TradeEvent(
                        ACCOUNT,
                        d.position_id,
                        EventType.TRADE_UPDATED,
                        f"{key}:u",
                        when,
                        when,
                        d.symbol,
                        {"change": "sl_tp", "sl": d.price, "tp": tp},
                    )
                )
            continue
        left = round(open_volume.get(d.position_id, 0.0) - d.volume, 8)
        open_volume[d.position_id] = left
        if left <= 0:
            key = f"{ACCOUNT}:{d.position_id}:closed"
            out.append(
                TradeEvent(
                    ACCOUNT,
                    d.position_id,
                    EventType.TRADE_CLOSED,
                    key,
                    d.time,
                    d.time,
                    d.symbol,
                    final_score(d.position_id),
                )
            )
    return out


CPU_MS: dict[str, float] = {}  # the same medians in CPU time of this process (less moved by other load)


def timed(fn: Any, repeat: int, name: str = "") -> tuple[float, Any]:
    times, cpu, value = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    if name:
        CPU_MS[name] = statistics.median(cpu)
    return statistics.median(times), value


async def store_read_ms(deals: list[Deal], repeat: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await store.open()
        try:
            await store.deals.put_deals(deals)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                got = await store.deals.get_deals(ACCOUNT)
                times.append((time.perf_counter() - t0) * 1000)
            assert len(got) == len(deals)
        finally:
            await store.close()
    return statistics.median(times)


async def _before(store: Any, at: datetime, start: datetime, end: datetime, offset: timedelta) -> Any:
    """HEAD's algorithm before this change: every OPENED/UPDATED event read each time, all recomputed."""
    events, after = [], 0
    types = {EventType.TRADE_OPENED, EventType.TRADE_UPDATED}
    while True:
        page = await store.events.list_events(after=after, limit=1000, accounts={ACCOUNT}, types=types)
        events.extend(page)
        if len(page) < 1000:
            break
        after = page[-1].id
    return stop_histories(events)


async def stored(deals: list[Deal], repeat: int, start: datetime, end: datetime) -> dict[str, Any]:
    offset = timedelta(hours=2)
    events = trade_events(deals)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'stored.db'}")
        await store.open()
        try:
            await store.deals.put_deals(deals)
            for i in range(0, len(events), 10_000):
                await store.events.append_events(events[i : i + 10_000])
            note(f"stored {len(deals)} deals, {len(events)} events")

            async def once(entry: CachedLedger) -> dict[str, Any]:
                body = await answer(
                    store,
                    entry,
                    account=ACCOUNT,
                    start=start,
                    end=end,
                    offset=offset,
                    offset_source="query",
                    values=None,
                )
                json.dumps(body)
                return body

            async def before_once() -> dict[str, Any]:
                return await before_warm(ledger_of(await store.deals.get_deals(ACCOUNT)))

            async def before_warm(ledger: Ledger) -> dict[str, Any]:
                stops = await _before(store, end, start, end, offset)
                await store.positions.get_positions(ACCOUNT)
                await store.equity.get_equity(ACCOUNT, since=start, until=end)
                body = build_body(
                    account=ACCOUNT,
                    start=start,
                    end=end,
                    offset=offset,
                    ledger=ledger,
                    first=deals[0],
                    stops=stops,
                    snapshot=None,
                    synced_balance=None,
                    margin_level=None,
                )
                json.dumps(body)
                return body

            async def atimed(make: Any) -> tuple[float, float]:
                t0, c0 = time.perf_counter(), time.process_time()
                await make()
                return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000

            out: dict[str, Any] = {"events": len(events), "events_page": EVENTS_PAGE}
            cold = [await atimed(lambda: once(CachedLedger())) for _ in range(repeat)]
            entry = CachedLedger()
            body = await once(entry)
            detector = sum(s["score_source"] == "detector" for s in body["scores"])
            warm = [await atimed(lambda: once(entry)) for _ in range(repeat)]
            ledger = ledger_of(deals)
            before_cold = [await atimed(before_once) for _ in range(repeat)]
            before_w = [await atimed(lambda: before_warm(ledger)) for _ in range(repeat)]
            incremental, before_inc = [], []
            t, pid, ticket = end - timedelta(minutes=50), 20_000_000, 30_000_000
            for which in (incremental, before_inc):  # one closed trade more before each answer
                for _ in range(repeat):
                    pid, ticket, t = pid + 1, ticket + 2, t + timedelta(seconds=20)
                    new = one_trade(pid, ticket, t)
                    await store.deals.put_deals(new)
                    await store.events.append_events(trade_events(new))
                    if which is incremental:
                        which.append(await atimed(lambda: once(entry)))
                    else:
                        ledger.add(new)  # the old handler's cache took the new deals the same way
                        which.append(await atimed(lambda: before_warm(ledger)))

            def med(xs: list[tuple[float, float]]) -> dict[str, float]:
                return {
                    "wall": r(statistics.median(x[0] for x in xs), 2),
                    "cpu": r(statistics.median(x[1] for x in xs), 2),
                }

            out |= {
                "scores_from_detector": detector,
                "after": {"cold_ms": med(cold), "warm_ms": med(warm), "incremental_ms": med(incremental)},
                "before": {
                    "cold_ms": med(before_cold),
                    "warm_ms": med(before_w),
                    "incremental_ms": med(before_inc),
                },
            }
        finally:
            await store.close()
    return out


def one_trade(pid: int, ticket: int, t: datetime, held: timedelta = timedelta(seconds=10)) -> list[Deal]:
    """A closed trade of two deals: an IN, an OUT `held` later."""
    return [
        Deal(
            ACCOUNT,
            ticket - 1,
            ticket - 1,
            t,
            DealType.BUY,
            DealEntry.IN,
            0.1,
            1.1,
            -0.35,
            0.0,
            0.0,
            0.0,
            "EURUSD",
            pid,
        ),
        Deal(
            ACCOUNT,
            ticket,
            ticket,
            t + held,
            DealType.SELL,
            DealEntry.OUT,
            0.1,
            1.1,
            -0.35,
            0.0,
            4.2,
            0.0,
            "EURUSD",
            pid,
        ),
    ]


async def equity_recording(accounts: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'equity.db'}")
        await store.open()
        try:
            rec = EquityRecorder(store.equity, sample_seconds=1, retention=None)
            observe, write = [], []
            fleet: list[AccountState] = []
            for c in range(repeat):
                at = START + timedelta(minutes=5 * c)
                values = AccountValues(balance=1e4, equity=1e4 + c)
                live = DataSource.LIVE.value
                fleet = [
                    AccountState(a, values=values, data_source=live, live_data_at=at)
                    for a in range(1, accounts + 1)
                ]
                t0 = time.perf_counter()
                rec.observe(fleet)
                observe.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await rec.flush()
                write.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            rec.observe(fleet)
            idle = (time.perf_counter() - t0) * 1000
            assert rec.written == accounts * repeat and rec.failures == 0
        finally:
            await store.close()
    return {
        "accounts": accounts,
        "observe_ms_new": r(statistics.median(observe), 2),
        "observe_ms_nothing_new": r(idle, 2),
        "write_ms": r(statistics.median(write), 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    deals = make_deals(args.deals)
    stops = stop_histories(sl_events(deals))
    offset = timedelta(hours=2)
    start, end = deals[0].time, deals[-1].time + timedelta(hours=1)
    note(f"{len(deals)} deals generated, {(end - start).days} days")

    def body(ledger: Ledger) -> dict[str, Any]:
        return build_body(
            account=ACCOUNT,
            start=start,
            end=end,
            offset=offset,
            ledger=ledger,
            first=deals[0],
            stops=stops,
            snapshot=None,
            synced_balance=None,
            margin_level=None,
        )

    build_ms, ledger = timed(lambda: ledger_of(deals), args.repeat, "ledger_build")
    cold_ms, _ = timed(lambda: body(ledger_of(deals)), args.repeat, "cold_answer")
    compute_ms, analytics = timed(
        lambda: compute(ledger, start=start, end=end, broker_utc_offset=offset), args.repeat
    )
    warm_ms, answer = timed(lambda: body(ledger), args.repeat, "warm_answer")
    note(f"ledger {build_ms:.1f} ms, cold answer {cold_ms:.1f} ms, figures {compute_ms:.1f} ms")
    note(f"warm answer {warm_ms:.1f} ms")

    adds, answers = [], []
    t, pid, ticket = deals[-1].time, 10_000_000, deals[-1].ticket
    for _ in range(args.repeat):
        pid, ticket, t = pid + 1, ticket + 2, t + timedelta(minutes=5)
        new = one_trade(pid, ticket, t, held=timedelta(minutes=1))
        t0 = time.perf_counter()
        closed = ledger.add(new)
        adds.append((time.perf_counter() - t0) * 1e6)
        assert len(closed) == 1
        t0 = time.perf_counter()
        body(ledger)
        answers.append((time.perf_counter() - t0) * 1000)

    result: dict[str, Any] = {
        "bench": "analytics",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {"deals": args.deals, "repeat": args.repeat, "store": not args.no_store},
        "deals": len(deals),
        "trades": analytics.trades,
        "days": (end - start).days,
        "ledger_build_ms": r(build_ms, 2),
        "cold_answer_ms": r(cold_ms, 2),
        "compute_ms": r(compute_ms, 2),
        "warm_answer_ms": r(warm_ms, 2),
        "cpu_ms": {k: r(v, 2) for k, v in CPU_MS.items()},
        "target_ms": TARGET_MS,
        "warm_answer_within_target": warm_ms < TARGET_MS,
        "incremental_add_us_per_closed_trade": r(statistics.median(adds), 2),
        "incremental_answer_ms": r(statistics.median(answers), 2),
        "scores_in_answer": len(answer["scores"]),
        "store_read_ms": None,
        "stored": None,
        "equity_recording": None,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.no_store:
        result["store_read_ms"] = r(asyncio.run(store_read_ms(deals, args.repeat)), 2)
        note(f"store read {result['store_read_ms']} ms")
        result["stored"] = asyncio.run(stored(deals, args.repeat, start, end))
        note(f"stored {result['stored']}")
        result["equity_recording"] = asyncio.run(equity_recording(args.equity_accounts, args.repeat))
        note(f"equity recording {result['equity_recording']}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deals", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-store", action="store_true", help="skip the SQLite read and the equity recording")
    p.add_argument("--equity-accounts", type=int, default=10_000, help="accounts of the equity recording")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    _common.emit(run(parse_args(argv)))


if __name__ == "__main__":
    main()
