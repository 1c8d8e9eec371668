"""The embedded default store on one SQLite file: `SQLiteStore` (store.py) composing one module per
concern over the shared connections (connection.py)."""

from agent.store.sqlite.connection import MEMORY
from agent.store.sqlite.store import SQLiteStore

__all__ = ["MEMORY", "SQLiteStore"]
