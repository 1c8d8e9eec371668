"""The bridge's logs: JSON lines for machines, key=value when a terminal is attached. Never secrets.

The same shape and switch as the agent's (`ts`, `level`, `logger`, `msg`, then any extras), copied
rather than imported because the bridge never imports the agent. Secrets are kept out at the source (no
code logs a token or a password); as a second line of defence every formatted line is scrubbed of the
registered secret values (the bearer token, every account password) and of bearer tokens, `token=`-style
pairs and URL passwords.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("auto", "json", "text")
FORMAT_ENV = "MT5_BRIDGE_LOG_FORMAT"
REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter values would blank out ordinary words
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{REDACTED}"),
    (
        re.compile(r"(?i)\b(\w*(?:token|password|passwd|secret|api_?key)=)[^\s&\"',;]+"),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)
_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in a log line (the token, passwords), process-wide."""
    for v in values:
        if v and len(v) >= _MIN_SECRET_LEN:
            _secrets.add(v)
            _secrets.add(json.dumps(v)[1:-1])  # as it appears inside a JSON string


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(doc, default=str))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}" + (
            f"  {extras}" if extras else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def make_handler(fmt: str = "auto", stream: TextIO | None = None) -> logging.Handler:
    """A stream handler: JSON lines, or key=value for `text` and for `auto` on a terminal."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(out, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    return handler


def setup_logging(
    fmt: str = "auto",
    level: str = "INFO",
    stream: TextIO | None = None,
    *,
    secrets: Iterable[str | None] = (),
) -> logging.Handler:
    """Replace the root handlers with one `make_handler`; `secrets` are scrubbed from every line."""
    register_secrets(secrets)
    handler = make_handler(fmt, stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
