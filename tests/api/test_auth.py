"""Access control: every credential case, the unconfigured cases, JWT scoping, CORS, and no secret in
the logs."""

from __future__ import annotations

import logging

import jwt
import pytest

from tests.api.conftest import (
    ADMIN,
    ALL_TOKENS,
    CLIENT_A,
    CLIENT_B,
    JWT_SECRET,
    READ,
    Api,
    MakeApi,
    make_jwt,
)

READ_PATHS = (
    f"/api/client/{CLIENT_A}/mt5-accounts",
    f"/api/client/{CLIENT_A}/portfolio",
    "/api/v1/accounts",
    "/api/v1/accounts/100001",
    "/api/v1/sync/runs",
    "/api/v1/status",
)
ADMIN_CALLS = (
    ("GET", "/api/admin/mt5/accounts"),
    ("POST", "/api/admin/sync-from-vps"),
    ("GET", "/api/admin/mt5-health"),
    ("PUT", "/api/admin/mt5/accounts/100001/client"),
    ("DELETE", "/api/admin/mt5/accounts/100001/client"),
)
# /metrics is public only with no credential configured (tests/api/test_metrics_auth.py).
PUBLIC_PATHS = ("/healthz", "/api/openapi.json", "/")


async def _status(api: Api, method: str, path: str, token: str | None = None, **headers: str) -> int:
    resp = await api.call(method, path, token, headers=headers)
    await resp.read()
    return resp.status


async def test_no_credentials_is_401_with_challenge(api: Api):
    for method, path in [*(("GET", p) for p in READ_PATHS), *ADMIN_CALLS]:
        resp, body = await api.json(method, path, status=401)
        assert body["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token",
        f"Bearer {READ}x",
        f"Bearer {ADMIN[:-1]}",
        "Bearer",
        f"Basic {READ}",
        "Bearer a.b.c",
        "Bearer tökén-ü",  # non-ASCII must be a 401, not a crash in compare_digest
    ],
)
async def test_wrong_credentials_are_401(api: Api, header: str):
    for method, path in [("GET", "/api/v1/accounts"), *ADMIN_CALLS]:
        resp = await api.client.request(method, path, headers={"Authorization": header})
        body = await resp.json()
        assert resp.status == 401, (path, header, body)
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_public_endpoints_need_no_credentials(api: Api):
    for path in PUBLIC_PATHS:
        assert await _status(api, "GET", path) == 200, path


async def test_read_token_reads_everything_but_not_admin(api: Api):
    for path in READ_PATHS:
        assert await _status(api, "GET", path, READ) == 200, path
    assert await _status(api, "GET", f"/api/client/{CLIENT_B}/mt5-accounts", READ) == 200
    for method, path in ADMIN_CALLS:
        _, body = await api.json(method, path, READ, status=403)
        assert body["error"]["code"] == "forbidden"


async def test_admin_token_also_reads(api: Api):
    for path in READ_PATHS:
        assert await _status(api, "GET", path, ADMIN) == 200, path


async def test_admin_unconfigured_answers_503_not_open(make_api: MakeApi):
    api = await make_api(api_token=READ, jwt_secret=JWT_SECRET)
    for token in (None, READ, "anything"):
        for method, path in ADMIN_CALLS:
            _, body = await api.json(method, path, token, status=503)
            assert body["error"]["code"] == "admin_disabled"
            assert "MT5_AGENT_ADMIN_TOKEN" in body["error"]["message"]
    assert await _status(api, "GET", "/api/v1/accounts", READ) == 200


