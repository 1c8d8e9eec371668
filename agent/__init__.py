"""mt5-monitor agent: syncs MT5 accounts from a bridge into a store and exposes them."""

__version__ = "0.1.0"
