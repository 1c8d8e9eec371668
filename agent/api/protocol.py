"""HTTP hygiene below the handlers: what the `Server` header says, and how a malformed request is logged.

- Every response of the app says `Server: mt5-agent` (set in `on_response_prepare`, so errors and
  /metrics included): the default names the exact Python and aiohttp versions, a gift to anyone looking
  for a known bug. Requests so malformed that aiohttp answers them itself, before any route or signal
  (a bad request line, an invalid header), get their 400 from aiohttp's own default, which is set once
  per process to a name without versions.
- A malformed request is the client's problem: aiohttp logs its parser errors as ERROR with a traceback
  ("Error handling request"). A filter on aiohttp's server logger turns those into one INFO line
  without a traceback; a real server error (5xx, or anything that is not a client error) keeps its
  ERROR and traceback.
"""

from __future__ import annotations

import logging

from aiohttp import http, web, web_response
from aiohttp.http_exceptions import HttpProcessingError

SERVER_NAME = "mt5-agent"
# aiohttp's process-wide default, used only by the answers it makes itself before any app code runs.
# Not "mt5-agent": it also covers other aiohttp servers in the same process (the demo's bridge).
DEFAULT_SERVER_NAME = "mt5-monitor"
_AIOHTTP_SERVER_LOGGER = "aiohttp.server"


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


def _client_error(exc: BaseException | None) -> HttpProcessingError | None:
    if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
        return exc
    return None


class ClientErrorFilter(logging.Filter):
    """On aiohttp's server logger: a 4xx parser error becomes one INFO line without a traceback (DEBUG
    stays DEBUG: aiohttp logs probes of non-HTTP traffic there on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        err = _client_error(exc)
        if err is None:
            return True
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = " ".join(str(err.message).split())[:200]  # aiohttp's message spans lines: one line here
        record.msg = "bad HTTP request from %s: %s %s"
        record.args = (peer, err.code, reason)
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def _install_filter() -> None:
    logger = logging.getLogger(_AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())


def setup_protocol(app: web.Application) -> None:
    app.on_response_prepare.append(_server_header)
    _install_filter()
    if web_response.SERVER_SOFTWARE == http.SERVER_SOFTWARE:  # still aiohttp's: nobody else chose one
        web_response.SERVER_SOFTWARE = DEFAULT_SERVER_NAME
