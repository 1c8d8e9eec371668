"""The store's typed errors: callers decide by type, never by message text.

    StoreError           the operation failed (the server or file answered, but not with success)
    +- StoreUnavailable  the store cannot be reached: server down, timeout, file gone, store closed
    +- StoreRejected     the store is up but cannot hold the data itself; `.accounts` names whose
    +- StoreConfigError  the configured location cannot work: a bad URL, a missing directory

A sync treats every StoreError but a StoreRejected naming accounts as "store down" (reason `store`).
"""

from __future__ import annotations

from collections.abc import Iterable


class StoreError(Exception):
    """The store could not be reached or failed the operation; the cycle records reason `store`."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (connection refused, timeout, file deleted, store closed):
    the next attempt may work without anyone changing anything."""


class StoreRejected(StoreError):
    """The store is up but refuses the data itself: a value it cannot hold (an integer beyond 64 bits, a
    non-finite number). Nothing of the write was applied. `accounts` names the accounts whose data was
    refused, so a caller can fail only those and write the others instead of treating the whole store
    as down (empty when the store could not tell which)."""

    def __init__(self, message: str, accounts: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.accounts: frozenset[int] = frozenset(accounts)


class StoreConfigError(StoreError, ValueError):
    """The store's configured location cannot work (a URL that does not parse, a directory that does not
    exist): an operator's fix. A ValueError too, so settings validation reports it as a bad setting."""
