"""JSON text for SQLite documents: datetimes as fixed-width ISO UTC text (they sort in time order)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.store.codec import iso_ms


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_ms(value)
    raise TypeError(f"{type(value).__name__} is not storable")


# One encoder reused: json.dumps with options builds a new encoder per call, which dominates a
# 10,000-account cycle.
dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


class IsoMemo(dict[datetime, str]):
    """A cycle's updates share a few timestamps: format each once."""

    def __missing__(self, dt: datetime) -> str:
        self[dt] = text = iso_ms(dt)
        return text
