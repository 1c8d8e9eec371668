"""Large unordered bulk writes, sent in chunks: each chunk is one round trip that must finish within
socketTimeoutMS, and 10,000 upserts in one may not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pymongo.errors import BulkWriteError

T = TypeVar("T")

BULK_CHUNK = 1000  # operations per bulk_write round trip


async def bulk_in_chunks(coll: Any, items: Sequence[T], make_op: Callable[[T], Any]) -> None:
    """One unordered bulk write in BULK_CHUNK-sized round trips, as one: write errors of a chunk do not
    stop the others (unordered), the first is raised once all were sent; anything else stops at once.
    Each chunk's operations are built just before it is sent, so the event loop is never held for the
    whole cycle's worth."""
    first_error: BulkWriteError | None = None
    for start in range(0, len(items), BULK_CHUNK):
        ops = [make_op(item) for item in items[start : start + BULK_CHUNK]]
        try:
            await coll.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
