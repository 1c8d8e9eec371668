"""`GET /`: the self-contained status page (static/index.html), served with a strict CSP.

The page's only data source is the JSON API it fetches, so it can show nothing the API would not.
Its inline script and style are allowed by hash, so nothing else can run even if a value in the
page were ever mistaken for markup.

`connect-src` allows this origin and the live stream on this same host (`ws://` and `wss://` plus the
Host the browser used): CSP 3 says `'self'` also matches ws/wss on the same host, but older browsers
(Safari before 15.4, for one) do not, and `ws: wss:` alone would let a script reach any WebSocket host.
A Host header that is not a plain host[:port] gets no WebSocket source (the page then polls).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

from aiohttp import web

from agent.api.spec import Operation, documented

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
# A host name, IPv4 or bracketed IPv6 address and an optional port: nothing that could end a CSP
# directive (no space, quote, comma or semicolon) reaches the header.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"  # name, IPv4, [IPv6]
    r"(?::[0-9]{1,5})?"
)
_CONNECT_SRC = "connect-src 'self'"


def connect_src(host: str | None) -> str:
    """`connect-src` for a page loaded from `host` (the request's Host): this origin and its stream."""
    if host is None or not _HOST.fullmatch(host):
        return _CONNECT_SRC
    return f"{_CONNECT_SRC} ws://{host} wss://{host}"


def _csp(html: str) -> str:
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + (" ".join(hashes["script"]) or "'none'"),
            "style-src " + (" ".join(hashes["style"]) or "'none'"),
            _CONNECT_SRC,
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def load_page() -> str:
    return resources.files("agent.api.static").joinpath("index.html").read_text(encoding="utf-8")


@functools.cache
def _page() -> tuple[str, dict[str, str]]:
    """The page and its headers, read once (the first request)."""
    html = load_page()
    headers = {
        "Content-Security-Policy": _csp(html),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return html, headers


routes = web.RouteTableDef()


@routes.get("/")
@documented(
    Operation(
        "statusPage",
        "Status page (HTML, reads only this API)",
        "ops",
        "none",
        None,
        "The page",
        description="Accounts with their freshness, and a selected account's open positions, recent "
        "trade events, analytics (GET /api/v1/accounts/{account}/analytics) and its trades with their "
        "scores (each rule's points, max, passed and reason on a click, the R-multiple beside), read from "
        "this API with the token given on the page; new events live over WS /api/v1/stream (plain reads "
        "every 2 s when the stream is unavailable). Strict CSP: its inline script and style by hash, "
        "nothing external, connections to this host only.",
        content={"text/html": {"schema": {"type": "string"}}},
    )
)
async def index(request: web.Request) -> web.Response:
    html, headers = _page()
    csp = headers["Content-Security-Policy"].replace(_CONNECT_SRC, connect_src(request.host), 1)
    headers = {**headers, "Content-Security-Policy": csp}
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)
