"""The MT5 bridge: reads MetaTrader 5 terminals (real or simulated) and serves them as a JSON REST API."""

__version__ = "0.1.0"
