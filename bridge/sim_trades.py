"""The simulator's trading desk: each trade's whole life laid out in advance from (seed, login, slot).

A trade opens in its 5-minute slot and may then have its SL/TP moved, be scaled in (IN deal), partially
closed (OUT deal), reversed (INOUT deal, netting), and is closed by hand, by an expert, by SL, TP or stop-out;
a few open and close within seconds. Because prices are a pure function of time, the life is computed once
and read at any instant: `state_at` for positions, `deals` for history, `changes` as ground truth for tests.
Times here are true UTC epoch milliseconds; the terminal shifts them to broker time.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.sim_market import SYMBOLS, Symbol, pnl, price_at
from bridge.terminal import (
    DEAL_ENTRY_IN,
    DEAL_ENTRY_INOUT,
    DEAL_ENTRY_OUT,
    DEAL_REASON_CLIENT,
    DEAL_REASON_EXPERT,
    DEAL_REASON_MOBILE,
    DEAL_REASON_SL,
    DEAL_REASON_SO,
    DEAL_REASON_TP,
    DEAL_REASON_WEB,
    DEAL_TYPE_BALANCE,
    DEAL_TYPE_BUY,
    DEAL_TYPE_SELL,
    POSITION_TYPE_BUY,
    POSITION_TYPE_SELL,
)

SLOT_MS = 300_000  # one trade opportunity per account per 5 minutes
TRADE_PROBABILITY = 0.5
MEAN_TRADE_SECONDS = 1_200.0
MAX_TRADE_SECONDS = 6 * 3600.0
QUICK_PROBABILITY = 0.08  # opens and closes within a few seconds, i.e. between two polls
LATE_CLOSE_PROBABILITY = 0.2  # the closing deal shows in the history 1-3 s after the position is gone
REOPEN_PROBABILITY = 0.5  # a position held over a rollover gets a new ticket (its identifier stays)
BALANCE_OP_PROBABILITY = 0.004  # per slot: about one deposit or withdrawal a day
COMMISSION_PER_LOT = 3.5  # per deal side, account currency
EXPERT_MAGIC = 20_251_024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ticket_for(ms: int, login: int, lane: int) -> int:
    """Tickets grow with time like a server's and stay below 2**53 (safe in JSON): the instant in 10 ms
    units, then the login's last two digits (accounts on one server get different tickets), then a lane
    (1-97 for a slot's trade, 98-99 for balance operations). Unique per account: a slot's trade lives
    < 8 h, so two trades sharing a lane never overlap, and a trade's deals are >= 0.3 s apart."""
    return (ms // 10) * 10_000 + (login % 100) * 100 + lane


@dataclass(frozen=True, slots=True)
class PositionState:
    """A position as positions_get would show it between two changes (UTC ms times)."""

    identifier: int
    buy: bool
    volume: float
    price_open: float
    sl: float
    tp: float
    open_ms: int
    update_ms: int
    magic: int
    reason: int
    comment: str
    ticket: int  # the identifier, until a rollover reopens the position under a new ticket


@dataclass(frozen=True, slots=True)
class SimDeal:
    """A deal done at `utc_ms`, in the history from `visible_ms` (later only for a late closing deal)."""

    utc_ms: int
    visible_ms: int
    fields: dict[str, Any]

    @property
    def amount(self) -> float:
        f = self.fields
        return f.get("profit", 0.0) + f.get("commission", 0.0) + f.get("swap", 0.0) + f.get("fee", 0.0)


@dataclass(frozen=True, slots=True)
class TruthChange:
    """One change the simulator made to an account: ground truth for event detection. `time_ms` is the
    true UTC instant (ms); `identifier` the position's (0 for a balance operation). `data` by kind:

    - opened: symbol, buy, type, volume, price, sl, tp, deal (ticket of the IN deal)
    - sl_tp: old_sl, old_tp, sl, tp
    - volume_added: old_volume, volume, added, price (of the deal), price_open (new average), deal
    - partial_close: old_volume, volume, closed, price, profit, deal
    - reversal: old_buy, buy, type, old_volume, volume, price (new open price), profit, sl, tp, deal (INOUT)
    - closed: price, reason (DEAL_REASON_*), volume, profit, swap, realised (profit + commission + swap +
      fee over all the position's deals), duration_ms, deal, deal_visible_ms (when the deal shows in history)
    - balance: amount, deal, comment
    """

    time_ms: int
    login: int
    identifier: int
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.time_ms)


@dataclass(frozen=True, slots=True)
class SimTrade:
    """One position's whole life. `profit` and `price_close` are the final closing deal's."""

    position: int
    symbol: int
    buy: bool  # side at open
    volume: float  # volume at open
    open_ms: int
    close_ms: int
    price_open: float
    price_close: float
    profit: float
    commission: float  # of the opening deal
    close_reason: int
    states: tuple[tuple[int, PositionState], ...]
    swaps: tuple[tuple[int, float], ...]  # (rollover ms, swap charged)
    deals: tuple[SimDeal, ...]
    changes: tuple[TruthChange, ...]

    @property
    def sym(self) -> Symbol:
        return SYMBOLS[self.symbol]

    @property
    def realised(self) -> float:
        """Profit + commission + swap + fee over the position's deals: what the TRADE_CLOSED event carries."""
        return round(sum(d.amount for d in self.deals), 2)

    def state_at(self, now_ms: int) -> PositionState | None:
        if not (self.open_ms <= now_ms < self.close_ms):
            return None
        i = bisect.bisect_right(self.states, now_ms, key=lambda s: s[0]) - 1
        return self.states[i][1]

    def swap_at(self, now_ms: int) -> float:
        return round(sum(amount for ms, amount in self.swaps if ms <= now_ms), 2)


def _rollovers(open_ms: int, close_ms: int, offset_ms: int) -> list[tuple[int, int]]:
    """(UTC ms, nights charged) of each broker midnight strictly inside the position's life; the night
    into Thursday is charged three times, as brokers do for the weekend."""
    out = []
    day = 86_400_000
    first = ((open_ms + offset_ms) // day + 1) * day - offset_ms
    for ms in range(first, close_ms, day):
        weekday = (_EPOCH + timedelta(milliseconds=ms + offset_ms)).weekday()
        out.append((ms, 3 if weekday == 3 else 1))
    return out


def _type(buy: bool) -> int:
    return POSITION_TYPE_BUY if buy else POSITION_TYPE_SELL


def _commission(volume: float) -> float:
    return round(-COMMISSION_PER_LOT * volume, 2)


@functools.lru_cache(maxsize=20_000)
def build_trade(
    seed: int, login: int, slot: int, balance: float, offset_ms: int, pace: int = 1
) -> tuple[SimTrade | None, SimDeal | None]:
    """The slot's trade (or None) and balance operation (or None), from (seed, login, slot) alone.
    Cached: terminals built with the same seed (tests build many) share the work; results are frozen.
    `pace` > 1 (demos): slots `pace` times shorter, trades `pace` times shorter on average, balance
    operations as rare per day; 1 is the desk every test and ground truth knows."""
    key = f"{seed}:{login}:{slot}" if pace == 1 else f"{seed}:{login}:{slot}:x{pace}"
    rng = random.Random(key)  # one generator per slot: seeding is most of the cost
    op = _balance_op(rng, login, slot, balance, pace)
    if rng.random() >= TRADE_PROBABILITY:
        return None, op
    return _build_trade(rng, seed, login, slot, balance, offset_ms, pace), op


def _balance_op(rng: random.Random, login: int, slot: int, balance: float, pace: int = 1) -> SimDeal | None:
    if rng.random() >= BALANCE_OP_PROBABILITY / pace:
        return None
    slot_ms = SLOT_MS // pace
    ms = slot * slot_ms + int(rng.random() * slot_ms)
    deposit = rng.random() < 0.6
    amount = round(balance * (rng.uniform(0.02, 0.2) if deposit else -rng.uniform(0.01, 0.05)), 2)
    ticket = ticket_for(ms, login, 99)
    comment = "Deposit" if deposit else "Withdrawal"
    return SimDeal(ms, ms, dict(ticket=ticket, type=DEAL_TYPE_BALANCE, profit=amount, comment=comment))


def _build_trade(
    rng: random.Random, seed: int, login: int, slot: int, balance: float, offset_ms: int, pace: int = 1
) -> SimTrade:
    lane = slot % 97 + 1
    slot_ms = SLOT_MS // pace
    open_ms = slot * slot_ms + int(rng.random() * slot_ms)
    quick = rng.random() < QUICK_PROBABILITY
    if quick:
        seconds = rng.uniform(0.3, 4.0)
    else:
        seconds = min(max(rng.expovariate(pace / MEAN_TRADE_SECONDS), 30.0), MAX_TRADE_SECONDS / pace)
    close_ms = open_ms + int(seconds * 1000)
    symbol = rng.randrange(len(SYMBOLS))
    sym = SYMBOLS[symbol]
    buy = rng.random() < 0.5
    per_lot = sym.contract_size * (1.0 if sym.usd_base else sym.base_price)
    volume = max(0.01, round(balance * rng.uniform(0.5, 3.0) / per_lot, 2))
    expert = rng.random() < 0.3
    opener = (
        DEAL_REASON_EXPERT
        if expert
        else rng.choice((DEAL_REASON_CLIENT, DEAL_REASON_MOBILE, DEAL_REASON_WEB))
    )
    magic = EXPERT_MAGIC if expert else 0
    comment = "ea grid" if expert else ""

    kinds: list[str] = []
    if not quick:
        kinds += ["sl_tp"] * rng.choice((0, 0, 1, 1, 2, 3))
        kinds += ["volume_added"] * (rng.random() < 0.2)
        kinds += ["partial_close"] * (rng.random() < 0.3)
        kinds += ["reversal"] * (rng.random() < 0.08)
        rng.shuffle(kinds)
    span = int(seconds) - 1
    offsets = sorted(rng.sample(range(1, span), len(kinds))) if kinds else []
    times = [open_ms + off * 1000 + rng.randrange(1000) for off in offsets]
    draws = [rng.random() for _ in range(4 * len(kinds) + 4)]
    p_close = price_at(seed, symbol, close_ms / 1000)
    late_ms = rng.randint(1000, 3000) if rng.random() < LATE_CLOSE_PROBABILITY else 0
    reason_draw = rng.random()
    so_level = rng.uniform(20.0, 30.0)
    reopen = rng.random() < REOPEN_PROBABILITY

    args = (seed, login, symbol, lane, open_ms, close_ms, buy, volume, opener, magic, comment)
    life = _Life(*args, kinds=kinds, times=times, draws=draws, offset_ms=offset_ms)
    life.play()
    # Choose how it closes now that the final side and price are known; SL/TP closes put the hit level
    # at the closing price from the last moment the position's levels were set.
    final = life.state
    floating = pnl(sym, final.buy, final.volume, final.price_open, p_close)
    reason, hit, close_comment = DEAL_REASON_EXPERT if expert else DEAL_REASON_CLIENT, None, ""
    if not quick and floating < 0 and reason_draw < 0.06:  # a stop-out closes a loser
        reason, close_comment = DEAL_REASON_SO, f"[so {so_level:.2f}%]"
    elif not quick and floating < 0 and reason_draw < 0.5:
        reason, hit, close_comment = DEAL_REASON_SL, "sl", f"[sl {p_close:.{sym.digits}f}]"
    elif not quick and floating > 0 and reason_draw < 0.5:
        reason, hit, close_comment = DEAL_REASON_TP, "tp", f"[tp {p_close:.{sym.digits}f}]"
    if hit is not None:
        life.place_hit_level(hit, p_close)
    life.close(p_close, reason, close_comment, late_ms, reopen)
    first, last = life.deals[0].fields, life.deals[-1].fields
    return SimTrade(
        position=life.identifier,
        symbol=symbol,
        buy=buy,
        volume=volume,
        open_ms=open_ms,
        close_ms=close_ms,
        price_open=first["price"],
        price_close=p_close,
        profit=last["profit"],
        commission=first["commission"],
        close_reason=reason,
        states=tuple(life.states),
        swaps=tuple(life.swaps),
        deals=tuple(life.deals),
        changes=tuple(life.changes),
    )


class _Life:
    """Plays a trade's script once, collecting its states, deals, swaps and ground-truth changes."""

    def __init__(
        self,
        seed: int,
        login: int,
        symbol: int,
        lane: int,
        open_ms: int,
        close_ms: int,
        buy: bool,
        volume: float,
        opener: int,
        magic: int,
        comment: str,
        *,
        kinds: list[str],
        times: list[int],
        draws: list[float],
        offset_ms: int,
    ) -> None:
        self.seed, self.login, self.symbol, self.lane = seed, login, symbol, lane
        self.sym = SYMBOLS[symbol]
        self.open_ms, self.close_ms = open_ms, close_ms
        self.buy0, self.volume0, self.opener, self.magic, self.comment = buy, volume, opener, magic, comment
        self.kinds, self.times, self.draws, self.offset_ms = kinds, times, draws, offset_ms
        self.identifier = ticket_for(open_ms, login, lane)
        self.states: list[tuple[int, PositionState]] = []
        self.deals: list[SimDeal] = []
        self.swaps: list[tuple[int, float]] = []
        self.changes: list[TruthChange] = []

    def _price(self, ms: int) -> float:
        return price_at(self.seed, self.symbol, ms / 1000)

    def _round(self, x: float) -> float:
        return round(x, self.sym.digits)

    def _deal(self, ms: int, buy: bool, entry: int, volume: float, price: float, **extra: Any) -> SimDeal:
        ticket = ticket_for(ms, self.login, self.lane)
        visible = extra.pop("visible_ms", ms)
        fields = dict(
            ticket=ticket,
            order=ticket,
            type=DEAL_TYPE_BUY if buy else DEAL_TYPE_SELL,
            entry=entry,
            volume=volume,
            price=price,
            commission=_commission(volume),
            symbol=self.sym.name,
            position_id=self.identifier,
            magic=self.magic,
            reason=self.opener,
            comment=self.comment,
        )
        fields.update(extra)
        deal = SimDeal(ms, visible, fields)
        self.deals.append(deal)
        return deal

    def _set(self, ms: int, state: PositionState) -> None:
        self.state = state
        self.states.append((ms, state))

    def _change(self, ms: int, kind: str, **data: Any) -> None:
        self.changes.append(TruthChange(ms, self.login, self.identifier, kind, data))

    def place_hit_level(self, hit: str, price: float) -> None:
        """Put the SL or TP that closes the trade at the closing price, from the last moment the
        position's levels were set (open, SL/TP move or reversal) on; nothing else depends on levels."""
        i = max(j for j, c in enumerate(self.changes) if c.kind in ("opened", "sl_tp", "reversal"))
        c = self.changes[i]
        data = dict(c.data, **{hit: price})
        if c.kind == "sl_tp" and (data["old_sl"], data["old_tp"]) == (data["sl"], data["tp"]):
            del self.changes[i]  # the move became a no-op
        else:
            self.changes[i] = replace(c, data=data)
        level: dict[str, Any] = {hit: price}
        self.states = [(ms, replace(st, **level) if ms >= c.time_ms else st) for ms, st in self.states]
        self.state = self.states[-1][1]

    def _levels(self, price: float, buy: bool, d: float) -> tuple[float, float]:
        dist = price * self.sym.volatility * math.sqrt(600.0) * (1.0 + 2.0 * d)
        sign = 1 if buy else -1
        return self._round(price - sign * dist), self._round(price + sign * 1.5 * dist)

    def play(self) -> None:
        """Open, then every scripted action in time order; `close` ends the life."""
        d = iter(self.draws)
        p0 = self._price(self.open_ms)
        sl, tp = self._levels(p0, self.buy0, next(d)) if next(d) < 0.6 else (0.0, 0.0)
        if self.kinds == [] and self.close_ms - self.open_ms < 30_000:
            sl, tp = 0.0, 0.0  # a quick scalp sets no levels
        deal = self._deal(self.open_ms, self.buy0, DEAL_ENTRY_IN, self.volume0, p0)
        state = PositionState(
            self.identifier, self.buy0, self.volume0, p0, sl, tp, self.open_ms, self.open_ms,
            self.magic, self.opener, self.comment, self.identifier,
        )  # fmt: skip
        self._set(self.open_ms, state)
        self._change(
            self.open_ms, "opened", symbol=self.sym.name, buy=self.buy0, type=_type(self.buy0),
            volume=self.volume0, price=p0,
            sl=sl, tp=tp, deal=deal.fields["ticket"],
        )  # fmt: skip
        for kind, ms in zip(self.kinds, self.times, strict=True):
            s = self.state
            price = self._price(ms)
            if kind == "sl_tp":
                new_sl, new_tp = self._levels(price, s.buy, next(d))
                if next(d) < 0.3:
                    new_tp = s.tp  # trail the stop only
                if (new_sl, new_tp) == (s.sl, s.tp):
                    continue
                self._set(ms, replace(s, sl=new_sl, tp=new_tp, update_ms=ms))
                self._change(ms, "sl_tp", old_sl=s.sl, old_tp=s.tp, sl=new_sl, tp=new_tp)
            elif kind == "volume_added":
                add = max(0.01, round(s.volume * (0.3 + 0.7 * next(d)), 2))
                volume = round(s.volume + add, 2)
                avg = self._round((s.volume * s.price_open + add * price) / volume)
                deal = self._deal(ms, s.buy, DEAL_ENTRY_IN, add, price)
                self._set(ms, replace(s, volume=volume, price_open=avg, update_ms=ms))
                self._change(
                    ms, "volume_added", old_volume=s.volume, volume=volume, added=add, price=price,
                    price_open=avg, deal=deal.fields["ticket"],
                )  # fmt: skip
            elif kind == "partial_close":
                if s.volume < 0.02:
                    continue
                part = min(max(0.01, round(s.volume * (0.2 + 0.5 * next(d)), 2)), round(s.volume - 0.01, 2))
                volume = round(s.volume - part, 2)
                profit = round(pnl(self.sym, s.buy, part, s.price_open, price), 2)
                deal = self._deal(ms, not s.buy, DEAL_ENTRY_OUT, part, price, profit=profit)
                self._set(ms, replace(s, volume=volume, update_ms=ms))
                self._change(
                    ms, "partial_close", old_volume=s.volume, volume=volume, closed=part, price=price,
                    profit=profit, deal=deal.fields["ticket"],
                )  # fmt: skip
            elif kind == "reversal":
                new_volume = max(0.01, round(s.volume * (0.5 + next(d)), 2))
                profit = round(pnl(self.sym, s.buy, s.volume, s.price_open, price), 2)
                deal_volume = round(s.volume + new_volume, 2)
                deal = self._deal(ms, not s.buy, DEAL_ENTRY_INOUT, deal_volume, price, profit=profit)
                new_sl, new_tp = (0.0, 0.0)
                self._set(
                    ms,
                    replace(
                        s,
                        buy=not s.buy,
                        volume=new_volume,
                        price_open=price,
                        sl=new_sl,
                        tp=new_tp,
                        update_ms=ms,
                    ),
                )
                self._change(
                    ms, "reversal", old_buy=s.buy, buy=not s.buy, type=_type(not s.buy), old_volume=s.volume,
                    volume=new_volume,
                    price=price, profit=profit, sl=new_sl, tp=new_tp, deal=deal.fields["ticket"],
                )  # fmt: skip

    def close(self, p_close: float, reason: int, comment: str, late_ms: int, reopen: bool) -> None:
        """Swap at each rollover (and, if `reopen`, a new ticket, as brokers that charge swap by reopening
        do: the identifier stays), then the closing deal, possibly visible `late_ms` after the close."""
        volumes = [(ms, st.volume) for ms, st in self.states]
        rollovers = _rollovers(self.open_ms, self.close_ms, self.offset_ms)
        for ms, nights in rollovers:
            i = bisect.bisect_right(volumes, ms, key=lambda v: v[0]) - 1
            st = self.states[i][1]
            rate = self.sym.swap_long if st.buy else self.sym.swap_short
            self.swaps.append((ms, round(rate * st.volume * nights, 2)))
        if reopen and rollovers:
            cuts: list[tuple[int, PositionState | None]] = [(ms, None) for ms, _ in rollovers]
            merged = sorted([*self.states, *cuts], key=lambda x: x[0])
            states: list[tuple[int, PositionState]] = []
            ticket, last = self.identifier, merged[0][1]
            for ms, entry in merged:
                if entry is None:  # a rollover cut: the same state under a new ticket
                    ticket = ticket_for(ms, self.login, self.lane)
                    entry = last
                assert entry is not None
                last = replace(entry, ticket=ticket)
                states.append((ms, last))
            self.states = states
            self.state = states[-1][1]
        s = self.state
        swap = round(sum(a for _, a in self.swaps), 2)
        profit = round(pnl(self.sym, s.buy, s.volume, s.price_open, p_close), 2)
        deal = self._deal(
            self.close_ms, not s.buy, DEAL_ENTRY_OUT, s.volume, p_close, profit=profit, swap=swap,
            reason=reason, comment=comment, visible_ms=self.close_ms + late_ms,
        )  # fmt: skip
        realised = round(sum(x.amount for x in self.deals), 2)
        self._change(
            self.close_ms, "closed", price=p_close, reason=reason, volume=s.volume, profit=profit,
            swap=swap, realised=realised, duration_ms=self.close_ms - self.open_ms,
            deal=deal.fields["ticket"], deal_visible_ms=self.close_ms + late_ms,
        )  # fmt: skip
