"""The OpenAPI 3.0.3 document served at `/api/openapi.json`.

It describes what this server really answers, checked by a schemathesis run against a live agent:
every response (errors included) has a schema, account objects allow no extra properties, and the
read endpoints' `security` follows the configuration (no requirement when reads are open on loopback).
"""

from __future__ import annotations

from typing import Any

from agent.api.admin import BODY_MAX_BYTES
from agent.api.auth import metrics_auth_configured, read_is_open
from agent.api.common import ACCOUNT_MAX, CLIENT_ID_MAX_LENGTH, OFFSET_MAX, RUNS_LIMIT_DEFAULT, RUNS_LIMIT_MAX
from agent.api.serialize import ACCOUNT_FIELDS
from agent.config import Settings
from agent.freshness import STATES
from agent.models import REASONS, RUN_RESULTS, DataSource
from agent.store._common import CLIENT_ID_MAX_LENGTH as ASSIGNABLE_CLIENT_ID_MAX_LENGTH
from agent.store._common import CLIENT_ID_PATTERN

JSON = "application/json"
STATE_NAMES = [s.value for s in STATES]
RESULT_NAMES = [r.value for r in RUN_RESULTS]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(props: dict[str, Any], *, required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}


def _schemas() -> dict[str, Any]:
    account_props: dict[str, Any] = {
        "account": {"type": "integer", "minimum": 1, "description": "MT5 login"},
        "name": _nullable(_STR),
        "server": _nullable(_STR),
        "balance": _nullable(_NUM),
        "equity": _nullable(_NUM),
        "profit": _nullable(_NUM),
        "margin": _nullable(_NUM),
        "margin_free": _nullable(_NUM),
        "margin_level": _nullable(_NUM),
        "leverage": _nullable(_INT),
        "currency": _nullable(_STR),
        "trade_allowed": _nullable(_BOOL),
        "updated_at": _nullable({**_TIME, "description": "when a sync last wrote this account"}),
        "vps_sync_timestamp": _nullable(_TIME),
        "synced_from_vps": _nullable(_BOOL),
        "data_source": _nullable(
            {
                "type": "string",
                "description": f"{DataSource.LIVE.value} (live terminal data) or {DataSource.STORED.value} "
                "(the bridge's stored fallback, which does not reset freshness); null before any sync",
            }
        ),
        "live_data_at": _nullable({**_TIME, "description": "when the terminal last gave live data"}),
        "freshness": _ref("Freshness"),
    }
    assert tuple(account_props) == ACCOUNT_FIELDS, "the document and the serializer must list the same fields"
    run = _obj(
        {
            "run_id": _STR,
            "trigger": _STR,
            "started_at": _TIME,
            "finished_at": _nullable(_TIME),
            "duration_seconds": _nullable(_NUM),
            "result": _nullable({"type": "string", "enum": RESULT_NAMES}),
            "accounts_total": _COUNT,
            "synced_live": _COUNT,
            "synced_stored": _COUNT,
            "failed": _COUNT,
            "failures": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": [r.value for r in REASONS]},
                "description": "account -> failure reason (a closed set)",
            },
            "error": _nullable(_STR),
            "bridge_batch": _BOOL,
            "summary": _STR,
        }
    )
    thresholds = _obj({"acceptable_after": _NUM, "degraded_after": _NUM, "critical_after": _NUM})
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {"code": _STR, "message": _STR, "run_id": _STR},
                    required=["code", "message"],
                )
            }
        ),
        "Freshness": _obj(
            {
                "state": {"type": "string", "enum": STATE_NAMES},
                "age_seconds": _nullable({"type": "number", "minimum": 0}),
            },
        ),
        "Account": {**_obj(account_props), "description": "Only these fields; never credentials."},
        "Thresholds": thresholds,
        "AccountList": _obj(
            {
                "accounts": {"type": "array", "items": _ref("Account")},
                "count": _COUNT,
                "thresholds": _ref("Thresholds"),
                "generated_at": _TIME,
            }
        ),
        "ClientAccounts": _obj(
            {
                "accounts": {"type": "array", "items": _ref("Account")},
                "count": _COUNT,
                "generated_at": _TIME,
            }
        ),
        "AdminAccounts": _obj(
            {"accounts": {"type": "array", "items": _ref("Account")}, "count": _COUNT, "generated_at": _TIME}
        ),
        "Portfolio": _obj(
            {
                "accounts": {"type": "array", "items": _ref("Account")},
                "count": _COUNT,
                "totals": {
                    "type": "array",
                    "items": _obj(
                        {
                            "currency": _STR,
                            "accounts": _COUNT,
                            "balance": _NUM,
                            "equity": _NUM,
                            "profit": _NUM,
                        }
                    ),
                    "description": "sums of the stored values per currency, over the accounts that have "
                    "a currency, balance, equity and profit",
                },
                "accounts_summed": _COUNT,
                "accounts_not_summed": _COUNT,
                "not_summed": {"type": "array", "items": _INT, "description": "listed, not in totals"},
                "generated_at": _TIME,
            }
        ),
        "SyncRun": run,
        "SyncRunPage": _obj(
            {
                "runs": {"type": "array", "items": _ref("SyncRun")},
                "total": _COUNT,
                "limit": {"type": "integer", "minimum": 1, "maximum": RUNS_LIMIT_MAX},
                "offset": _COUNT,
            }
        ),
        "SyncResult": _obj(
            {
                "status": {"type": "string", "enum": RESULT_NAMES},
                "accounts_synced": _COUNT,
                "total_accounts": _COUNT,
                "run_id": _STR,
                "result": _ref("SyncRun"),
                "duration": _nullable(_NUM),
            }
        ),
        "SyncRunning": _obj(
            {
                "error": _obj(
                    {"code": {"type": "string", "enum": ["sync_running"]}, "message": _STR, "run_id": _STR}
                )
            }
        ),
        "Health": _obj(
            {
                "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                "vps_api": _obj(
                    {
                        "reachable": _nullable(_BOOL),
                        "response_time": _nullable(_NUM),
                        "status": _nullable(_STR),
                    }
                ),
                "data_freshness": _obj(
                    {
                        "oldest_update": _nullable({**_STR, "example": "2 minutes ago"}),
                        "staleness": _nullable({"type": "string", "enum": STATE_NAMES}),
                        "age_seconds": _nullable({"type": "number", "minimum": 0}),
                    }
                ),
                "last_sync": _obj(
                    {
                        "time": _nullable(_TIME),
                        "success": _nullable(_BOOL),
                        "accounts_synced": _nullable({**_STR, "example": "7/7"}),
                        "duration": _nullable(_NUM),
                        "run_id": _nullable(_STR),
                        "result": _nullable({"type": "string", "enum": RESULT_NAMES}),
                    }
                ),
                "issues": {"type": "array", "items": _STR},
                "checked_at": _TIME,
            }
        ),
        "Status": _obj(
            {
                "time": _TIME,
                "bridge": _obj(
                    {"up": _nullable(_BOOL), "status": _nullable(_STR), "response_time": _nullable(_NUM)}
                ),
                "store": _obj({"up": _BOOL}),
                "sync": _obj(
                    {
                        "running": _BOOL,
                        "last_success_at": _nullable(_TIME),
                        "last": _nullable(
                            _obj(
                                {
                                    "time": _TIME,
                                    "result": _nullable({"type": "string", "enum": RESULT_NAMES}),
                                    "accounts_synced": _COUNT,
                                    "total_accounts": _COUNT,
                                    "duration": _nullable(_NUM),
                                }
                            )
                        ),
                    }
                ),
                "accounts": _nullable(
                    _obj(
                        {
                            "total": _COUNT,
                            "by_state": _obj({s: _COUNT for s in STATE_NAMES}),
                        }
                    )
                ),
                "thresholds": _ref("Thresholds"),
            }
        ),
        "ClientAssignment": _obj(
            {
                "client_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": ASSIGNABLE_CLIENT_ID_MAX_LENGTH,
                    "pattern": CLIENT_ID_PATTERN,
                    "description": "printable ASCII other than '/' (the client paths cannot carry one)",
                    "example": "client_alejandro",
                }
            }
        ),
        "Alive": _obj({"status": {"type": "string", "enum": ["alive"]}}),
        "Ready": _obj({"ready": _BOOL, "problems": {"type": "array", "items": _STR}}),
    }


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


