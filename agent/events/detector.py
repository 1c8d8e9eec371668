"""The detector: per account, successive position snapshots plus sweeps of deals become trade events.

How each case of DESIGN.md 11's table is decided (all from the terminal's own facts, so that the same
inputs in any grouping give the same events and the same dedup keys):
- A position's deals are kept in a ledger (by ticket: duplicated or overlapping sweeps add nothing) and
  walked in (time, ticket) order as a signed volume (BUY deals +volume, SELL deals -volume).
- Its opening deal is the IN deal whose order is the position identifier (MT5: the identifier is the ticket
  of the order that opened it); from a source without order tickets (order 0), the earliest IN deal within
  a second of the open time seen.
  TRADE_OPENED comes from that deal or from the first snapshot showing the identifier, whichever is first.
- Every other IN deal is a volume_added, an INOUT deal a reversal, both certain as soon as they are seen.
  An OUT (or OUT_BY) deal that leaves volume is a partial_close once it is certain the position lived on
  after it (a later deal of the position, or a snapshot at or after it still showing the position);
  otherwise it waits (it may be the close, with an earlier deal still to come).
- TRADE_CLOSED: the signed volume returns to zero on an OUT deal and the identifier is gone (not in the
  last snapshot, or that snapshot predates the deal). A position gone whose deals do not cover its volume
  waits for them (a late closing deal). When the opening deal is unknown (history swept too late), the
  last snapshot showing the position anchors the walk.
- sl_tp: sl or tp differ between two snapshots showing the position (the first sighting is the baseline).

Deals for an unknown position are kept and matched later. Balance operations are ignored. Inconsistent
input is set aside with a reason (`rejected`), never raised.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from agent.analytics.score import (
    TradeFacts,
    TradeScore,
    facts_for_position,
    facts_for_trade,
    latest_loss,
    r_multiple_reason,
    score,
    score_at_open,
    score_json,
    trade_of,
)
from agent.domain.accounts import AccountValues
from agent.domain.trades import (
    Deal,
    DealEntry,
    DealType,
    EventType,
    Position,
    PositionsSnapshot,
    PositionType,
    TradeEvent,
    UpdateChange,
)
from agent.events.checks import check_deal, check_position, utc
from agent.events.keys import closed_key, deal_key, opened_key, sltp_key
from agent.events.state import AccountState, DetectorState, OpenContext, PositionTrack

OPEN_TIME_SLACK = timedelta(seconds=1)  # deal times carry ms, a position's open time may be whole seconds
ZERO = Decimal(0)
OUT_ENTRIES = (int(DealEntry.OUT), int(DealEntry.OUT_BY))


def exact(x: float) -> Decimal:
    """A float as the decimal it was written as (0.1 -> 0.1), so sums of volumes and money are exact."""
    return Decimal(repr(float(x)))


def signed(d: Deal) -> Decimal:
    return exact(d.volume) if int(d.type) == int(DealType.BUY) else -exact(d.volume)


def side(v: Decimal) -> str | None:
    return "buy" if v > 0 else "sell" if v < 0 else None


def _deal_side(d: Deal) -> str:
    return "buy" if int(d.type) == int(DealType.BUY) else "sell"


def _pos_side(p: Position) -> str:
    return "buy" if int(p.type) == int(PositionType.BUY) else "sell"


def _num(v: Decimal | None) -> float | None:
    return None if v is None else float(abs(v))


@dataclass
class _Emit:
    """The events of one observation, each key once."""

    account: int
    state: AccountState
    detected_at: datetime
    events: list[TradeEvent]
    # what each TRADE_OPENED / TRADE_CLOSED of the round adds to its data (its score), run once every
    # position of the round is resolved (a loss closed this round counts for a trade opened after it)
    scorers: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)

    def __call__(
        self, identifier: int, type_: EventType, key: str, time: datetime, symbol: str, data: dict[str, Any]
    ) -> bool:
        if key in self.state.emitted:
            return False
        self.state.emitted.add(key)
        self.events.append(
            TradeEvent(
                account=self.account,
                identifier=identifier,
                type=type_,
                dedup_key=key,
                time=time,
                detected_at=self.detected_at,
                symbol=symbol,
                data=data,
            )
        )
        return True


class Detector:
    """Turns observations into events. Not thread-safe: one poller per account set drives it."""

    def __init__(self, state: DetectorState | None = None) -> None:
        self.state = state if state is not None else DetectorState()
        self.rejected: list[str] = []  # why inputs were set aside by the last `observe`

    def observe(
        self,
        account: int,
        *,
        snapshot: PositionsSnapshot | None = None,
        deals: Iterable[Deal] = (),
        detected_at: datetime,
        values: AccountValues | None = None,
    ) -> list[TradeEvent]:
        """One poll round of one account: a deal sweep and/or a positions snapshot. Sweep the deals
        before reading the snapshot (then a deal seen is never newer than the snapshot, and partial
        closes and closes are decided in the same round). `values`: the account's synced values at
        detection (balance, margin level), for the scores. Returns the new events in terminal-time order."""
        self.rejected = []
        a = self.state.account(account)
        emit = _Emit(account, a, detected_at, [])
        for d in deals:
            self._add_deal(account, a, d)
        if snapshot is not None:
            self._apply_snapshot(account, a, snapshot, emit)
        for identifier in sorted(a.tracks):
            self._resolve(account, a, identifier, emit, values)
        if emit.scorers:
            emit.events = [self._scored(e, emit.scorers.get(e.dedup_key)) for e in emit.events]
        emit.events.sort(key=lambda e: e.time)
        return emit.events

    def _scored(self, e: TradeEvent, scorer: Callable[[], dict[str, Any]] | None) -> TradeEvent:
        """The event with its score in its data (payload, not identity: the dedup key is unchanged)."""
        if scorer is None:
            return e
        try:
            extra = scorer()
        except (ArithmeticError, ValueError, TypeError) as exc:  # the detector stays total
            self.rejected.append(f"score of {e.identifier}: {type(exc).__name__}")
            extra = {"score": {"score": None, "rules": [], "complete": False}}
            if e.type is EventType.TRADE_CLOSED:
                extra |= {"r_multiple": None, "r_multiple_reason": "not_scored"}
        return replace(e, data={**e.data, **extra})

    # --- inputs ---------------------------------------------------------------------------------------

    def _add_deal(self, account: int, a: AccountState, d: Deal) -> None:
        if d.account != account:
            self.rejected.append(f"deal {d.ticket}: account {d.account}, expected {account}")
            return
        checked, why = check_deal(d)
        if checked is None:
            if why:
                self.rejected.append(why)
            return
        if checked.position_id in a.closed:
            return  # a late duplicate of a closed position's deal
        a.track(checked.position_id).deals.setdefault(checked.ticket, checked)

    def _apply_snapshot(self, account: int, a: AccountState, snap: PositionsSnapshot, emit: _Emit) -> None:
        if snap.account != account:
            self.rejected.append(f"snapshot of account {snap.account}, expected {account}")
            return
        try:
            as_of = utc(snap.as_of)
        except (OverflowError, ValueError):
            self.rejected.append("snapshot: as_of out of range")
            return
        if a.as_of is not None and as_of < a.as_of:
            self.rejected.append(f"snapshot as of {as_of.isoformat()} older than {a.as_of.isoformat()}")
            return
        present: set[int] = set()
        for raw in snap.positions:
            if raw.account != account:
                self.rejected.append(f"position {raw.identifier}: account {raw.account}, expected {account}")
                continue
            p, why = check_position(raw)
            if p is None:
                self.rejected.append(why or "position set aside")
                if raw.identifier > 0 and raw.identifier in a.tracks:
                    present.add(raw.identifier)  # still there; its last good sighting stands
                continue
            if p.identifier in present:
                self.rejected.append(f"position {p.identifier}: twice in one snapshot (the first stands)")
                continue
            if p.identifier in a.closed:
                continue
            present.add(p.identifier)
            track = a.track(p.identifier)
            prev = track.sighting
            track.sighting = p
            if prev is None:
                # the baseline. Before its TRADE_OPENED, which carries these SL/TP as the open's (as the
                # analytics read the stored events: one stop history for both); after it (opened from its
                # deal alone), as of the position's last update
                seen_open = opened_key(account, p.identifier) not in a.emitted
                track.sighted(p, p.time if seen_open else max(p.time, p.time_update))
                continue
            if (prev.sl, prev.tp) == (p.sl, p.tp):
                continue
            changes = {
                f: [getattr(prev, f), getattr(p, f)]
                for f in ("sl", "tp")
                if getattr(prev, f) != getattr(p, f)
            }
            time = p.time_update if p.time_update != prev.time_update else as_of
            track.sighted(p, time)
            emit(
                p.identifier,
                EventType.TRADE_UPDATED,
                sltp_key(account, p.identifier, p.time_update, p.sl, p.tp),
                time,
                p.symbol,
                {"change": UpdateChange.SL_TP.value, "changes": changes, "sl": p.sl, "tp": p.tp},
            )
        a.present = present
        a.as_of = as_of

    # --- decisions ------------------------------------------------------------------------------------

    @staticmethod
    def _opening(track: PositionTrack, ordered: list[Deal]) -> Deal | None:
        ins = [d for d in ordered if int(d.entry) == int(DealEntry.IN)]
        for d in ins:
            if d.order == d.position_id:
                return d
        if not ins:
            return None
        first = ins[0]
        if first.order:
            # the source gives orders, and no IN deal is the opening order's: the opening lies before the
            # deals swept (a first sweep's window cut through the trade); a scale-in is no opening
            return None
        if track.sighting is None or first.time - track.sighting.time <= OPEN_TIME_SLACK:  # (no overflow)
            return first
        return None

    @staticmethod
    def _lived_after(a: AccountState, identifier: int, track: PositionTrack, d: Deal) -> bool:
        """A snapshot at or after the deal showed the position still open."""
        if identifier in a.present and a.as_of is not None and a.as_of >= d.time:
            return True
        return track.sighting is not None and track.sighting.time_update >= d.time

    def _resolve(
        self, account: int, a: AccountState, identifier: int, emit: _Emit, values: AccountValues | None
    ) -> None:
        track = a.tracks[identifier]
        ordered = sorted(track.deals.values(), key=lambda d: (d.time, d.ticket))
        opening = self._opening(track, ordered)
        sighting = track.sighting
        if opening is not None or sighting is not None:
            if self._emit_opened(account, identifier, opening, sighting, emit):
                emit.scorers[opened_key(account, identifier)] = functools.partial(
                    _score_opened, a, track, identifier, opening, sighting, values
                )
        if opening is not None:
            # deals dated before the opening deal (inconsistent) count in the P&L but are not walked
            start, walk = ZERO, ordered[ordered.index(opening) :]
        elif sighting is not None:
            # anchor: the sighting reflects every deal up to its time_update
            at = (
                exact(sighting.volume)
                if int(sighting.type) == int(PositionType.BUY)
                else -exact(sighting.volume)
            )
            start = at - sum((signed(d) for d in ordered if d.time <= sighting.time_update), ZERO)
            walk = ordered
        else:
            return  # only OUT/INOUT deals of an unknown position: kept until matched
        net = start
        for i, d in enumerate(walk):
            before, net = net, net + signed(d)
            if d is opening:
                continue
            entry = int(d.entry)
            later = i < len(walk) - 1
            base = {"deal": d.ticket, "price": d.price, "volume": d.volume, "reason": int(d.reason)}
            if entry == int(DealEntry.IN):
                data = {
                    "change": UpdateChange.VOLUME_ADDED.value,
                    "changes": {"volume": [_num(before), _num(net)]},
                }
            elif entry == int(DealEntry.INOUT):
                data = {
                    "change": UpdateChange.REVERSAL.value,
                    "changes": {"side": [side(before), side(net)], "volume": [_num(before), _num(net)]},
                }
            elif net != ZERO and (later or self._lived_after(a, identifier, track, d)):
                data = {
                    "change": UpdateChange.PARTIAL_CLOSE.value,
                    "changes": {"volume": [_num(before), _num(net)]},
                }
            else:
                continue
            emit(
                identifier,
                EventType.TRADE_UPDATED,
                deal_key(account, d.ticket),
                d.time,
                d.symbol,
                base | data,
            )
        if not walk or net != ZERO or int(walk[-1].entry) not in OUT_ENTRIES:
            return
        last = walk[-1]
        if identifier in a.present and (a.as_of is None or a.as_of >= last.time):
            return  # the last snapshot still shows it: wait until it is gone
        self._emit_closed(account, a, identifier, track, opening, ordered, emit)

    @staticmethod
    def _emit_opened(
        account: int, identifier: int, opening: Deal | None, sighting: Position | None, emit: _Emit
    ) -> bool:
        key = opened_key(account, identifier)
        if key in emit.state.emitted:
            return False
        if opening is not None:
            time, symbol = opening.time, opening.symbol
            data = {"side": _deal_side(opening), "volume": opening.volume, "price_open": opening.price}
        elif sighting is not None:
            time, symbol = sighting.time, sighting.symbol
            data = {"side": _pos_side(sighting), "volume": sighting.volume, "price_open": sighting.price_open}
        else:
            return False
        data |= {
            "symbol": symbol,
            "sl": sighting.sl if sighting else None,  # None: not known yet (seen from its deal alone)
            "tp": sighting.tp if sighting else None,
            "time": time.isoformat(),
        }
        return emit(identifier, EventType.TRADE_OPENED, key, time, symbol, data)

    @staticmethod
    def _emit_closed(
        account: int,
        a: AccountState,
        identifier: int,
        track: PositionTrack,
        opening: Deal | None,
        ordered: list[Deal],
        emit: _Emit,
    ) -> None:
        last = ordered[-1]
        pnl = sum(
            (exact(d.profit) + exact(d.commission) + exact(d.swap) + exact(d.fee) for d in ordered), ZERO
        )
        opened_at = opening.time if opening else track.sighting.time if track.sighting else None
        data = {
            "symbol": last.symbol,
            "side": "sell" if int(last.type) == int(DealType.BUY) else "buy",
            "close_price": last.price,
            "close_reason": int(last.reason),
            "close_volume": last.volume,
            "pnl": float(pnl),
            "pnl_exact": str(pnl),
            "pnl_complete": opening is not None,  # False: the opening deal was never seen
            "open_time": opened_at.isoformat() if opened_at else None,
            "close_time": last.time.isoformat(),
            "duration_s": (last.time - opened_at).total_seconds() if opened_at else None,
            "deals": [d.ticket for d in ordered],
        }
        key = closed_key(account, identifier)
        if emit(identifier, EventType.TRADE_CLOSED, key, last.time, last.symbol, data):
            trade = trade_of(ordered, closed=True)
            if trade is not None and trade.complete and trade.result < 0:
                a.lost(trade)  # at once: a trade opened after it, resolved later this round, sees it
            emit.scorers[key] = functools.partial(_score_closed, a, track, identifier, ordered)
        # closed: forget the position, keep its identifier (late duplicates of its deals are ignored)
        a.closed[identifier] = last.time
        a.present.discard(identifier)
        del a.tracks[identifier]
        prefix = f"{account}:{identifier}:"
        tickets = {deal_key(account, d.ticket) for d in ordered}
        a.emitted = {k for k in a.emitted if not k.startswith(prefix) and k not in tickets}


# --- scores (agent/analytics/score.py's rules, from what the detector holds: no store read) ---------------


def _context(a: AccountState, opened: datetime, identifier: int, values: AccountValues | None) -> OpenContext:
    """The account at a trade's open, as the detector knows it: its synced values at detection. A margin
    level with no margin in use is the terminal's 0 of an account without positions: a sync before this
    open, so the level after it is not known."""
    balance = margin_level = None
    if values is not None:
        balance = exact(values.balance) if math.isfinite(values.balance) else None
        level, margin = values.margin_level, values.margin
        if level is not None and math.isfinite(level) and level > 0 and (margin is None or margin > 0):
            margin_level = level
    return OpenContext(balance, margin_level, latest_loss(a.losses, opened, identifier))


def _score_opened(
    a: AccountState,
    track: PositionTrack,
    identifier: int,
    opening: Deal | None,
    sighting: Position | None,
    values: AccountValues | None,
) -> dict[str, Any]:
    """TRADE_OPENED's live score: the rules that can be judged at the open."""
    opened = opening.time if opening is not None else sighting.time if sighting is not None else None
    assert opened is not None
    ctx = track.at_open = _context(a, opened, identifier, values)
    facts: TradeFacts | None = None
    if sighting is not None:
        p = replace(sighting, type=PositionType(int(sighting.type)))
        facts = facts_for_position(
            p,
            track.stops,
            balance_at_open=ctx.balance,
            margin_level=ctx.margin_level,
            previous_loss=ctx.previous_loss,
        )
    else:
        trade = trade_of([opening] if opening is not None else [], closed=False)
        assert trade is not None
        facts = facts_for_trade(
            trade,
            track.stops,
            balance_at_open=ctx.balance,
            margin_level_after_open=ctx.margin_level,
            previous_loss=ctx.previous_loss,
        )
    return {"score": score_json(score_at_open(facts))}


def _score_closed(
    a: AccountState, track: PositionTrack, identifier: int, ordered: list[Deal]
) -> dict[str, Any]:
    """TRADE_CLOSED's final score (every rule) and, beside it, the R-multiple. The balance and margin level
    are those at its open (unknown for a trade opened before the detector was rebuilt from a store)."""
    trade = trade_of(ordered, closed=True)
    if trade is None:
        raise ValueError("no trade deal")
    ctx = track.at_open
    facts = facts_for_trade(
        trade,
        track.stops,
        balance_at_open=ctx.balance if ctx else None,
        margin_level_after_open=ctx.margin_level if ctx else None,
        previous_loss=ctx.previous_loss if ctx else latest_loss(a.losses, trade.open_time, identifier),
    )
    s: TradeScore = score(facts)
    return {
        "score": score_json(s),
        "r_multiple": s.r_multiple,
        "r_multiple_reason": r_multiple_reason(facts, s),
    }
