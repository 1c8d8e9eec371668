"""Random trade lifecycles with their ground truth, turned into what a poller would see: snapshots at random
poll instants and deal sweeps that overlap, repeat, and sometimes deliver a closing deal a sweep late."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from agent.domain.trades import (
    Deal,
    DealEntry,
    DealType,
    EventType,
    Position,
    PositionsSnapshot,
    PositionType,
)
from agent.events import closed_key, deal_key, opened_key, sltp_key
from tests.events.factory import at

SLTP_VALUES = (0.0, 1.1, 1.2, 1.3)


@dataclass
class State:
    """A position at one moment (after a change)."""

    since: float
    buy: bool
    volume: int  # hundredths of a lot
    sl: float
    tp: float


@dataclass
class Trade:
    account: int
    identifier: int
    symbol: str
    opened: float
    states: list[State] = field(default_factory=list)
    closed: float | None = None
    deals: list[Deal] = field(default_factory=list)
    change_of: dict[int, str] = field(default_factory=dict)  # deal ticket -> expected change (non-opening)

    def state_at(self, t: float) -> State | None:
        if t < self.opened or (self.closed is not None and t >= self.closed):
            return None
        return [s for s in self.states if s.since <= t][-1]


@dataclass
class Expected:
    type: EventType
    change: str | None = None
    pnl: Decimal | None = None
    close_price: float | None = None
    close_reason: int | None = None
    duration: float | None = None
    side: str | None = None
    time: datetime | None = None


def _money(rng: random.Random, lo: int, hi: int) -> float:
    return rng.randint(lo, hi) / 100


class Desk:
    """Generates trades for a few accounts; tickets increase with time, as a terminal's do."""

    def __init__(self, rng: random.Random, accounts: tuple[int, ...], horizon: float) -> None:
        self.rng = rng
        self.trades: list[Trade] = []
        raw: list[tuple[float, Trade, dict]] = []
        for acc in accounts:
            for n in range(rng.randint(1, 5)):
                raw += self._trade(acc, 100 + n * 10 + rng.randint(0, 3) * 1000, horizon)
        raw.sort(key=lambda r: r[0])
        for ticket, (t, trade, spec) in enumerate(raw, start=50_000):
            change = spec.pop("change")
            opens = change == "opening"
            d = Deal(
                account=trade.account,
                ticket=ticket,
                order=trade.identifier if opens else ticket + 7_000_000,
                time=at(t),
                position_id=trade.identifier,
                symbol=trade.symbol,
                magic=0,
                comment="",
                **spec,
            )
            trade.deals.append(d)
            if not opens:
                trade.change_of[ticket] = change

    def _trade(self, acc: int, identifier: int, horizon: float) -> list[tuple[float, Trade, dict]]:
        rng = self.rng
        if any(t.account == acc and t.identifier == identifier for t in self.trades):
            identifier += 1 + len(self.trades) * 100_000
        t = rng.uniform(0, horizon)
        trade = Trade(acc, identifier, rng.choice(("EURUSD", "XAUUSD")), t)
        self.trades.append(trade)
        s = State(
            t, rng.random() < 0.5, rng.randint(1, 100), rng.choice(SLTP_VALUES), rng.choice(SLTP_VALUES)
        )
        trade.states.append(s)
        out = [(t, trade, self._spec(DealEntry.IN, s.buy, s.volume, "opening", commission=True))]
        for _ in range(rng.randint(0, 5)):
            t += rng.choice((rng.uniform(0.05, 0.6), rng.uniform(0.5, 4)))
            kind = rng.choice(("sltp", "sltp", "add", "partial", "reversal"))
            if kind == "partial" and s.volume < 2:
                kind = "add"
            s = State(t, s.buy, s.volume, s.sl, s.tp)
            if kind == "sltp":
                s.sl, s.tp = rng.choice(SLTP_VALUES), rng.choice(SLTP_VALUES)
            elif kind == "add":
                v = rng.randint(1, 50)
                s.volume += v
                out.append((t, trade, self._spec(DealEntry.IN, s.buy, v, "volume_added", commission=True)))
            elif kind == "partial":
                v = rng.randint(1, s.volume - 1)
                s.volume -= v
                out.append((t, trade, self._spec(DealEntry.OUT, not s.buy, v, "partial_close", profit=True)))
            else:
                new = rng.randint(1, 50)
                out.append(
                    (
                        t,
                        trade,
                        self._spec(DealEntry.INOUT, not s.buy, s.volume + new, "reversal", profit=True),
                    )
                )
                s.buy, s.volume = not s.buy, new
            trade.states.append(s)
        if rng.random() < 0.85:
            t += rng.choice((rng.uniform(0.05, 0.6), rng.uniform(0.5, 4)))
            entry = DealEntry.OUT_BY if rng.random() < 0.15 else DealEntry.OUT
            out.append((t, trade, self._spec(entry, not s.buy, s.volume, "closing", profit=True)))
            trade.closed = t
        return out

    def _spec(self, entry: DealEntry, buy: bool, volume: int, change: str, **money: bool) -> dict:
        rng = self.rng
        return {
            "change": change,
            "type": DealType.BUY if buy else DealType.SELL,
            "entry": entry,
            "volume": volume / 100,
            "price": rng.choice((1.1, 1.2345, 1912.5, 0.9)),
            "commission": -_money(rng, 0, 700) if money.get("commission") or rng.random() < 0.3 else 0.0,
            "swap": _money(rng, -300, 100) if rng.random() < 0.3 else 0.0,
            "profit": _money(rng, -50_000, 50_000) if money.get("profit") else 0.0,
            "fee": -_money(rng, 0, 50) if rng.random() < 0.2 else 0.0,
            "reason": rng.choice((0, 3, 4, 5, 6)),
        }

    # --- what a poller sees -------------------------------------------------------------------------

    def snapshot(self, account: int, t: float) -> PositionsSnapshot:
        out = []
        for tr in self.trades:
            s = tr.state_at(t) if tr.account == account else None
            if s is None:
                continue
            out.append(
                Position(
                    account=account,
                    ticket=tr.identifier,
                    identifier=tr.identifier,
                    time=at(tr.opened),
                    time_update=at(s.since),
                    type=PositionType.BUY if s.buy else PositionType.SELL,
                    magic=0,
                    reason=0,
                    volume=s.volume / 100,
                    price_open=1.1,
                    sl=s.sl,
                    tp=s.tp,
                    price_current=1.1,
                    swap=0.0,
                    profit=0.0,
                    symbol=tr.symbol,
                )
            )
        return PositionsSnapshot(account=account, as_of=at(t), positions=tuple(out))

    def expected(self) -> dict[str, Expected]:
        """Every event but sl/tp moves (those depend on which snapshots were seen)."""
        exp: dict[str, Expected] = {}
        for tr in self.trades:
            first = tr.states[0]
            exp[opened_key(tr.account, tr.identifier)] = Expected(
                EventType.TRADE_OPENED, side="buy" if first.buy else "sell", time=at(tr.opened)
            )
            for ticket, change in tr.change_of.items():
                if change != "closing":
                    exp[deal_key(tr.account, ticket)] = Expected(EventType.TRADE_UPDATED, change=change)
            if tr.closed is not None:
                last = tr.deals[-1]
                pnl = sum(
                    (Decimal(repr(x)) for d in tr.deals for x in (d.profit, d.commission, d.swap, d.fee)),
                    Decimal(0),
                )
                exp[closed_key(tr.account, tr.identifier)] = Expected(
                    EventType.TRADE_CLOSED,
                    pnl=pnl,
                    close_price=last.price,
                    close_reason=last.reason,
                    duration=(last.time - at(tr.opened)).total_seconds(),
                )
        return exp


def sltp_expected(seen: list[PositionsSnapshot]) -> dict[str, Expected]:
    """sl/tp moves between successive snapshots the detector was given (one account's, in order)."""
    exp: dict[str, Expected] = {}
    last: dict[int, Position] = {}
    for snap in seen:
        for p in snap.positions:
            prev = last.get(p.identifier)
            if prev is not None and (prev.sl, prev.tp) != (p.sl, p.tp):
                exp[sltp_key(snap.account, p.identifier, p.time_update, p.sl, p.tp)] = Expected(
                    EventType.TRADE_UPDATED, change="sl_tp"
                )
            last[p.identifier] = p
    return exp
