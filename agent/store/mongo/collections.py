"""The MongoDB collections, by name: the seed's `mt5_accounts` and `mt5_sync_runs`, and ours. A new
concern adds its field here."""

from __future__ import annotations

from dataclasses import dataclass

ACCOUNTS = "mt5_accounts"
SYNC_RUNS = "mt5_sync_runs"
SYNC_STATE = "mt5_sync_state"
POSITIONS = "mt5_positions"
DEALS = "mt5_deals"
EVENTS = "mt5_trade_events"
EVENT_KEYS = "mt5_trade_event_keys"  # the dedup keys of pruned events (`_id`: the key)
EQUITY = "mt5_equity"  # recorded equity points (`store.equity`)
COUNTERS = "mt5_counters"  # one document per id sequence (`_id`: the collection it numbers)


@dataclass(frozen=True, slots=True)
class CollectionNames:
    accounts: str = ACCOUNTS
    runs: str = SYNC_RUNS
    sync_state: str = SYNC_STATE
    positions: str = POSITIONS
    deals: str = DEALS
    events: str = EVENTS
    counters: str = COUNTERS
    event_keys: str = EVENT_KEYS
    equity: str = EQUITY
