"""The detector's state: plain, serialisable, and rebuildable from what a store keeps.

What a store must keep so that a restarted agent catches up and emits nothing twice:
- per account, the last known open positions (the last snapshot's positions, and its `as_of` if it can);
- the trade deals it has seen (all of them, or at least those of positions not yet closed);
- the dedup keys of the events it stored (at least: every `…:closed` key, and every key of positions not
  yet closed).
`DetectorState.from_facts(positions, deals, stored_keys)` rebuilds the state from those. A position that
changed while the agent was down then yields its events at the next poll (its snapshot is compared with
the last known one; its deals are swept from the last deal seen), and nothing already stored is emitted
again (the stored keys are remembered). `to_dict`/`from_dict` is the same state as JSON, for a store that
prefers to keep one document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from agent.analytics.ledger import Trade
from agent.analytics.score import StopChange, trade_of
from agent.domain.trades import Deal, Position
from agent.events.checks import check_deal, check_position
from agent.events.codec import deal_from_dict, deal_to_dict, position_from_dict, position_to_dict
from agent.events.keys import closed_key, key_deal_ticket, key_identifier

STATE_VERSION = 1
LOSSES_KEPT = 64  # per account: the revenge rule looks back 30 minutes, not 64 losses


@dataclass(frozen=True)
class OpenContext:
    """What the account looked like when the detector first saw a trade open (its TRADE_OPENED): the
    synced balance and margin level then, and the losing trade closed just before it (revenge rule).
    Kept for the trade's final score at its close; unknown (None) for a track rebuilt from a store."""

    balance: Decimal | None
    margin_level: float | None
    previous_loss: Trade | None  # that losing trade (None: none)


@dataclass
class PositionTrack:
    """One position (`identifier`) not yet closed: its last sighting in a snapshot (the anchor when its
    opening deal is unknown), the trade deals seen for it, its SL/TP history as sighted (for its score)
    and the account's context at its open."""

    sighting: Position | None = None
    deals: dict[int, Deal] = field(default_factory=dict)  # ticket -> deal
    stops: list[StopChange] = field(default_factory=list)
    at_open: OpenContext | None = None

    def sighted(self, p: Position, when: datetime) -> None:
        """Remember the SL/TP the snapshot shows when they differ from the last ones (`when`: their time)."""
        last = self.stops[-1] if self.stops else None
        if last is None or (last.sl, last.tp) != (p.sl, p.tp):
            self.stops.append(StopChange(when, p.sl, p.tp))


@dataclass
class AccountState:
    as_of: datetime | None = None  # the last snapshot applied (older ones are stale)
    present: set[int] = field(default_factory=set)  # identifiers in that snapshot
    tracks: dict[int, PositionTrack] = field(default_factory=dict)
    closed: dict[int, datetime] = field(default_factory=dict)  # identifier -> close time
    emitted: set[str] = field(default_factory=set)  # keys of events emitted (stored) for open positions
    losses: list[Trade] = field(default_factory=list)  # the last losing trades closed (revenge rule)

    def lost(self, trade: Trade) -> None:
        """Remember a losing closed trade (in closing order; the newest LOSSES_KEPT)."""
        self.losses.append(trade)
        self.losses.sort(key=lambda t: (t.close_time or datetime.min.replace(tzinfo=UTC), t.identifier))
        del self.losses[:-LOSSES_KEPT]

    def track(self, identifier: int) -> PositionTrack:
        t = self.tracks.get(identifier)
        if t is None:
            t = self.tracks[identifier] = PositionTrack()
        return t


