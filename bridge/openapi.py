"""The bridge's OpenAPI 3.1 document. The schemas are generated from the pydantic models of its responses
(bridge.schema: JSON Schema 2020-12, which OpenAPI 3.1 uses as is); the paths are listed here. A test
checks that every route is described and that real responses validate against these schemas."""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from bridge import __version__, schema

SCHEMA_REF = "#/components/schemas/{model}"
LOGIN = {"type": "integer", "minimum": 1, "maximum": schema.MAX_LOGIN}


class _Untitled(GenerateJsonSchema):
    """No `title` on every property: the names say it already."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(m, "validation") for m in schema.RESPONSE_MODELS],
        ref_template=SCHEMA_REF,
        schema_generator=_Untitled,
    )
    return dict(sorted(top["$defs"].items()))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=name)}


SCHEMAS: dict[str, Any] = _schemas()

ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "BadRequest": ("400", "bad_account_id or bad_request"),
    "Unauthorized": ("401", "unauthorized: missing or wrong bearer token"),
    "UnknownAccount": (
        "404",
        "unknown_account: the bridge does not serve this account; unknown_symbol: no bars for the symbol",
    ),
    "BadGateway": ("502", "terminal_unavailable (terminal disconnected) or account_mismatch"),
    "LoginFailed": ("503", "login_failed: the terminal could not log in to the account"),
    "TerminalTimeout": ("504", "terminal_timeout: the terminal did not answer in time"),
}


def _resp(description: str, name: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*names: str) -> dict[str, Any]:
    return {ERROR_RESPONSES[n][0]: {"$ref": f"#/components/responses/{n}"} for n in names}


ACCOUNT_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": LOGIN,
    "description": "MT5 login",
    "example": 886557,
}
TERMINAL_ERRORS = (
    "BadRequest",
    "Unauthorized",
    "UnknownAccount",
    "BadGateway",
    "LoginFailed",
    "TerminalTimeout",
)


def _account_op(
    summary: str, schema: str, extra_params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [ACCOUNT_ID_PARAM, *(extra_params or [])],
            "responses": {"200": _resp("OK", schema), **_errors(*TERMINAL_ERRORS)},
        }
    }


_ACCOUNTS_PARAM: dict[str, Any] = {
    "name": "accounts",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*$"},
    "description": "comma-separated logins; default all",
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mt5-monitor bridge",
        "version": __version__,
        "description": "Reads MetaTrader 5 terminals. One terminal is logged into one account at a time; the "
        "bridge serialises access per terminal and checks that the account it read is the one asked for. "
        "All times are UTC.",
    },
    "security": [{"bearerAuth": []}],
    "paths": {
        "/api/mt5/bridge/health": {
            "get": {
                "summary": "Bridge health from cached state (never waits on a terminal)",
                "description": "Answers without a token; terminal details only with a valid token.",
                "security": [{}, {"bearerAuth": []}],
                "responses": {"200": _resp("health", "Health")},
            }
        },
        "/api/mt5/accounts/summary": {
            "get": {
                "summary": "Every account with its last known balance (no terminal access)",
                "responses": {"200": _resp("OK", "SummaryResponse"), **_errors("Unauthorized")},
            }
        },
        "/api/mt5/accounts/live": {
            "get": {
                "summary": "Live data of many accounts in one call; failures reported per account",
                "parameters": [_ACCOUNTS_PARAM],
                "responses": {
                    "200": _resp("OK", "LiveBatchResponse"),
                    **_errors("BadRequest", "Unauthorized"),
                },
            }
        },
        "/api/mt5/accounts/positions": {
            "get": {
                "summary": "Open positions of many accounts in one call (feature positions_batch); failures "
                "reported per account",
                "parameters": [_ACCOUNTS_PARAM],
                "responses": {
                    "200": _resp("OK", "PositionsBatchResponse"),
                    **_errors("BadRequest", "Unauthorized"),
                },
            }
        },
        "/api/mt5/account/{id}/info": _account_op(
            "Live account data plus the last stored values; live_data is null when the terminal has none",
            "AccountInfoResponse",
        ),
        "/api/mt5/account/{id}/balance": _account_op("Live balance, equity and profit", "BalanceResponse"),
        "/api/mt5/account/{id}/trades": _account_op(
            "Deal history between two instants (default: the last 7 days)",
            "TradesResponse",
            [
                {
                    "name": n,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "format": "date-time"},
                    "description": f"ISO-8601, naive means UTC; {d}",
                }
                for n, d in (("from", "default to minus 7 days"), ("to", "default now"))
            ],
        ),
        "/api/mt5/account/{id}/positions": _account_op("Open positions", "PositionsResponse"),
        "/api/mt5/account/{id}/rates/{symbol}": _account_op(
            "The last bars of a symbol from the account's terminal (feature rates)",
            "RatesResponse",
            [
                {
                    "name": "symbol",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._#+-]{0,31}$"},
                },
                {
                    "name": "timeframe",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["M1", "M5", "M15", "M30", "H1", "H4", "D1"], "default": "M5"},
                },
                {
                    "name": "count",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 100},
                },
            ],
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of the bridge itself",
                "description": "MT5 call durations by function, lock waits, call failures by reason, "
                "terminal_up per terminal, HTTP request durations, build info and process series, in the "
                "Prometheus text format (OpenMetrics when the Accept header asks for it). Needs the "
                "bearer token when the bridge has one.",
                "responses": {
                    "200": {
                        "description": "Prometheus exposition",
                        "content": {
                            "text/plain; version=0.0.4": {"schema": {"type": "string"}},
                            "application/openmetrics-text; version=1.0.0": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors("Unauthorized"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [{}],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
    },
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
        "responses": {name: _resp(desc, "Error") for name, (_, desc) in ERROR_RESPONSES.items()},
    },
}


def build_document() -> dict[str, Any]:
    """A fresh copy, so no caller can alter the served document."""
    return copy.deepcopy(_DOCUMENT)
