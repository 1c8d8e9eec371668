"""The OpenAPI 3.1 document served at `/api/openapi.json`, generated from the app itself.

Paths come from the app's route table: every route carries its `Operation` (agent.api.spec), and a
route without one makes the build fail, so the document cannot miss an endpoint. Schemas are the JSON
schemas pydantic generates from agent.api.schema (JSON Schema 2020-12, which OpenAPI 3.1 uses as is),
with the closed sets as named enums: data source, freshness state, failure reason, run result, trigger.
Every operation says its `security`: the read endpoints list the credentials configured, and when none
is (reads open on loopback) every read scheme as optional, so a client generated from the document
carries auth and keeps working once a credential is set. `servers` names the agent's listen address
(loopback by default). A schemathesis run against a live agent checks that every answer matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from agent.api import schema
from agent.api.admin import BODY_MAX_BYTES
from agent.api.auth import metrics_auth_configured, read_is_open
from agent.api.keys import OPENAPI_DOCUMENT
from agent.api.spec import Operation, documented, operation_of
from agent.config import Settings

JSON = "application/json"
OPENAPI_PATH = "/api/openapi.json"
METRICS_PATH = "/metrics"  # registered by the telemetry layer; described here
SCHEMA_REF = "#/components/schemas/{model}"

# The shared error answers: status -> (component name, description).
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "A parameter is malformed or out of range"),
    401: ("Unauthorized", "Credentials missing, malformed, expired or wrong"),
    403: ("Forbidden", "Valid credentials that may not read this"),
    404: ("NotFound", "No such account or client"),
    410: ("Gone", "The cursor is older than the retained history (`cursor_expired`)"),
    413: ("PayloadTooLarge", f"The body is larger than {BODY_MAX_BYTES} bytes"),
    503: (
        "Unavailable",
        "The store is unavailable, or this endpoint is disabled by configuration (admin token unset; "
        "reads on a non-loopback address without any credential configured; /metrics with a JWT "
        "secret but no token)",
    ),
}

SECURITY_SCHEMES: dict[str, Any] = {
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "MT5_AGENT_METRICS_TOKEN: for Prometheus; reads /metrics and nothing else",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "MT5_AGENT_ADMIN_TOKEN: the only admin credential; also reads everything",
    },
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "MT5_AGENT_API_TOKEN: read token for trusted backends; reads everything",
    },
    "clientJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "HS256 JWT signed with MT5_AGENT_JWT_SECRET; `sub` = client id, `exp` required; "
        "reads only that client's accounts",
    },
}
# Which configured secret enables which scheme, for the read endpoints and for /metrics.
READ_SCHEMES = (("apiToken", "api_token"), ("clientJwt", "jwt_secret"), ("adminToken", "admin_token"))
TOKEN_SCHEMES = (("apiToken", "api_token"), ("adminToken", "admin_token"))  # reads that refuse a JWT
METRICS_SCHEMES = (
    ("metricsToken", "metrics_token"),
    ("apiToken", "api_token"),
    ("adminToken", "admin_token"),
)

TAGS = [
    {"name": "seed", "description": "The seed backend's client paths"},
    {"name": "admin", "description": "Admin token only"},
    {"name": "v1", "description": "Native read API: accounts with their freshness, status, sync runs"},
    {"name": "positions", "description": "Open positions as the positions poller last read them"},
    {"name": "events", "description": "Trade events (opened, updated, closed): by cursor, or streamed"},
    {"name": "ops", "description": "No authentication, except /metrics once any credential is configured"},
]
WILDCARDS = ("", "0.0.0.0", "::")  # listening on every address: a client reaches the agent on loopback

_TEXT = {"schema": {"type": "string"}}
METRICS_OPERATION = Operation(
    "metrics",
    "Prometheus metrics",
    "ops",
    "none",  # decided from the configuration below
    None,
    "Prometheus text format (OpenMetrics when asked for)",
    description="Every account's balances and names: once any credential is configured, only the "
    "metrics, read or admin token may scrape (never a client JWT); see docs/metrics-auth.md. Open only "
    "when no credential is configured at all.",
    content={"text/plain": _TEXT, "application/openmetrics-text": _TEXT},
)

routes = web.RouteTableDef()


@routes.get(OPENAPI_PATH)
@documented(
    Operation(
        "openapi",
        "This OpenAPI document",
        "ops",
        "none",
        None,
        "OpenAPI document",
        description="Generated from the running app: its routes, and the credentials it is configured with.",
        content={JSON: {"schema": {"type": "object"}}},
    )
)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type=JSON)


class _Untitled(GenerateJsonSchema):
    """No `title` on every property: the names say it already."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _rename(node: Any, names: dict[str, str]) -> Any:
    """Give the enums their documented names (pydantic names them after the Python class)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                head, _, name = v.rpartition("/")
                v = f"{head}/{names.get(name, name)}"
            out[k] = _rename(v, names)
        return out
    if isinstance(node, list):
        return [_rename(v, names) for v in node]
    return node


def component_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """The JSON schemas of `models` and everything they reference, keyed by component name."""
    unique = list(dict.fromkeys(models))
    _, top = models_json_schema(
        [(m, "validation") for m in unique], ref_template=SCHEMA_REF, schema_generator=_Untitled
    )
    defs = top.get("$defs", {})
    names = schema.ENUM_NAMES
    for old, new in names.items():
        if old in defs:
            defs[new] = {**defs.pop(old), "title": new}
    return dict(sorted(_rename(defs, names).items()))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=name)}


def _json_response(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(model.__name__)}}}


def _security(settings: Settings, schemes: tuple[tuple[str, str], ...]) -> list[dict[str, list[str]]]:
    return [{scheme: []} for scheme, secret in schemes if settings.secret(secret)]


def read_security(
    settings: Settings, schemes: tuple[tuple[str, str], ...] = READ_SCHEMES
) -> list[dict[str, list[str]]]:
    """The configured read credentials; none configured: every read scheme, and `{}` (none needed) when
    reads are open on loopback (on another address reads answer 503 until one is configured)."""
    configured = _security(settings, schemes)
    if configured:
        return configured
    every: list[dict[str, list[str]]] = [{scheme: []} for scheme, _ in schemes]
    return [*every, {}] if read_is_open(settings) else every


def servers(settings: Settings) -> list[dict[str, Any]]:
    """The agent's listen address as a server with variables (a wildcard listen: loopback)."""
    host = settings.listen_host
    if host in WILDCARDS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal in a URL
    return [
        {
            "url": "http://{host}:{port}",
            "description": "The agent at its listen address (MT5_AGENT_LISTEN, 127.0.0.1:8080 by default)",
            "variables": {
                "host": {"default": host, "description": "the agent's host"},
                "port": {"default": str(settings.listen_port), "description": "the agent's port"},
            },
        }
    ]


