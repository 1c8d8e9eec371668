"""The MongoDB collections, by name: the seed's `mt5_accounts` and `mt5_sync_runs`, and ours. A new
concern (positions, events, deals) adds its field here."""

from __future__ import annotations

from dataclasses import dataclass

ACCOUNTS = "mt5_accounts"
SYNC_RUNS = "mt5_sync_runs"
SYNC_STATE = "mt5_sync_state"


@dataclass(frozen=True, slots=True)
class CollectionNames:
    accounts: str = ACCOUNTS
    runs: str = SYNC_RUNS
    sync_state: str = SYNC_STATE
