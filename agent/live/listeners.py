"""Several poll listeners behind the poller's one `listener` (the metrics and the event hub): each is
told everything, in order, and one that raises never keeps the others (or the poller) from going on."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from agent.domain.trades import TradeEvent
from agent.events.poller import PollListener

log = logging.getLogger("mt5_agent.live")


class PollListeners:
    def __init__(self, *listeners: PollListener) -> None:
        self.listeners = listeners

    def _each(self, name: str, *args: object) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, name)(*args)
            except Exception:
                log.exception("poll listener %s.%s failed", type(listener).__name__, name)

    def on_available(self, available: bool) -> None:
        self._each("on_available", available)

    def on_round(self, seconds: float) -> None:
        self._each("on_round", seconds)

    def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
        self._each("on_account_polled", account, open_positions, at)

    def on_account_failed(self, account: int, reason: str) -> None:
        self._each("on_account_failed", account, reason)

    def on_events_stored(self, events: Iterable[TradeEvent], stored_at: datetime, catch_up: bool) -> None:
        events = list(events)  # every listener gets them all (an iterator would be spent by the first)
        self._each("on_events_stored", events, stored_at, catch_up)

    def on_accounts(self, accounts: Iterable[int]) -> None:
        accounts = list(accounts)
        self._each("on_accounts", accounts)
