"""Sources of account data behind one protocol (`agent.sources.base.Source`): the bridge (`bridge/`)
and an in-memory one for tests (`memory`)."""

from agent.sources.base import (
    AccountListing,
    AccountReads,
    ListedAccount,
    Source,
    SourceError,
    SourceHealth,
)

__all__ = ["AccountListing", "AccountReads", "ListedAccount", "Source", "SourceError", "SourceHealth"]
