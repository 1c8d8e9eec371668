"""Issue 10 finding 14: a malformed request is logged as at most one INFO/WARNING line without a traceback
(ERROR with a traceback is for real server errors), and no response names the Python or aiohttp version."""

from __future__ import annotations

import logging

import pytest

from agent.api.protocol import SERVER_NAME
from agent.store import open_store
from tests.api.conftest import ADMIN, ALL_TOKENS, METRICS, READ, Api, MakeApi
from tests.api.test_endpoints import _BrokenStore

# Requests aiohttp's parser refuses before any route runs: it answers 400 itself.
MALFORMED = {
    "bad-header-name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    "bad-version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "nul-in-path": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-content-length": b"POST /api/admin/sync-from-vps HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "header-too-long": b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "bad-chunked": (
        b"POST /api/admin/sync-from-vps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    ),
    "not-http": b"GARBAGE\r\n\r\n",
    # After a good request on the same connection, aiohttp logs a bad method as ERROR, not DEBUG.
    "second-request-bad-method": b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
}
FIRST = {"second-request-bad-method": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"}
# Well-formed requests the app refuses: 4xx from the handlers and the router.
REFUSED = [
    ("GET", "/api/v1/accounts/abc", READ),
    ("GET", "/api/v1/accounts/%ff", READ),
    ("GET", "/api/v1/accounts?state=%ff%fe", READ),
    ("GET", "/api/v1/sync/runs?limit=99999999999999999999999", READ),
    ("GET", "/api/v1/accounts", "not-a-token"),
    ("GET", "/api/v1/accounts", None),
    ("GET", "/metrics", None),
    ("GET", "/nope", None),
    ("DELETE", "/api/v1/accounts", READ),
    ("PUT", "/api/admin/mt5/accounts/100001/client", ADMIN),  # no body
]


def _problems(records: list[logging.LogRecord]) -> list[str]:
    """Log records a 4xx must not produce: ERROR or worse, or any traceback. (aiohttp's access log is
    off in production: `mt5-agent run` passes access_log=None.)"""
    return [
        f"{r.name} {r.levelname} {r.getMessage()[:120]}"
        for r in records
        if r.name != "aiohttp.access" and (r.levelno >= logging.ERROR or r.exc_info or r.exc_text)
    ]


def _lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name != "aiohttp.access" and r.levelno >= logging.INFO]


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_a_malformed_request_is_one_info_line_without_traceback(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture, name: str
):
    """Before: `ERROR aiohttp.server: Error handling request` with the parser's traceback, every time."""
    api = await make_api(**ALL_TOKENS)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    status, headers, _ = await api.raw(MALFORMED[name], before=FIRST.get(name))
    assert status == 400
    assert _problems(caplog.records) == []
    lines = _lines(caplog.records)
    assert len(lines) <= 1, [r.getMessage() for r in lines]
    for r in lines:
        assert r.levelno in (logging.INFO, logging.WARNING) and "\n" not in r.getMessage()
    assert "Python" not in headers.get("Server", "") and "aiohttp" not in headers.get("Server", "")


async def test_refused_requests_log_no_error(make_api: MakeApi, caplog: pytest.LogCaptureFixture):
    api = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    caplog.set_level(logging.DEBUG)
    for method, path, token in REFUSED:
        caplog.clear()
        resp = await api.call(method, path, token)
        await resp.read()
        assert 400 <= resp.status < 500, (method, path, resp.status)
        assert _problems(caplog.records) == [], (method, path)
        assert len(_lines(caplog.records)) <= 1, (method, path)


async def test_a_real_server_error_still_logs_error_with_traceback(
    make_api: MakeApi, tmp_path, caplog: pytest.LogCaptureFixture
):
    store = _BrokenStore(open_store(f"sqlite:///{tmp_path / 'broken.db'}"))
    api = await make_api(store=store, api_token=READ)
    store.exc = RuntimeError("boom-internal-detail")
    caplog.clear()
    await api.json("GET", "/api/v1/sync/runs", READ, status=500)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


async def _server_headers(api: Api) -> dict[str, str]:
    """The Server header of every kind of answer: 200s, JSON errors of each origin, /metrics, HTML."""
    calls = [
        ("GET", "/", None),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),  # 503: no cycle yet
        ("GET", "/api/openapi.json", None),
        ("GET", "/api/v1/accounts", READ),
        ("GET", "/api/v1/accounts", None),  # 401
        ("GET", "/api/v1/accounts/abc", READ),  # 400
        ("GET", "/api/v1/accounts/999999", READ),  # 404
        ("GET", "/nope", None),  # router 404
        ("DELETE", "/api/v1/accounts", READ),  # router 405
        ("GET", "/metrics", METRICS),
        ("GET", "/metrics", None),  # 401
        ("HEAD", "/metrics", METRICS),
    ]
    out = {}
    for method, path, token in calls:
        resp = await api.call(method, path, token)
        await resp.read()
        out[f"{method} {path} {resp.status}"] = resp.headers.get("Server", "")
    status, headers, _ = await api.raw(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")
    out[f"malformed {status}"] = headers.get("Server", "")
    return out


async def test_no_response_names_the_python_or_aiohttp_version(make_api: MakeApi):
    """Before: `Server: Python/3.11 aiohttp/3.x.y` on every answer."""
    api = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    servers = await _server_headers(api)
    assert len(servers) == 14
    for call, server in servers.items():
        assert "Python" not in server and "aiohttp" not in server, (call, server)
        if not call.startswith("malformed"):
            assert server == SERVER_NAME, (call, server)


async def test_server_header_on_a_500_and_on_a_cors_preflight(make_api: MakeApi, tmp_path):
    store = _BrokenStore(open_store(f"sqlite:///{tmp_path / 'broken.db'}"))
    api = await make_api(store=store, api_token=READ, cors_origins="https://frontend.example.com")
    store.exc = RuntimeError("boom")
    resp = await api.call("GET", "/api/v1/sync/runs", READ)
    assert resp.status == 500 and resp.headers["Server"] == SERVER_NAME
    resp = await api.client.options(
        "/api/v1/accounts",
        headers={"Origin": "https://frontend.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert resp.status == 204 and resp.headers["Server"] == SERVER_NAME
