"""One error shape everywhere: `{"error": {"code", "message"}}`.

Handlers raise `ApiError`; the middleware turns it, aiohttp's own HTTP errors (unknown route, wrong
method) and anything unexpected into that JSON, so a client never sees an HTML page or a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("mt5_agent.api")

# Headers of aiohttp's HTTP errors that carry meaning and must survive the conversion to JSON.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer that is an error: status, a stable machine code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, headers=self.headers, extra=self.extra)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, **(extra or {})}}
    return web.json_response(body, status=status, headers=dict(headers or {}))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        headers = {h: exc.headers[h] for h in _KEPT_HEADERS if h in exc.headers}
        code = _CODES.get(exc.status, "client_error" if exc.status < 500 else "server_error")
        if exc.status == 404:
            message = "no such endpoint"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed here"
        else:
            message = exc.reason
        return error_response(exc.status, code, message, headers=headers)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        # The traceback goes to the log, never to the client.
        log.exception("unhandled error answering %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
