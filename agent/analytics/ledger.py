"""Trades and the balance from an account's deals (DESIGN.md sections 11 and 12).

A trade is a position identifier: its deals (IN, OUT, INOUT reversal, OUT_BY) are grouped by
`position_id`, and its result is the sum of profit + commission + swap + fee over all of them. Every
deal that is not a BUY or SELL is a balance operation (deposit, withdrawal, credit, charge...), never a
trade. The balance is the running sum of every deal's result from an anchor (the balance before the
first deal given), so it is the terminal's own balance as long as the deals are complete.

A `Ledger` takes deals in (time, ticket) order, in as many batches as wanted (`add`): a poller can feed
it each new deal, and what is already known is never recomputed. Its `index` (`ClosedIndex`) keeps prefix
sums over the closed trades, extended on demand by the trades closed since: the figures of any range,
and its per-day sums (any UTC offset), are differences of two prefix sums found by bisecting the close
times, so a warm answer does not walk 100,000 deals (DESIGN.md section 12, bench/analytics.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.analytics.money import Units, to_units
from agent.domain.trades import Deal, DealEntry, DealType, PositionType

VOLUME_SCALE = 100_000_000  # volumes as integers of 1e-8 lot: exact comparisons of what is still open


def volume_units(volume: float) -> int:
    return round(volume * VOLUME_SCALE)


@dataclass(slots=True)
class Trade:
    """One position identifier's deals and what they add up to. `side` is the direction it was opened
    in (a reversal keeps the identifier, and the trade's side stays the opening one); None when its
    opening deal is not among the deals given (`complete` False)."""

    identifier: int
    symbol: str
    side: PositionType | None
    open_time: datetime
    complete: bool
    deals: list[Deal] = field(default_factory=list)
    open_volume: int = 0  # volume units still open (negative: its opening deal is missing)
    max_volume: int = 0
    result: Units = 0
    profit: Units = 0
    commission: Units = 0
    swap: Units = 0
    fee: Units = 0
    close_time: datetime | None = None
    close_reason: int | None = None
    balance_after_close: Units | None = None

    @property
    def closed(self) -> bool:
        return self.close_time is not None

    @property
    def balance_before(self) -> Units | None:
        """The balance the trade's result is measured against: after its close, minus its result."""
        return None if self.balance_after_close is None else self.balance_after_close - self.result

    @property
    def duration_seconds(self) -> float | None:
        return None if self.close_time is None else (self.close_time - self.open_time).total_seconds()


@dataclass(frozen=True, slots=True)
class BalanceOperation:
    ticket: int
    time: datetime
    type: DealType
    amount: Units  # signed: a deposit is positive, a withdrawal negative


_US = timedelta(microseconds=1)


class ClosedIndex:
    """Prefix sums over a ledger's closed trades in closing order: entry `i` of each `cum_*` list is the sum
    over the first `i` trades (so a range [a, b) is `cum[b] - cum[a]`), plus per-trade results and the
    lengths of the win and loss runs ending at each trade (streaks). Extended by `extend` with the trades
    closed since (a closed trade never changes, only its balance moves with a rebase: `returns` are
    dropped then and built again)."""

    __slots__ = (
        "cum_commission", "cum_complete", "cum_fee", "cum_gross_loss", "cum_gross_profit", "cum_held_us",
        "cum_long", "cum_long_won", "cum_lost", "cum_nonpositive", "cum_result", "cum_short",
        "cum_short_won", "cum_swap", "cum_won", "incomplete", "loss_run", "results", "returns", "win_run",
    )  # fmt: skip

    def __init__(self) -> None:
        self.results: list[Units] = []
        self.cum_result: list[Units] = [0]
        self.cum_gross_profit: list[Units] = [0]
        self.cum_gross_loss: list[Units] = [0]  # positive
        self.cum_won: list[int] = [0]
        self.cum_lost: list[int] = [0]
        self.cum_commission: list[Units] = [0]
        self.cum_swap: list[Units] = [0]
        self.cum_fee: list[Units] = [0]
        self.cum_long: list[int] = [0]
        self.cum_long_won: list[int] = [0]
        self.cum_short: list[int] = [0]
        self.cum_short_won: list[int] = [0]
        self.cum_complete: list[int] = [0]
        self.cum_held_us: list[int] = [0]  # microseconds held, trades with their opening deal
        self.win_run: list[int] = []  # trades won in a row, ending at this one (0: not won)
        self.loss_run: list[int] = []
        self.incomplete: list[int] = []  # indices of trades whose opening deal is missing
        self.returns: list[float] = []  # result / balance before (0.0 where that balance is <= 0)
        self.cum_nonpositive: list[int] = [0]  # trades whose balance before is <= 0 (no return)

    def extend(self, closed: list[Trade]) -> None:
        """Take in the trades closed since the last call (and the returns, after a rebase dropped them)."""
        n = len(self.results)
        if n < len(closed):
            self._extend_sums(closed, n)
        m = len(self.returns)
        if m < len(closed):
            self._extend_returns(closed, m)

    def _extend_sums(self, closed: list[Trade], start: int) -> None:
        results, buy, sell = self.results, PositionType.BUY, PositionType.SELL
        result_sum, gp, gl = self.cum_result[-1], self.cum_gross_profit[-1], self.cum_gross_loss[-1]
        won, lost, comm, swap, fee = (
            self.cum_won[-1], self.cum_lost[-1], self.cum_commission[-1], self.cum_swap[-1], self.cum_fee[-1]
        )  # fmt: skip
        longs, long_won, shorts, short_won = (
            self.cum_long[-1], self.cum_long_won[-1], self.cum_short[-1], self.cum_short_won[-1]
        )  # fmt: skip
        complete, held = self.cum_complete[-1], self.cum_held_us[-1]
        win_run = self.win_run[-1] if self.win_run else 0
        loss_run = self.loss_run[-1] if self.loss_run else 0
        for i in range(start, len(closed)):
            t = closed[i]
            r = t.result
            results.append(r)
            result_sum += r
            if r > 0:
                gp += r
                won += 1
                win_run, loss_run = win_run + 1, 0
            elif r < 0:
                gl -= r
                lost += 1
                win_run, loss_run = 0, loss_run + 1
            else:
                win_run = loss_run = 0
            comm += t.commission
            swap += t.swap
            fee += t.fee
            if t.side is buy:
                longs += 1
                long_won += r > 0
            elif t.side is sell:
                shorts += 1
                short_won += r > 0
            if t.complete and t.close_time is not None:
                complete += 1
                held += (t.close_time - t.open_time) // _US
            else:
                self.incomplete.append(i)
            self.cum_result.append(result_sum)
            self.cum_gross_profit.append(gp)
            self.cum_gross_loss.append(gl)
            self.cum_won.append(won)
            self.cum_lost.append(lost)
            self.cum_commission.append(comm)
            self.cum_swap.append(swap)
            self.cum_fee.append(fee)
            self.cum_long.append(longs)
            self.cum_long_won.append(long_won)
            self.cum_short.append(shorts)
            self.cum_short_won.append(short_won)
            self.cum_complete.append(complete)
            self.cum_held_us.append(held)
            self.win_run.append(win_run)
            self.loss_run.append(loss_run)

    def _extend_returns(self, closed: list[Trade], start: int) -> None:
        returns, cum = self.returns, self.cum_nonpositive
        bad = cum[-1]
        for i in range(start, len(closed)):
            t = closed[i]
            base = t.balance_before
            if base is None or base <= 0:
                bad += 1
                returns.append(0.0)
            else:
                returns.append(float(t.result / base))  # int / int: correctly rounded
            cum.append(bad)

    def drop_returns(self) -> None:
        self.returns, self.cum_nonpositive = [], [0]


class Ledger:
    """Trades and balance of one account, built from its deals in (time, ticket) order."""

    def __init__(self, opening_balance: Units = 0) -> None:
        self.opening_balance: Units = opening_balance
        self.balance: Units = opening_balance
        self.trades: dict[int, Trade] = {}
        self.closed: list[Trade] = []  # in closing order
        self.close_times: list[datetime] = []  # of `closed`, for bisecting
        self.close_epochs: list[float] = []  # the same as POSIX seconds (day arithmetic)
        self.operations: list[BalanceOperation] = []
        self.times: list[datetime] = []  # every deal's time, and the balance after it
        self.balances: list[Units] = []
        self._last: tuple[datetime, int] | None = None
        self._index = ClosedIndex()

    @property
    def index(self) -> ClosedIndex:
        """The prefix sums over `closed`, brought up to date (the trades closed since the last call)."""
        self._index.extend(self.closed)
        return self._index

    def add(self, deals: Iterable[Deal]) -> list[Trade]:
        """Take the next deals (each later than, or after by ticket, the last one taken); return the
        trades they closed. ValueError for a deal out of order: the balance would be wrong."""
        closed: list[Trade] = []
        trades, times, balances, operations = self.trades, self.times, self.balances, self.operations
        units, buy, sell, in_, inout = to_units, DealType.BUY, DealType.SELL, DealEntry.IN, DealEntry.INOUT
        balance = self.balance
        last_time, last_ticket = self._last if self._last is not None else (None, 0)
        for d in deals:  # the hot loop of a 100,000-deal history: locals, no helper calls for zeros
            time, ticket = d.time, d.ticket
            if last_time is not None and (time < last_time or (time == last_time and ticket <= last_ticket)):
                raise ValueError(f"deal {ticket} at {time.isoformat()} is not after the last one taken")
            last_time, last_ticket = time, ticket
            profit = units(d.profit) if d.profit else 0
            commission = units(d.commission) if d.commission else 0
            swap = units(d.swap) if d.swap else 0
            fee = units(d.fee) if d.fee else 0
            result = profit + commission + swap + fee
            balance += result
            times.append(time)
            balances.append(balance)
            kind = d.type
            if kind is not buy and kind is not sell:
                operations.append(BalanceOperation(ticket, time, kind, result))
                continue
            entry = d.entry
            trade = trades.get(d.position_id)
            if trade is None or trade.close_time is not None:
                side = (PositionType.BUY if kind is buy else PositionType.SELL) if entry is in_ else None
                trade = Trade(d.position_id, d.symbol, side, time, complete=entry is in_)
                trades[d.position_id] = trade
            trade.deals.append(d)
            trade.result += result
            if profit:
                trade.profit += profit
            if commission:
                trade.commission += commission
            if swap:
                trade.swap += swap
            if fee:
                trade.fee += fee
            volume = round(d.volume * VOLUME_SCALE)
            if entry is in_:
                trade.open_volume += volume
                if trade.open_volume > trade.max_volume:
                    trade.max_volume = trade.open_volume
                continue
            if entry is inout:  # closes what is open, opens the rest the other way
                trade.open_volume = volume - trade.open_volume
                if trade.open_volume > trade.max_volume:
                    trade.max_volume = trade.open_volume
            else:
                trade.open_volume -= volume
            if trade.open_volume <= 0:
                trade.close_time = time
                trade.close_reason = d.reason
                trade.balance_after_close = balance
                self.closed.append(trade)
                self.close_times.append(time)
                self.close_epochs.append(time.timestamp())
                closed.append(trade)
        self.balance = balance
        if last_time is not None:
            self._last = (last_time, last_ticket)
        return closed

    def rebase(self, opening_balance: Units) -> None:
        """Measure every balance from another opening balance (a new anchor: the synced balance moved)."""
        delta = opening_balance - self.opening_balance
        if not delta:
            return
        self.opening_balance, self.balance = opening_balance, self.balance + delta
        self.balances = [b + delta for b in self.balances]
        for t in self.closed:
            if t.balance_after_close is not None:
                t.balance_after_close += delta
        self._index.drop_returns()  # measured against the balances: built again on demand

    @property
    def last(self) -> tuple[datetime, int] | None:
        """(time, ticket) of the last deal taken: the next must come after it."""
        return self._last

    def open_trades(self) -> list[Trade]:
        return [t for t in self.trades.values() if not t.closed]
