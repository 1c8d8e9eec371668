"""Trade analytics (DESIGN.md section 12): pure computations over an account's deals, stored events and
positions, with no I/O. Imports the domain only, so the API, the poller and a bench can all use it."""

from agent.analytics.ledger import BalanceOperation, Ledger, Trade
from agent.analytics.stats import Analytics, DayFigures, EquitySample, compute

__all__ = ["Analytics", "BalanceOperation", "DayFigures", "EquitySample", "Ledger", "Trade", "compute"]
