"""The detector: per account, successive position snapshots plus sweeps of deals become trade events.

How each case of DESIGN.md 11's table is decided (all from the terminal's own facts, so that the same
inputs in any grouping give the same events and the same dedup keys):
- A position's deals are kept in a ledger (by ticket: duplicated or overlapping sweeps add nothing) and
  walked in (time, ticket) order as a signed volume (BUY deals +volume, SELL deals -volume).
- Its opening deal is the IN deal whose order is the position identifier (MT5: the identifier is the ticket
  of the order that opened it); failing that, the earliest IN deal within a second of the open time seen.
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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

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
from agent.events.state import AccountState, DetectorState, PositionTrack

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

    def __call__(
        self, identifier: int, type_: EventType, key: str, time: datetime, symbol: str, data: dict[str, Any]
    ) -> None:
        if key in self.state.emitted:
            return
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
    ) -> list[TradeEvent]:
        """One poll round of one account: a deal sweep and/or a positions snapshot. Sweep the deals
        before reading the snapshot (then a deal seen is never newer than the snapshot, and partial
        closes and closes are decided in the same round). Returns the new events in terminal-time order."""
        self.rejected = []
        a = self.state.account(account)
        emit = _Emit(account, a, detected_at, [])
        for d in deals:
            self._add_deal(account, a, d)
        if snapshot is not None:
            self._apply_snapshot(account, a, snapshot, emit)
        for identifier in sorted(a.tracks):
            self._resolve(account, a, identifier, emit)
        emit.events.sort(key=lambda e: e.time)
        return emit.events

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
            if prev is None or (prev.sl, prev.tp) == (p.sl, p.tp):
                continue
            changes = {
                f: [getattr(prev, f), getattr(p, f)]
                for f in ("sl", "tp")
                if getattr(prev, f) != getattr(p, f)
            }
            time = p.time_update if p.time_update != prev.time_update else as_of
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
        if track.sighting is None or first.time - track.sighting.time <= OPEN_TIME_SLACK:  # (no overflow)
            return first
        return None

    @staticmethod
    def _lived_after(a: AccountState, identifier: int, track: PositionTrack, d: Deal) -> bool:
        """A snapshot at or after the deal showed the position still open."""
        if identifier in a.present and a.as_of is not None and a.as_of >= d.time:
            return True
        return track.sighting is not None and track.sighting.time_update >= d.time

    def _resolve(self, account: int, a: AccountState, identifier: int, emit: _Emit) -> None:
        track = a.tracks[identifier]
        ordered = sorted(track.deals.values(), key=lambda d: (d.time, d.ticket))
        opening = self._opening(track, ordered)
        sighting = track.sighting
        if opening is not None or sighting is not None:
            self._emit_opened(account, identifier, opening, sighting, emit)
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
    ) -> None:
        key = opened_key(account, identifier)
        if key in emit.state.emitted:
            return
        if opening is not None:
            time, symbol = opening.time, opening.symbol
            data = {"side": _deal_side(opening), "volume": opening.volume, "price_open": opening.price}
        elif sighting is not None:
            time, symbol = sighting.time, sighting.symbol
            data = {"side": _pos_side(sighting), "volume": sighting.volume, "price_open": sighting.price_open}
        else:
            return
        data |= {
            "symbol": symbol,
            "sl": sighting.sl if sighting else None,  # None: not known yet (seen from its deal alone)
            "tp": sighting.tp if sighting else None,
            "time": time.isoformat(),
        }
        emit(identifier, EventType.TRADE_OPENED, key, time, symbol, data)

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
        emit(
            identifier, EventType.TRADE_CLOSED, closed_key(account, identifier), last.time, last.symbol, data
        )
        # closed: forget the position, keep its identifier (late duplicates of its deals are ignored)
        a.closed[identifier] = last.time
        a.present.discard(identifier)
        del a.tracks[identifier]
        prefix = f"{account}:{identifier}:"
        tickets = {deal_key(account, d.ticket) for d in ordered}
        a.emitted = {k for k in a.emitted if not k.startswith(prefix) and k not in tickets}
