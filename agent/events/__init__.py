"""Trade event detection (DESIGN.md section 11): successive position snapshots plus sweeps of deals, per
account, become TRADE_OPENED / TRADE_UPDATED / TRADE_CLOSED events with dedup keys built from the
terminal's own identities. Pure logic: no store, no HTTP, no asyncio (the poller wires it)."""

from agent.events.detector import Detector
from agent.events.keys import closed_key, deal_key, opened_key, sltp_key
from agent.events.state import AccountState, DetectorState, PositionTrack

__all__ = [
    "AccountState",
    "Detector",
    "DetectorState",
    "PositionTrack",
    "closed_key",
    "deal_key",
    "opened_key",
    "sltp_key",
]
