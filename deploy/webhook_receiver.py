"""A small Alertmanager webhook receiver for the compose stack: records every notification it is sent and
serves them back as JSON, so the alerting path (Prometheus -> Alertmanager -> receiver) works and can be
looked at without a real pager.

    python deploy/webhook_receiver.py --host 0.0.0.0 --port 9095 \\
        --receiver paging=/run/secrets/paging_webhook_token \\
        --receiver tickets=/run/secrets/ticket_webhook_token

POST /<receiver>     an Alertmanager webhook notification (JSON object with an `alerts` list); with a token
                     file for that receiver, only with `Authorization: Bearer <token>`.
GET  /notifications  the recorded notifications, oldest first (`?receiver=paging` filters):
                     [{"receiver", "received_at", "status", "alert_count", "payload"}]
GET  /healthz        "ok"

Standard library only (it runs in the plain python image), bounded memory (the last --keep notifications),
bounded bodies (--max-body bytes), tokens compared in constant time, loopback by default: binding
elsewhere requires a token for every receiver. Every start-up problem is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("webhook-receiver")
PROG = "webhook-receiver"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_KEEP = 1000
DEFAULT_MAX_BODY = 1 << 20


class UsageError(Exception):
    """Reported as one line on stderr and exit code 2."""


class Recorder:
    """The last `keep` notifications, shared by the request threads."""

    def __init__(self, keep: int) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.total = 0

    def add(self, receiver: str, payload: dict[str, Any]) -> None:
        alerts = payload.get("alerts")
        record = {
            "receiver": receiver,
            "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "status": payload.get("status"),
            "alert_count": len(alerts) if isinstance(alerts, list) else 0,
            "payload": payload,
        }
        with self._lock:
            self._items.append(record)
            self.total += 1

    def items(self, receiver: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self._items if receiver is None or r["receiver"] == receiver]


class Handler(BaseHTTPRequestHandler):
    """One request; the server carries the configuration (`tokens`, `recorder`, `max_body`)."""

    server: ReceiverServer
    server_version = "webhook-receiver"  # no Python or library versions in the Server header
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, body: object) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, {"error": {"code": status.phrase.lower().replace(" ", "_"), "message": message}})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(HTTPStatus.OK, "ok")
        elif url.path == "/notifications":
            receiver = parse_qs(url.query).get("receiver", [None])[0]
            self._send(HTTPStatus.OK, self.server.recorder.items(receiver))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {url.path!r}")

    def do_POST(self) -> None:
        receiver = urlsplit(self.path).path.strip("/")
        if receiver not in self.server.tokens:
            self._error(HTTPStatus.NOT_FOUND, f"unknown receiver {receiver!r}")
            return
        token = self.server.tokens[receiver]
        if token is not None and not _authorized(self.headers.get("Authorization"), token):
            log.warning("refused a notification for %s: missing or wrong bearer token", receiver)
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
            return
        if not 0 <= length <= self.server.max_body:
            self.close_connection = True  # the body is left unread
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {self.server.max_body} bytes")
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc.__class__.__name__}")
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            self._error(
                HTTPStatus.BAD_REQUEST, "expected an Alertmanager notification: an object with `alerts`"
            )
            return
        self.server.recorder.add(receiver, payload)
        names = sorted(
            {str(a.get("labels", {}).get("alertname")) for a in payload["alerts"] if isinstance(a, dict)}
        )
        log.info(
            "notification for %s: %s, %d alert(s): %s",
            receiver,
            payload.get("status"),
            len(payload["alerts"]),
            ", ".join(names),
        )
        self._send(HTTPStatus.OK, {"ok": True})


def _authorized(header: str | None, token: str) -> bool:
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], tokens: dict[str, str | None], recorder: Recorder, max_body: int
    ) -> None:
        self.tokens = tokens
        self.recorder = recorder
        self.max_body = max_body
        super().__init__(address, Handler)


def _receiver(spec: str) -> tuple[str, str | None]:
    """`NAME` (no token) or `NAME=TOKEN_FILE`; the token is the file's content without surrounding blanks."""
    name, sep, path = spec.partition("=")
    if not _NAME.match(name):
        raise UsageError(f"--receiver {spec!r}: the name must be 1-64 letters, digits, '-' or '_'")
    if not sep:
        return name, None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--receiver {spec!r}: cannot read the token file: {exc}") from None
    if not token:
        raise UsageError(f"--receiver {spec!r}: the token file is empty")
    return name, token


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Record Alertmanager webhook notifications; serve them as JSON.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9095, help="port (default 9095; 0 picks a free one)")
    p.add_argument(
        "--receiver",
        action="append",
        default=[],
        metavar="NAME[=TOKEN_FILE]",
        help="accept POST /NAME, with the bearer token in TOKEN_FILE when given (repeatable)",
    )
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"notifications kept ({DEFAULT_KEEP})")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="largest body in bytes (1 MiB)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def configure(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, str | None]]:
    """Parsed arguments and the receivers' tokens; UsageError on anything wrong."""
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.keep < 1 or args.max_body < 1:
        raise UsageError("--keep and --max-body must be >= 1")
    if not args.receiver:
        raise UsageError("at least one --receiver NAME[=TOKEN_FILE] is required")
    tokens: dict[str, str | None] = {}
    for spec in args.receiver:
        name, token = _receiver(spec)
        if name in tokens:
            raise UsageError(f"--receiver {name!r} given twice")
        tokens[name] = token
    if name_clash := {"notifications", "healthz"} & set(tokens):
        raise UsageError(f"--receiver name {sorted(name_clash)[0]!r} is reserved")
    open_ones = sorted(name for name, token in tokens.items() if token is None)
    if open_ones and not is_loopback(args.host):
        raise UsageError(
            f"refusing to bind {args.host} with receivers that have no token file: {', '.join(open_ones)}"
        )
    return args, tokens


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, tokens = configure(argv)
        logging.basicConfig(
            level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
        server = ReceiverServer((args.host, args.port), tokens, Recorder(args.keep), args.max_body)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal %d", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info(
        "%s listening on http://%s:%d (receivers: %s)",
        PROG,
        host,
        port,
        ", ".join(f"{n}{'' if t is None else ' (token)'}" for n, t in tokens.items()),
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
