"""Logging: JSON lines for machines, key=value when a terminal is attached. Never secrets.

Records made inside a span carry its `trace_id`/`span_id`, so a log line leads to its trace. Secrets
are kept out at the source (no code logs a token, a header or a credentialled URL); as a second line
of defence every formatted line is scrubbed of the configured secret values (`register_secrets`) and
of bearer tokens, `token=`-style pairs and URL passwords.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter values would blank out ordinary words
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{REDACTED}"),
    (
        re.compile(r"(?i)\b(\w*(?:token|password|passwd|secret|api_?key)=)[^\s&\"',;]+"),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # a JWT wherever it appears (a client's token pasted in a URL lands in the access log)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), REDACTED),
)
_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in a log line (tokens, passwords), process-wide."""
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


class TraceContextFilter(logging.Filter):
    """Adds trace_id/span_id of the current span (at emit time, in the emitting task's context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid and not hasattr(record, "trace_id"):
            record.trace_id = trace.format_trace_id(ctx.trace_id)
            record.span_id = trace.format_span_id(ctx.span_id)
        return True


class JsonFormatter(logging.Formatter):
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


def make_handler(fmt: str = "auto", stream: Any = None) -> logging.Handler:
    """A stream handler: JSON lines, or key=value for `text` and for `auto` on a terminal."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(TraceContextFilter())
    return handler


def setup_logging(
    fmt: str = "auto", level: str = "INFO", stream: Any = None, *, secrets: Iterable[str | None] = ()
) -> logging.Handler:
    """Replace the root handlers with one `make_handler`; `secrets` are scrubbed from every line."""
    register_secrets(secrets)
    handler = make_handler(fmt, stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