async def test_jwt_reads_only_its_own_client(api: Api):
    token = make_jwt(CLIENT_A)
    _, own = await api.json("GET", f"/api/client/{CLIENT_A}/mt5-accounts", token)
    assert [a["account"] for a in own["accounts"]] == [100001, 100002, 100003, 100004]
    _, portfolio = await api.json("GET", f"/api/client/{CLIENT_A}/portfolio", token)
    assert portfolio["count"] == 4
    _, listed = await api.json("GET", "/api/v1/accounts", token)
    assert [a["account"] for a in listed["accounts"]] == [100001, 100002, 100003, 100004]
    _, critical = await api.json("GET", "/api/v1/accounts?state=degraded", token)
    assert critical["accounts"] == []  # B's degraded account is not A's
    await api.json("GET", "/api/v1/accounts/100001", token)
    _, status = await api.json("GET", "/api/v1/status", token)
    assert status["accounts"]["total"] == 4

    # Another client's data: 403, for its paths and for its account; and no sync history.
    for path in (
        f"/api/client/{CLIENT_B}/mt5-accounts",
        f"/api/client/{CLIENT_B}/portfolio",
        "/api/client/nobody/mt5-accounts",  # 403 before any lookup: existence is not revealed
        "/api/v1/accounts/200001",
        "/api/v1/sync/runs",
    ):
        _, body = await api.json("GET", path, token, status=403)
        assert body["error"]["code"] == "forbidden"
    # An unknown account is still 404.
    await api.json("GET", "/api/v1/accounts/999999", token, status=404)


async def test_jwt_is_never_an_admin_credential(api: Api):
    for sub in (CLIENT_A, "admin"):
        token = make_jwt(sub)
        for method, path in ADMIN_CALLS:
            _, body = await api.json(method, path, token, status=403)
            assert body["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (make_jwt(CLIENT_A, exp_in=-3600), "token expired"),
        (make_jwt(CLIENT_A, secret="another-secret-of-the-same-length-123456"), "invalid token"),
    ],
    ids=["expired", "bad-signature"],
)
async def test_expired_or_badly_signed_jwt_is_401(api: Api, token: str, message: str):
    resp, body = await api.json("GET", f"/api/client/{CLIENT_A}/mt5-accounts", token, status=401)
    assert body["error"]["message"] == message
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def _jwt_without(claim: str) -> str:
    payload = {"sub": CLIENT_A, "exp": FAR}
    payload.pop(claim)
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


FAR = 4102444800  # 2100-01-01
MALFORMED_JWTS = {
    "no-exp": lambda: _jwt_without("exp"),
    "no-sub": lambda: _jwt_without("sub"),
    # The right secret but not HS256 (a 64-byte key: HS512 wants one that long).
    "hs512": lambda: jwt.encode({"sub": CLIENT_A, "exp": FAR}, JWT_SECRET * 2, algorithm="HS512"),
    "alg-none": lambda: jwt.encode({"sub": CLIENT_A, "exp": FAR}, None, algorithm="none"),
    "int-sub": lambda: jwt.encode({"sub": 42, "exp": FAR}, JWT_SECRET, algorithm="HS256"),
    "empty-sub": lambda: jwt.encode({"sub": "", "exp": FAR}, JWT_SECRET, algorithm="HS256"),
    "nbf-future": lambda: make_jwt(CLIENT_A, nbf=FAR),
    "garbage": lambda: "eyJhbGciOi.not-base64!.x",
}


@pytest.mark.parametrize("kind", list(MALFORMED_JWTS))
async def test_malformed_jwts_are_401(api: Api, kind: str):
    _, body = await api.json(
        "GET", f"/api/client/{CLIENT_A}/mt5-accounts", MALFORMED_JWTS[kind](), status=401
    )
    assert body["error"]["code"] == "unauthorized"


async def test_jwt_without_configured_secret_is_401(make_api: MakeApi):
    api = await make_api(api_token=READ, admin_token=ADMIN)
    await api.json("GET", f"/api/client/{CLIENT_A}/mt5-accounts", make_jwt(CLIENT_A), status=401)