def _operation(op: Operation, security: list[dict[str, list[str]]], errors: Iterable[int]) -> dict[str, Any]:
    ok: dict[str, Any]
    if op.ok is not None:
        ok = _json_response(op.ok_description, op.ok)
    else:
        ok = {"description": op.ok_description, "content": dict(op.content or {})}
    responses: dict[str, Any] = {"200": ok}
    for status in errors:
        responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    for status, (description, model) in op.responses.items():
        responses[str(status)] = (
            {"description": description} if model is None else _json_response(description, model)
        )
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": security,
    }
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [p.document() for p in op.params]
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(op.body.__name__)}}}
    out["responses"] = responses
    return out


def build_openapi(app: web.Application, settings: Settings) -> dict[str, Any]:
    """The document for this app and configuration: every route of the app, described by its handler's
    `Operation`; which credentials the read endpoints (and /metrics) accept is live."""
    security: dict[str, list[dict[str, list[str]]]] = {
        "read": read_security(settings),
        "token": read_security(settings, TOKEN_SCHEMES),
        "admin": [{"adminToken": []}],
        "none": [],
    }
    paths: dict[str, dict[str, Any]] = {}
    models: list[type[BaseModel]] = [schema.Error]
    errors_used: set[int] = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if path == METRICS_PATH:
            op, sec, errors = METRICS_OPERATION, [], []
            if metrics_auth_configured(settings):
                sec = _security(settings, METRICS_SCHEMES)
                errors = [401] if sec else [401, 503]
        else:
            found = operation_of(route.handler)
            if found is None:
                raise RuntimeError(f"{route.method} {path} has no OpenAPI description (agent.api.spec)")
            op, sec, errors = found, security[found.auth], list(found.errors)
        errors_used.update(errors)
        models.extend(m for m in (op.ok, op.body, *(m for _, m in op.responses.values())) if m is not None)
        paths.setdefault(path, {})[route.method.lower()] = _operation(op, sec, errors)

    responses: dict[str, Any] = {}
    for status in sorted(errors_used):
        name, description = ERROR_RESPONSES[status]
        responses[name] = _json_response(description, schema.Error)
        if status == 401:
            responses[name]["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="mt5-agent"'}
            }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mt5-monitor agent API",
            "version": "1.0.0",
            "description": "Stored MT5 account data with its freshness, sync history and health. Values are "
            "what the terminal reported; nothing is recalculated. Every error is "
            '`{"error": {"code", "message"}}`. Credentials are bearer tokens (`securitySchemes`): the read '
            "token, the admin token or a client's JWT.",
        },
        "servers": servers(settings),
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": component_schemas(models),
            "responses": responses,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def document_bytes(app: web.Application, settings: Settings) -> bytes:
    """The document as served: built once, encoded once."""
    return json.dumps(build_openapi(app, settings)).encode("utf-8")