_RESPONSES: dict[str, Any] = {
    "BadRequest": _json("A parameter is malformed or out of range", "Error"),
    "Unauthorized": _json(
        "Credentials missing, malformed, expired or wrong",
        "Error",
        {"WWW-Authenticate": {"schema": _STR, "description": 'Bearer realm="mt5-agent"'}},
    ),
    "Forbidden": _json("Valid credentials that may not read this", "Error"),
    "NotFound": _json("No such account or client", "Error"),
    "PayloadTooLarge": _json(f"The body is larger than {BODY_MAX_BYTES} bytes", "Error"),
    "Unavailable": _json(
        "The store is unavailable, or this endpoint is disabled by configuration "
        "(admin token unset; reads on a non-loopback address without any credential configured; "
        "/metrics with a JWT secret but no token)",
        "Error",
    ),
}


def _r(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _op(
    summary: str,
    tag: str,
    ok: dict[str, Any],
    errors: list[tuple[str, str]],
    security: list[dict[str, list[str]]],
    parameters: list[dict[str, Any]] | None = None,
    description: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": summary,
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": {"200": ok, **{status: _r(name) for status, name in errors}, **(extra or {})},
    }
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    return op


_CLIENT_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": CLIENT_ID_MAX_LENGTH, "pattern": "^[^/]+$"},
    "example": "client_alejandro",
}
_ACCOUNT = {
    "name": "account",
    "in": "path",
    "required": True,
    "description": "MT5 login",
    "schema": {"type": "integer", "minimum": 1, "maximum": ACCOUNT_MAX},
    "example": 891215,
}
_STATE = {
    "name": "state",
    "in": "query",
    "required": False,
    "description": "only accounts in this freshness state",
    "schema": {"type": "string", "enum": STATE_NAMES},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": RUNS_LIMIT_MAX, "default": RUNS_LIMIT_DEFAULT},
}
_OFFSET = {
    "name": "offset",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX, "default": 0},
}