@dataclass
class DetectorState:
    accounts: dict[int, AccountState] = field(default_factory=dict)

    def account(self, account: int) -> AccountState:
        a = self.accounts.get(account)
        if a is None:
            a = self.accounts[account] = AccountState()
        return a

    def prune_closed(self, before: datetime) -> int:
        """Forget closed identifiers closed before `before` (their late duplicates are then kept as
        unmatched deals; the store's unique keys still keep their events once). Returns how many."""
        n = 0
        for a in self.accounts.values():
            old = [i for i, t in a.closed.items() if t < before]
            for i in old:
                del a.closed[i]
            n += len(old)
        return n

    # --- serialised form ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "accounts": {
                str(acc): {
                    "as_of": a.as_of.isoformat() if a.as_of else None,
                    "present": sorted(a.present),
                    "closed": {str(i): t.isoformat() for i, t in sorted(a.closed.items())},
                    "emitted": sorted(a.emitted),
                    "tracks": {
                        str(i): {
                            "sighting": position_to_dict(t.sighting) if t.sighting else None,
                            "deals": [deal_to_dict(d) for _, d in sorted(t.deals.items())],
                            "stops": [[c.time.isoformat(), c.sl, c.tp] for c in t.stops],
                            "at_open": _context_to_dict(t.at_open),
                        }
                        for i, t in sorted(a.tracks.items())
                    },
                    "losses": [[deal_to_dict(d) for d in t.deals] for t in a.losses],
                }
                for acc, a in sorted(self.accounts.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"detector state version {data.get('version')!r}, expected {STATE_VERSION}")
        state = cls()
        for acc, a in data["accounts"].items():
            s = state.account(int(acc))
            s.as_of = datetime.fromisoformat(a["as_of"]) if a["as_of"] else None
            s.present = {int(i) for i in a["present"]}
            s.closed = {int(i): datetime.fromisoformat(t) for i, t in a["closed"].items()}
            s.emitted = set(a["emitted"])
            for i, t in a["tracks"].items():
                track = s.track(int(i))
                track.sighting = position_from_dict(t["sighting"]) if t["sighting"] else None
                track.deals = {d.ticket: d for d in map(deal_from_dict, t["deals"])}
                # (absent from a state written before scores were kept)
                track.stops = [
                    StopChange(datetime.fromisoformat(w), sl, tp) for w, sl, tp in t.get("stops", ())
                ]
                track.at_open = _context_from_dict(t.get("at_open"))
            for deals in a.get("losses", ()):
                loss = trade_of([deal_from_dict(d) for d in deals], closed=True)
                if loss is not None:
                    s.losses.append(loss)
        return state

    @classmethod
    def from_facts(
        cls,
        positions: Iterable[Position],
        deals: Iterable[Deal],
        stored_keys: Iterable[str],
        as_of: Mapping[int, datetime] | None = None,
    ) -> DetectorState:
        """The state from what a store keeps (see the module docstring). `positions` are the last known
        open positions of every account; `as_of` the time of those snapshots, where known (unknown: a
        position stays 'present' until the next snapshot says otherwise)."""
        state = cls()
        keys_by_account: dict[int, list[str]] = {}
        for k in stored_keys:
            head = k.split(":", 1)[0]
            if head.lstrip("-").isdigit():
                keys_by_account.setdefault(int(head), []).append(k)
        deals_by_account: dict[int, list[Deal]] = {}
        for d in deals:
            checked, _ = check_deal(d)
            if checked is not None:
                deals_by_account.setdefault(checked.account, []).append(checked)
        for acc, keys in keys_by_account.items():
            a = state.account(acc)
            closed = {i for k in keys if (i := key_identifier(k)) is not None and k == closed_key(acc, i)}
            last_time: dict[int, datetime] = {}
            for d in deals_by_account.get(acc, ()):
                if d.position_id in closed:
                    t = last_time.get(d.position_id)
                    last_time[d.position_id] = d.time if t is None or d.time > t else t
            a.closed = {i: last_time.get(i, datetime.min.replace(tzinfo=UTC)) for i in closed}
            closed_tickets = {d.ticket for d in deals_by_account.get(acc, ()) if d.position_id in closed}
            a.emitted = {
                k
                for k in keys
                if key_identifier(k) not in closed and key_deal_ticket(k) not in closed_tickets
            }
        for acc, account_deals in deals_by_account.items():
            a = state.account(acc)
            closed_deals: dict[int, list[Deal]] = {}
            for d in account_deals:
                if d.position_id not in a.closed:
                    a.track(d.position_id).deals[d.ticket] = d
                else:
                    closed_deals.setdefault(d.position_id, []).append(d)
            for trade_deals in closed_deals.values():  # the losses the revenge rule looks back on
                trade = trade_of(trade_deals, closed=True)
                if trade is not None and trade.complete and trade.result < 0:
                    a.lost(trade)
        for p in positions:
            pos, _ = check_position(p)
            if pos is None:
                continue
            a = state.account(pos.account)
            if pos.identifier in a.closed:
                continue
            track = a.track(pos.identifier)
            track.sighting = pos
            track.sighted(pos, max(pos.time, pos.time_update))
            a.present.add(pos.identifier)
        for acc, t in (as_of or {}).items():
            state.account(acc).as_of = t
        return state


def _context_to_dict(c: OpenContext | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "balance": None if c.balance is None else str(c.balance),
        "margin_level": c.margin_level,
        "previous_loss": None
        if c.previous_loss is None
        else [deal_to_dict(d) for d in c.previous_loss.deals],
    }


def _context_from_dict(d: Mapping[str, Any] | None) -> OpenContext | None:
    if d is None:
        return None
    balance, loss = d.get("balance"), d.get("previous_loss")
    previous = None if loss is None else trade_of([deal_from_dict(x) for x in loss], closed=True)
    return OpenContext(None if balance is None else Decimal(balance), d.get("margin_level"), previous)
