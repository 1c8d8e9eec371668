"""Sources of account data behind one protocol (`agent.sources.base.Source`): the bridge (`bridge/`)
and an in-memory one for tests (`memory`). Positions and deals too, where a source serves them."""

from agent.sources.base import (
    POSITIONS_FEATURE,
    POSITIONS_UNAVAILABLE,
    AccountListing,
    AccountReads,
    DealsRead,
    ListedAccount,
    PositionsRead,
    Source,
    SourceError,
    SourceHealth,
    positions_advertised,
)

__all__ = [
    "POSITIONS_FEATURE",
    "POSITIONS_UNAVAILABLE",
    "AccountListing",
    "AccountReads",
    "DealsRead",
    "ListedAccount",
    "PositionsRead",
    "Source",
    "SourceError",
    "SourceHealth",
    "positions_advertised",
]
