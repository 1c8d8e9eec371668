"""`GET /`: the self-contained status page (static/index.html), served with a strict CSP.

The page's only data source is the JSON API it fetches, so it can show nothing the API would not.
Its inline script and style are allowed by hash, so nothing else can run even if a value in the
page were ever mistaken for markup.
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
            "connect-src 'self'",
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
        content={"text/html": {"schema": {"type": "string"}}},
    )
)
async def index(request: web.Request) -> web.Response:
    html, headers = _page()
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)
