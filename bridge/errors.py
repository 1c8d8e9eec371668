"""Bridge errors: each carries the HTTP status and the stable `code` clients switch on."""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base class; `code` is part of the API contract, `message` is for humans."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class BadAccountId(BridgeError):
    status, code = 400, "bad_account_id"


class BadRequest(BridgeError):
    status, code = 400, "bad_request"


class Unauthorized(BridgeError):
    status, code = 401, "unauthorized"


class UnknownAccount(BridgeError):
    status, code = 404, "unknown_account"


class UnknownSymbol(BridgeError):
    """The account's terminal has no bars for the symbol (not one its broker offers)."""

    status, code = 404, "unknown_symbol"


class TerminalUnavailable(BridgeError):
    """The terminal cannot be reached or is not connected to the trade server."""

    status, code = 502, "terminal_unavailable"


class NoLiveData(TerminalUnavailable):
    """Connected and logged in, but the terminal returned no account data (the seed's partial-data case).
    /info answers 200 with live_data null; elsewhere it is a plain terminal_unavailable."""


class AccountMismatch(BridgeError):
    """The terminal answered with another account's data: never serve it as the requested one."""

    status, code = 502, "account_mismatch"


class LoginFailed(BridgeError):
    status, code = 503, "login_failed"


class TerminalTimeout(BridgeError):
    status, code = 504, "terminal_timeout"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