_READ_ERRORS = [("401", "Unauthorized"), ("503", "Unavailable")]
_ADMIN_ERRORS = [("401", "Unauthorized"), ("403", "Forbidden"), ("503", "Unavailable")]


def build_openapi(settings: Settings, *, metrics: bool = False) -> dict[str, Any]:
    """The document for this configuration: which credentials the read endpoints accept is live.
    `metrics`: the app serves Prometheus metrics at /metrics (registered by agent.metrics)."""
    if read_is_open(settings):
        read_security: list[dict[str, list[str]]] = []
    else:
        read_security = [
            {scheme: []}
            for scheme, name in (
                ("apiToken", "api_token"),
                ("clientJwt", "jwt_secret"),
                ("adminToken", "admin_token"),
            )
            if settings.secret(name)
        ]
    admin_security: list[dict[str, list[str]]] = [{"adminToken": []}]
    client_errors = [
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("503", "Unavailable"),
    ]
    paths: dict[str, Any] = {
        "/api/client/{client_id}/mt5-accounts": {
            "get": _op(
                "clientAccounts",
                "seed",
                _json("The client's accounts", "ClientAccounts"),
                client_errors,
                read_security,
                [_CLIENT_ID],
                "A JWT may read only its own client (403 otherwise). A client with no stored accounts "
                "is 404 for every caller.",
            )
        },
        "/api/client/{client_id}/portfolio": {
            "get": _op(
                "clientPortfolio",
                "seed",
                _json("The client's accounts with per-currency totals of the stored values", "Portfolio"),
                client_errors,
                read_security,
                [_CLIENT_ID],
                "Totals are sums of stored balance/equity/profit, nothing recalculated. Accounts "
                "missing any of them (or a currency) are listed and counted in `not_summed`.",
            )
        },
        "/api/admin/mt5/accounts": {
            "get": _op(
                "adminAccounts",
                "admin",
                _json("Every account", "AdminAccounts"),
                _ADMIN_ERRORS,
                admin_security,
            )
        },
        "/api/admin/sync-from-vps": {
            "post": _op(
                "syncFromVps",
                "admin",
                _json("The cycle ran (whatever its result)", "SyncResult"),
                _ADMIN_ERRORS,
                admin_security,
                description="Runs one sync cycle now and answers when it is done.",
                extra={"409": _json("A cycle is already running; `run_id` names it", "SyncRunning")},
            )
        },
        "/api/admin/mt5-health": {
            "get": _op(
                "mt5Health",
                "admin",
                _json("Health as the seed's section 6.3, from what the agent already knows", "Health"),
                _ADMIN_ERRORS,
                admin_security,
                description="Never calls the bridge: reports the last cycle's view and the stored data age.",
            )
        },
        "/api/admin/mt5/accounts/{account}/client": {
            "put": {
                **_op(
                    "assignClient",
                    "admin",
                    _json("The account as every endpoint shows it (never its client id)", "Account"),
                    [("400", "BadRequest"), *_ADMIN_ERRORS, ("404", "NotFound"), ("413", "PayloadTooLarge")],
                    admin_security,
                    [_ACCOUNT],
                    "Assigns the account to a client, so the client paths and a client JWT see it. The "
                    "account must be stored or listed by the source; a listed account that never synced "
                    "gets a document holding only its number and client.",
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("ClientAssignment")}},
                },
            },
            "delete": _op(
                "unassignClient",
                "admin",
                _json("The account, as every endpoint shows it", "Account"),
                [("400", "BadRequest"), *_ADMIN_ERRORS, ("404", "NotFound")],
                admin_security,
                [_ACCOUNT],
                "Removes the account's client: only token holders see it from then on.",
            ),
        },
        "/api/v1/accounts": {
            "get": _op(
                "listAccounts",
                "v1",
                _json("Accounts (a JWT sees only its own client's)", "AccountList"),
                [("400", "BadRequest"), *_READ_ERRORS],
                read_security,
                [_STATE],
            )
        },
        "/api/v1/accounts/{account}": {
            "get": _op(
                "getAccount",
                "v1",
                _json("One account", "Account"),
                [
                    ("400", "BadRequest"),
                    ("401", "Unauthorized"),
                    ("403", "Forbidden"),
                    ("404", "NotFound"),
                    ("503", "Unavailable"),
                ],
                read_security,
                [_ACCOUNT],
            )
        },
        "/api/v1/sync/runs": {
            "get": _op(
                "listSyncRuns",
                "v1",
                _json("Sync runs, newest first", "SyncRunPage"),
                [
                    ("400", "BadRequest"),
                    ("401", "Unauthorized"),
                    ("403", "Forbidden"),
                    ("503", "Unavailable"),
                ],
                read_security,
                [_LIMIT, _OFFSET],
                "For token holders (read or admin token); a JWT gets 403.",
            )
        },
        "/api/v1/status": {
            "get": _op(
                "status",
                "v1",
                _json("Bridge, store and last sync at a glance (what the status page shows)", "Status"),
                _READ_ERRORS,
                read_security,
            )
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["ops"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI document",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive",
                "tags": ["ops"],
                "security": [],
                "responses": {"200": _json("The process answers", "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Ready: the store answers and a sync cycle has run",
                "tags": ["ops"],
                "security": [],
                "responses": {
                    "200": _json("Ready", "Ready"),
                    "503": _json("Not ready, with the problems", "Ready"),
                },
            }
        },
        "/": {
            "get": {
                "operationId": "statusPage",
                "summary": "Status page (HTML, reads only this API)",
                "tags": ["ops"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    if metrics:
        text = {"schema": {"type": "string"}}
        metrics_responses: dict[str, Any] = {
            "200": {
                "description": "Prometheus text format (OpenMetrics when asked for)",
                "content": {"text/plain": text, "application/openmetrics-text": text},
            }
        }
        metrics_security: list[dict[str, list[str]]] = []
        if metrics_auth_configured(settings):
            metrics_security = [
                {scheme: []}
                for scheme, name in (
                    ("metricsToken", "metrics_token"),
                    ("apiToken", "api_token"),
                    ("adminToken", "admin_token"),
                )
                if settings.secret(name)
            ]
            metrics_responses["401"] = _r("Unauthorized")
            if not metrics_security:
                metrics_responses["503"] = _r("Unavailable")
        paths["/metrics"] = {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "Every account's balances and names: once any credential is configured, "
                "only the metrics, read or admin token may scrape (never a client JWT); see "
                "docs/metrics-auth.md. Open only when no credential is configured at all.",
                "tags": ["ops"],
                "security": metrics_security,
                "responses": metrics_responses,
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mt5-monitor agent API",
            "version": "1.0.0",
            "description": "Stored MT5 account data with its freshness, sync history and health. Values are "
            "what the terminal reported; nothing is recalculated. Every error is "
            '`{"error": {"code", "message"}}`.',
        },
        "tags": [
            {"name": "seed", "description": "The seed backend's client paths"},
            {"name": "admin", "description": "Admin token only"},
            {"name": "v1", "description": "Native read API"},
            {
                "name": "ops",
                "description": "No authentication, except /metrics once any credential is configured",
            },
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": _RESPONSES,
            "securitySchemes": {
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
                    "description": "HS256 JWT signed with MT5_AGENT_JWT_SECRET; `sub` = client id, `exp` "
                    "required; reads only that client's accounts",
                },
            },
        },
    }
