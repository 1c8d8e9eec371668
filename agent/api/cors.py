"""CORS for the configured origins only (MT5_AGENT_CORS_ORIGINS): never `*`.

A browser on another origin may call the API only when its exact origin is listed; everything else
gets no CORS headers at all, so the browser refuses to hand the response to the page.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from agent.api.errors import error_response

ALLOWED_REQUEST_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE = "600"


def cors_middleware(origins: Sequence[str]) -> Middleware:
    allowed = frozenset(origins)

    def is_allowed(origin: str | None) -> bool:
        return origin is not None and origin in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            request.method == hdrs.METH_OPTIONS
            and origin is not None
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            return _preflight(request, origin, is_allowed(origin))
        response = await handler(request)
        if allowed and origin is not None and not response.prepared:
            response.headers.add(hdrs.VARY, "Origin")
            if is_allowed(origin):
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
                response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = "WWW-Authenticate"
        return response

    return cors


def _preflight(request: web.Request, origin: str, origin_allowed: bool) -> web.StreamResponse:
    exc = request.match_info.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed):
        methods = set(exc.allowed_methods)
    elif exc is None:
        methods = {request.method}
    else:
        return error_response(404, "not_found", "no such endpoint")
    wanted = request.headers[hdrs.ACCESS_CONTROL_REQUEST_METHOD].upper()
    if not origin_allowed:
        return error_response(403, "cors_forbidden", "this origin may not call the API", headers=_vary())
    if wanted not in methods:
        return error_response(
            405,
            "method_not_allowed",
            f"method {wanted} is not allowed here",
            headers={**_vary(), hdrs.ALLOW: ",".join(sorted(methods))},
        )
    headers = {
        **_vary(),
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(sorted(methods | {hdrs.METH_OPTIONS})),
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_REQUEST_HEADERS,
        hdrs.ACCESS_CONTROL_MAX_AGE: PREFLIGHT_MAX_AGE,
    }
    return web.Response(status=204, headers=headers)


def _vary() -> dict[str, str]:
    return {hdrs.VARY: "Origin"}
