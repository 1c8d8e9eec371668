"""The bridge's OpenAPI 3.1 document, written by hand: the API is small, and a test checks that every
route is described and that real responses validate against these schemas."""

from __future__ import annotations

import copy
from typing import Any

NUM_OR_NULL = {"type": ["number", "null"]}
ISO = {"type": "string", "format": "date-time", "description": "ISO-8601 UTC, e.g. 2025-10-24T15:53:19.571Z"}
LOGIN = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props), **extra}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {
                        "type": "string",
                        "description": "stable machine code",
                        "examples": [
                            "bad_account_id",
                            "bad_request",
                            "unauthorized",
                            "unknown_account",
                            "not_found",
                            "terminal_unavailable",
                            "account_mismatch",
                            "login_failed",
                            "terminal_timeout",
                        ],
                    },
                    "message": {"type": "string"},
                }
            )
        }
    ),
    "LiveData": _obj(
        {
            "login": LOGIN,
            "name": {"type": "string"},
            "server": {"type": "string"},
            "currency": {"type": "string"},
            "leverage": {"type": "integer"},
            "balance": NUM_OR_NULL,
            "equity": NUM_OR_NULL,
            "profit": NUM_OR_NULL,
            "margin": NUM_OR_NULL,
            "margin_free": NUM_OR_NULL,
            "margin_level": {**NUM_OR_NULL, "description": "equity / margin * 100; 0 when margin is 0"},
            "trade_allowed": {"type": "boolean"},
            "timestamp": {**ISO, "description": "UTC time the terminal was read"},
        },
        description="MT5 account_info() read live; login always equals the account asked for",
    ),
    "StoredData": _obj(
        {
            "balance": NUM_OR_NULL,
            "equity": NUM_OR_NULL,
            "profit": NUM_OR_NULL,
            "margin": NUM_OR_NULL,
            "margin_free": NUM_OR_NULL,
            "margin_level": NUM_OR_NULL,
            "leverage": {"type": "integer"},
            "currency": {"type": "string"},
            "trade_allowed": {"type": "boolean"},
            "timestamp": ISO,
        },
        required=["balance", "equity", "profit", "margin", "margin_free", "currency", "timestamp"],
        description="the last values this bridge read for the account before this request (in memory)",
    ),
    "ErrorDetail": _obj({"code": {"type": "string"}, "message": {"type": "string"}}),
    "AccountInfoResponse": _obj(
        {
            "account_id": LOGIN,
            "live_data": {"oneOf": [_ref("LiveData"), {"type": "null"}]},
            "stored_data": {"oneOf": [_ref("StoredData"), {"type": "null"}]},
            "live_error": {**_ref("ErrorDetail"), "description": "why live_data is null"},
        },
        required=["account_id", "live_data", "stored_data"],
    ),
    "BalanceResponse": _obj(
        {
            "account_id": LOGIN,
            "balance": NUM_OR_NULL,
            "equity": NUM_OR_NULL,
            "profit": NUM_OR_NULL,
            "currency": {"type": "string"},
            "timestamp": ISO,
        }
    ),
    "Deal": _obj(
        {
            "ticket": {"type": "integer"},
            "order": {"type": "integer"},
            "time": {**ISO, "description": "deal time converted from broker time to UTC"},
            "type": {"type": "integer", "description": "MT5 DEAL_TYPE_* (0 buy, 1 sell, 2 balance, ...)"},
            "entry": {"type": "integer", "description": "MT5 DEAL_ENTRY_* (0 in, 1 out, 2 inout, 3 out_by)"},
            "volume": NUM_OR_NULL,
            "price": NUM_OR_NULL,
            "commission": NUM_OR_NULL,
            "swap": NUM_OR_NULL,
            "profit": NUM_OR_NULL,
            "fee": NUM_OR_NULL,
            "symbol": {"type": "string"},
            "comment": {"type": "string"},
            "position_id": {"type": "integer"},
            "magic": {"type": "integer"},
            "reason": {"type": "integer"},
        },
        required=[
            "ticket",
            "order",
            "time",
            "type",
            "entry",
            "volume",
            "price",
            "commission",
            "swap",
            "profit",
            "fee",
            "symbol",
            "comment",
            "position_id",
        ],
    ),
    "TradesResponse": _obj(
        {"account_id": LOGIN, "from": ISO, "to": ISO, "deals": {"type": "array", "items": _ref("Deal")}}
    ),
    "Position": _obj(
        {
            "ticket": {"type": "integer"},
            "time": ISO,
            "time_update": ISO,
            "type": {"type": "integer", "description": "MT5 POSITION_TYPE_* (0 buy, 1 sell)"},
            "magic": {"type": "integer"},
            "identifier": {"type": "integer"},
            "reason": {"type": "integer"},
            "volume": NUM_OR_NULL,
            "price_open": NUM_OR_NULL,
            "sl": NUM_OR_NULL,
            "tp": NUM_OR_NULL,
            "price_current": NUM_OR_NULL,
            "swap": NUM_OR_NULL,
            "profit": NUM_OR_NULL,
            "symbol": {"type": "string"},
            "comment": {"type": "string"},
        }
    ),
    "PositionsResponse": _obj(
        {"account_id": LOGIN, "timestamp": ISO, "positions": {"type": "array", "items": _ref("Position")}}
    ),
    "AccountSummary": _obj(
        {
            "account": LOGIN,
            "name": {"type": ["string", "null"]},
            "server": {"type": "string"},
            "currency": {"type": ["string", "null"]},
            "balance": {**NUM_OR_NULL, "description": "last known; null before the bridge first read it"},
            "equity": NUM_OR_NULL,
            "terminal": {"type": "string"},
            "updated_at": {"oneOf": [ISO, {"type": "null"}]},
        }
    ),
    "SummaryResponse": _obj({"accounts": {"type": "array", "items": _ref("AccountSummary")}}),
    "LiveEntry": {
        "oneOf": [
            _obj(
                {
                    "account_id": LOGIN,
                    "live_data": {"oneOf": [_ref("LiveData"), {"type": "null"}]},
                    "stored_data": {"oneOf": [_ref("StoredData"), {"type": "null"}]},
                    "live_error": _ref("ErrorDetail"),
                },
                required=["account_id", "live_data", "stored_data"],
                description="same as /account/{id}/info",
            ),
            _obj(
                {
                    "account_id": {"type": "integer"},
                    "error": _ref("ErrorDetail"),
                    "status": {"type": "integer"},
                },
                description="this account failed; status is what its own call would have returned",
            ),
        ]
    },
    "LiveBatchResponse": _obj({"timestamp": ISO, "accounts": {"type": "array", "items": _ref("LiveEntry")}}),
    "Health": _obj(
        {
            "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
            "timestamp": ISO,
            "mt5": _obj(
                {
                    "available": {"type": "boolean"},
                    "terminal_info": {"type": "object", "description": "only with a valid token"},
                },
                required=["available"],
            ),
            "features": {"type": "array", "items": {"type": "string", "enum": ["batch", "positions"]}},
            "terminals": _obj(
                {
                    "total": {"type": "integer"},
                    "healthy": {"type": "integer"},
                    "items": {"type": "array", "items": {"type": "object"}},
                },
                required=["total", "healthy"],
                description="only with a valid token",
            ),
        },
        required=["status", "timestamp", "mt5", "features"],
    ),
}

ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "BadRequest": ("400", "bad_account_id or bad_request"),
    "Unauthorized": ("401", "unauthorized: missing or wrong bearer token"),
    "UnknownAccount": ("404", "unknown_account: the bridge does not serve this account"),
    "BadGateway": ("502", "terminal_unavailable (terminal disconnected) or account_mismatch"),
    "LoginFailed": ("503", "login_failed: the terminal could not log in to the account"),
    "TerminalTimeout": ("504", "terminal_timeout: the terminal did not answer in time"),
}


def _resp(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


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


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mt5-monitor bridge",
        "version": "0.1.0",
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
                "parameters": [
                    {
                        "name": "accounts",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*$"},
                        "description": "comma-separated logins; default all",
                    }
                ],
                "responses": {
                    "200": _resp("OK", "LiveBatchResponse"),
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