async def test_nothing_configured_reads_are_open_on_loopback_only(make_api: MakeApi):
    local = await make_api(listen="127.0.0.1:8080")
    for path in READ_PATHS:
        assert await _status(local, "GET", path) == 200, path
    for method, path in ADMIN_CALLS:  # admin never opens by itself
        await local.json(method, path, status=503)

    exposed = await make_api(listen="0.0.0.0:8080")
    for path in READ_PATHS:
        _, body = await exposed.json("GET", path, status=503)
        assert body["error"]["code"] == "auth_not_configured"
    for path in ("/healthz", "/api/openapi.json", "/"):
        assert await _status(exposed, "GET", path) == 200


async def test_any_configured_credential_closes_reads(make_api: MakeApi):
    for setting in ALL_TOKENS:
        api = await make_api(listen="127.0.0.1:8080", **{setting: ALL_TOKENS[setting]})
        await api.json("GET", "/api/v1/accounts", status=401)


async def test_openapi_security_follows_configuration(make_api: MakeApi):
    open_api = await make_api()
    _, doc = await open_api.json("GET", "/api/openapi.json")
    # open reads: every read scheme, optional (`{}`), so a generated client carries auth
    assert doc["paths"]["/api/v1/accounts"]["get"]["security"] == [
        {"apiToken": []},
        {"clientJwt": []},
        {"adminToken": []},
        {},
    ]
    assert doc["paths"]["/api/admin/mt5/accounts"]["get"]["security"] == [{"adminToken": []}]
    closed = await make_api(api_token=READ, jwt_secret=JWT_SECRET)
    _, doc = await closed.json("GET", "/api/openapi.json")
    assert doc["paths"]["/api/v1/accounts"]["get"]["security"] == [{"apiToken": []}, {"clientJwt": []}]


ORIGIN = "https://frontend.example.com"


async def test_cors_only_for_configured_origins(make_api: MakeApi):
    api = await make_api(cors_origins=f"{ORIGIN}, https://other.example.com/", **ALL_TOKENS)
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    resp = await api.client.options("/api/v1/accounts", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "GET" in resp.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    # The trailing slash in the setting is normalised away.
    resp = await api.client.options(
        "/api/v1/accounts", headers={**preflight, "Origin": "https://other.example.com"}
    )
    assert resp.headers["Access-Control-Allow-Origin"] == "https://other.example.com"

    evil = {**preflight, "Origin": "https://evil.example.com"}
    resp = await api.client.options("/api/v1/accounts", headers=evil)
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers

    resp = await api.client.options(
        "/api/admin/sync-from-vps", headers={**preflight, "Access-Control-Request-Method": "POST"}
    )
    assert resp.status == 204 and "POST" in resp.headers["Access-Control-Allow-Methods"]

    # Actual requests: the origin echoed only when allowed (errors included), never '*'.
    resp = await api.call("GET", "/api/v1/accounts", READ, headers={"Origin": ORIGIN})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in resp.headers.getall("Vary")
    resp = await api.call("GET", "/api/v1/accounts", None, headers={"Origin": ORIGIN})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    resp = await api.call("GET", "/api/v1/accounts", READ, headers={"Origin": "https://evil.example.com"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_no_cors_headers_without_configured_origins(api: Api):
    resp = await api.call("GET", "/api/v1/accounts", READ, headers={"Origin": ORIGIN})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await api.client.options(
        "/api/v1/accounts", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


async def test_no_token_or_secret_is_logged(api: Api, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    good_jwt = make_jwt(CLIENT_A)
    bad_jwt = make_jwt(CLIENT_A, secret="another-secret-of-the-same-length-123456")
    for token in (ADMIN, READ, good_jwt, bad_jwt, ADMIN + "x", None):
        for path in (*READ_PATHS, "/api/admin/mt5-health", "/nope"):
            await _status(api, "GET", path, token)
    assert caplog.records, "expected some log output to inspect"
    text = caplog.text
    for secret in (ADMIN, READ, JWT_SECRET, good_jwt, bad_jwt):
        assert secret not in text
