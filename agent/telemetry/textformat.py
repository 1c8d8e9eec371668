"""Exposition text written directly, byte for byte as prometheus_client's encoders write it.

The per-account families are ~230k samples at 10,000 accounts: building prometheus_client objects for
them and encoding those costs several times what writing the lines does. These helpers write values and
label values exactly as both text formats do (tests/observability/test_fast_exposition.py compares the
bytes for every format we serve); anything else is encoded by prometheus_client itself (`encode`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.utils import floatToGoString

Encoder = Callable[[Any], bytes]  # one of prometheus_client's generate_latest, as choose_encoder picks it
EOF = b"# EOF\n"
# Escapings that leave our names unchanged: only then may the pre-rendered text stand in for the encoder's.
FAST_ESCAPINGS = (om_exposition.UNDERSCORES, om_exposition.ALLOWUTF8)


def escaping(encoder: Encoder) -> str:
    """The name escaping `choose_encoder` bound into `encoder` (the text format has none: underscores)."""
    return getattr(encoder, "keywords", {}).get("escaping", om_exposition.UNDERSCORES)


def is_openmetrics(encoder: Encoder) -> bool:
    """True when `encoder` writes OpenMetrics (which ends with `# EOF`)."""
    return getattr(encoder, "func", encoder) is om_exposition.generate_latest


class _Only:
    """A collector over given families, to run prometheus_client's own encoders on part of a scrape."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Sequence[Metric]:
        return self._metrics


def encode(encoder: Encoder, metrics: Sequence[Metric]) -> bytes:
    """`metrics` as prometheus_client writes them, without the OpenMetrics `# EOF` line."""
    return encoder(_Only(metrics)).removesuffix(EOF)


def label(value: str) -> str:
    """A label value escaped as both text formats escape it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def float_text(value: float) -> str:
    """A float sample value as both text formats write it (floatToGoString), without its checks for the
    common case: a finite repr with a dot is what it returns unless Go would switch to an exponent."""
    text = repr(value)
    dot = text.find(".")
    if dot < 0 or (dot > 6 and value > 0):  # inf, nan, 1e+300: or 12345678.9 -> 1.23456789e+07
        return floatToGoString(value)
    return text


_SMALL_COUNTS = {n: floatToGoString(n) for n in range(1024)}


def count_text(value: int) -> str:
    """An integer sample value (a count) as both text formats write it."""
    text = _SMALL_COUNTS.get(value)
    return text if text is not None and type(value) is int else floatToGoString(value)
