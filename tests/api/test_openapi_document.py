"""The OpenAPI document itself: a valid OpenAPI 3.1 document in every configuration, every operation with
a summary of its own, its `security` and a declared tag, `servers` on loopback by default, and a client
generated from it (here, from the document alone) reaches an authenticated endpoint with its token.

Validation: the OpenAPI 3.1 meta-schema schemathesis ships (a dev dependency), every component schema
against JSON Schema 2020-12, every `$ref` resolved; openapi-spec-validator as well when installed."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from schemathesis.specs.openapi.definitions import OPENAPI_31

from tests.api.conftest import ADMIN, ALL_TOKENS, CLIENT_A, JWT_SECRET, READ, MakeApi, make_jwt

PUBLIC = {"/healthz", "/readyz", "/", "/api/openapi.json"}
READ_SCHEMES: list[dict[str, list[str]]] = [{"apiToken": []}, {"clientJwt": []}, {"adminToken": []}]

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "open-on-loopback": {},
    "all-credentials": {**ALL_TOKENS},
    "jwt-only": {"jwt_secret": JWT_SECRET},
    "exposed-without-credentials": {"listen": "0.0.0.0:9000"},
    "ipv6-loopback": {"listen": "[::1]:8081", "api_token": READ},
}


async def _document(make_api: MakeApi, **settings: str) -> dict[str, Any]:
    api = await make_api(**settings)
    _, doc = await api.json("GET", "/api/openapi.json")
    return doc


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield path, method, op


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@pytest.mark.parametrize("config", list(CONFIGURATIONS))
async def test_the_document_is_valid_openapi_3_1(make_api: MakeApi, config: str):
    doc = await _document(make_api, **CONFIGURATIONS[config])
    validator = Draft202012Validator(OPENAPI_31)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:10]]
    assert not validator.is_valid({**doc, "servers": [{"variables": {}}]})  # the check can fail: no url
    for component in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(component)  # SchemaError names the part that is wrong
    for ref in set(_refs(doc)):
        assert _resolve(doc, ref) is not None, ref
    try:
        from openapi_spec_validator import validate  # type: ignore[import-not-found]
    except ImportError:
        return  # not a dependency: the meta-schema above is the check
    validate(doc)


@pytest.mark.parametrize("config", list(CONFIGURATIONS))
async def test_every_operation_has_a_summary_security_and_a_declared_tag(make_api: MakeApi, config: str):
    doc = await _document(make_api, **CONFIGURATIONS[config])
    schemes = doc["components"]["securitySchemes"]
    assert {s["scheme"] for s in schemes.values()} == {"bearer"}
    assert schemes["clientJwt"]["bearerFormat"] == "JWT"
    tags = {t["name"] for t in doc["tags"]}
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for path, method, op in _operations(doc):
        where = f"{method.upper()} {path}"
        summary = op.get("summary", "")
        assert summary.strip() and summary != op["operationId"], (where, summary)
        assert len(summary) <= 80 and not summary.endswith("."), (where, summary)
        assert set(op["tags"]) <= tags, (where, op["tags"])
        assert isinstance(op["security"], list), where
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes), (where, requirement)
        needs_credentials = op["security"] and {} not in op["security"]
        if needs_credentials and "101" not in op["responses"]:  # a WebSocket may refuse after the upgrade
            assert "401" in op["responses"], where  # a credential that can be missing or wrong
        if path in PUBLIC:
            assert op["security"] == [], where
        elif path.startswith("/api/admin/"):
            assert op["security"] == [{"adminToken": []}], where


async def test_read_security_as_configured(make_api: MakeApi):
    """Open reads list every read scheme as optional (a generated client still carries auth); configured
    reads list exactly the configured credentials; reads exposed with none configured (503 until one is)
    list every scheme, none optional."""
    expected = {
        "open-on-loopback": [*READ_SCHEMES, {}],
        "all-credentials": READ_SCHEMES,
        "jwt-only": [{"clientJwt": []}],
        "exposed-without-credentials": READ_SCHEMES,
        "ipv6-loopback": [{"apiToken": []}],
    }
    # the sync history refuses a client JWT (403): it declares the tokens alone
    runs = {
        "open-on-loopback": [{"apiToken": []}, {"adminToken": []}, {}],
        "all-credentials": [{"apiToken": []}, {"adminToken": []}],
        "jwt-only": [{"apiToken": []}, {"adminToken": []}],  # none configured: no way in but a token
        "exposed-without-credentials": [{"apiToken": []}, {"adminToken": []}],
        "ipv6-loopback": [{"apiToken": []}],
    }
    for config, security in expected.items():
        doc = await _document(make_api, **CONFIGURATIONS[config])
        for path in ("/api/v1/accounts", "/api/v1/events", "/api/client/{client_id}/portfolio"):
            assert doc["paths"][path]["get"]["security"] == security, (config, path)
        assert doc["paths"]["/api/v1/sync/runs"]["get"]["security"] == runs[config], config


async def test_servers_name_the_listen_address_loopback_by_default(make_api: MakeApi):
    expected = {
        "open-on-loopback": ("127.0.0.1", "8080"),
        "exposed-without-credentials": ("127.0.0.1", "9000"),  # listening everywhere: reach it on loopback
        "ipv6-loopback": ("[::1]", "8081"),
    }
    for config, (host, port) in expected.items():
        doc = await _document(make_api, **CONFIGURATIONS[config])
        (server,) = doc["servers"]
        assert server["url"] == "http://{host}:{port}"
        variables = {k: v["default"] for k, v in server["variables"].items()}
        assert variables == {"host": host, "port": port}, config


Call = Callable[..., Awaitable[tuple[int, Any]]]


def generate_client(doc: dict[str, Any], session: aiohttp.ClientSession, token: str | None, **server: str):
    """A client from the document alone: one coroutine per operationId taking its parameters by name;
    the URL from `servers` (variables overridable), the bearer header where the operation's `security`
    names a bearer scheme."""
    (spec,) = doc["servers"]
    variables = {k: v["default"] for k, v in spec["variables"].items()} | server
    base = re.sub(r"\{(\w+)\}", lambda m: variables[m.group(1)], spec["url"])
    schemes = doc["components"]["securitySchemes"]

    def operation(path: str, method: str, op: dict[str, Any]) -> Call:
        params = {p["name"]: p["in"] for p in op.get("parameters", [])}
        bearer = any(
            schemes[name]["type"] == "http" and schemes[name]["scheme"] == "bearer"
            for requirement in op["security"]
            for name in requirement
        )

        async def call(**kwargs: Any) -> tuple[int, Any]:
            unknown = set(kwargs) - set(params)
            assert not unknown, f"{op['operationId']} takes no {unknown}"
            url = base + re.sub(r"\{(\w+)\}", lambda m: str(kwargs[m.group(1)]), path)
            query = {k: str(v) for k, v in kwargs.items() if params[k] == "query"}
            headers = {"Authorization": f"Bearer {token}"} if bearer and token is not None else {}
            async with session.request(method.upper(), url, params=query, headers=headers) as resp:
                return resp.status, await resp.json()

        return call

    return {op["operationId"]: operation(path, method, op) for path, method, op in _operations(doc)}


@pytest.mark.parametrize("config", ["all-credentials", "open-on-loopback"])
async def test_a_client_generated_from_the_document_calls_authenticated_endpoints(
    make_api: MakeApi, config: str
):
    api = await make_api(**CONFIGURATIONS[config])
    _, doc = await api.json("GET", "/api/openapi.json")
    port = str(api.client.port)
    async with aiohttp.ClientSession() as session:
        reader = generate_client(doc, session, READ, port=port)
        status, body = await reader["listAccounts"]()
        assert status == 200 and {a["account"] for a in body["accounts"]} >= {100001, 200001}
        status, body = await reader["getAccount"](account=100001)
        assert (status, body["account"]) == (200, 100001)
        status, body = await reader["listEvents"](account=100001, limit=5)
        assert status == 200 and body["events"] == []
        status, _ = await generate_client(doc, session, ADMIN, port=port)["adminAccounts"]()
        assert status == (200 if config == "all-credentials" else 503)  # admin off unless its token is set
        if config == "all-credentials":
            client = generate_client(doc, session, make_jwt(CLIENT_A), port=port)
            assert (await client["getAccount"](account=100001))[0] == 200
            assert (await client["getAccount"](account=200001))[0] == 403  # another client's
            assert (await client["listSyncRuns"]())[0] == 403  # documented: tokens only
            assert (await reader["listSyncRuns"](limit=1))[0] == 200
            anonymous = generate_client(doc, session, None, port=port)
            status, body = await anonymous["listAccounts"]()
            assert status == 401 and body["error"]["code"] == "unauthorized"
            assert (await anonymous["healthz"]())[0] == 200  # public: no credential needed
