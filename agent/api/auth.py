"""Who is calling, and what they may read.

Three credentials, all `Authorization: Bearer ...`:

- the admin token (MT5_AGENT_ADMIN_TOKEN): the only admin credential; also reads everything;
- the read token (MT5_AGENT_API_TOKEN) for trusted backends: reads everything, never admin;
- an HS256 JWT signed with MT5_AGENT_JWT_SECRET (`sub` = client id, `exp` required): reads only its
  own client's accounts, never the sync history, never admin.

Admin endpoints without an admin token configured answer 503 rather than being open. Read endpoints
with nothing configured are open only while the agent listens on loopback (the embedded default);
otherwise 503. Tokens are compared in constant time and never logged.

`/metrics` carries every account's balances and names, so it is closed as soon as any credential is
configured: it then takes the metrics token (MT5_AGENT_METRICS_TOKEN, for Prometheus), the read token
or the admin token, and never a client JWT (a client would see the other clients). docs/metrics-auth.md.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from agent.api.errors import ApiError
from agent.config import Settings, is_loopback

REALM = 'Bearer realm="mt5-agent"'
METRICS_PATH = "/metrics"
# Any of these configured closes /metrics; the first three are the tokens it then accepts.
METRICS_TOKENS = ("metrics_token", "api_token", "admin_token")
CREDENTIALS = (*METRICS_TOKENS, "jwt_secret")
JWT_ALGORITHMS = ["HS256"]
JWT_LEEWAY_SECONDS = 30  # clock skew between the token issuer and this host


class Role(StrEnum):
    ADMIN = "admin"
    READER = "reader"  # the read token
    CLIENT = "client"  # a per-client JWT
    ANONYMOUS = "anonymous"  # no auth configured, loopback only


@dataclass(frozen=True)
class Caller:
    role: Role
    client_id: str | None = None

    @property
    def sees_all(self) -> bool:
        return self.role is not Role.CLIENT

    def check_client(self, client_id: str | None) -> None:
        """403 unless this caller may read the accounts of `client_id`."""
        if self.sees_all:
            return
        if client_id is None or not _same(client_id, self.client_id or ""):
            raise ApiError(403, "forbidden", "this token may read only its own client's accounts")


def _same(a: str, b: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may hold anything.
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def _unauthorized(message: str, *, invalid: bool) -> ApiError:
    challenge = REALM + (', error="invalid_token"' if invalid else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("expected 'Authorization: Bearer <token>'", invalid=True)
    return token.strip()


def read_auth_configured(settings: Settings) -> bool:
    return any(settings.secret(n) for n in ("admin_token", "api_token", "jwt_secret"))


def read_is_open(settings: Settings) -> bool:
    """Read endpoints need no credentials: nothing configured and listening on loopback only."""
    return not read_auth_configured(settings) and is_loopback(settings.listen_host)


def identify(token: str, settings: Settings) -> Caller:
    """The caller a bearer token proves; 401 when it proves nothing."""
    admin = settings.secret("admin_token")
    if admin and _same(token, admin):
        return Caller(Role.ADMIN)
    api = settings.secret("api_token")
    if api and _same(token, api):
        return Caller(Role.READER)
    secret = settings.secret("jwt_secret")
    if secret and token.count(".") == 2:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=JWT_ALGORITHMS,
                options={"require": ["sub", "exp"]},
                leeway=JWT_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired", invalid=True) from None
        except jwt.InvalidTokenError:
            raise _unauthorized("invalid token", invalid=True) from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _unauthorized("invalid token: 'sub' must name the client", invalid=True)
        return Caller(Role.CLIENT, client_id=sub)
    raise _unauthorized("invalid token", invalid=True)


def require_read(request: web.Request, settings: Settings) -> Caller:
    if not read_auth_configured(settings):
        if is_loopback(settings.listen_host):
            return Caller(Role.ANONYMOUS)
        raise ApiError(
            503,
            "auth_not_configured",
            "read endpoints are disabled: the agent listens on a non-loopback address and none of "
            "MT5_AGENT_API_TOKEN, MT5_AGENT_JWT_SECRET or MT5_AGENT_ADMIN_TOKEN is set",
        )
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("credentials required: 'Authorization: Bearer <token>'", invalid=False)
    return identify(token, settings)


def require_admin(request: web.Request, settings: Settings) -> Caller:
    if not settings.secret("admin_token"):
        raise ApiError(
            503,
            "admin_disabled",
            "admin endpoints are disabled: set MT5_AGENT_ADMIN_TOKEN (or MT5_AGENT_ADMIN_TOKEN_FILE)",
        )
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("admin token required: 'Authorization: Bearer <admin token>'", invalid=False)
    caller = identify(token, settings)
    if caller.role is not Role.ADMIN:
        raise ApiError(403, "forbidden", "this endpoint needs the admin token")
    return caller


def metrics_auth_configured(settings: Settings) -> bool:
    """/metrics needs a bearer token: any credential at all is configured."""
    return any(settings.secret(n) for n in CREDENTIALS)


def require_metrics(request: web.Request, settings: Settings) -> None:
    """401 unless the bearer token is the metrics, read or admin token (a JWT never is)."""
    tokens = [t for n in METRICS_TOKENS if (t := settings.secret(n))]
    if not tokens:
        # Only a JWT secret: no token could ever scrape, and a client JWT must not. Say what to set.
        raise ApiError(
            503,
            "metrics_auth_not_configured",
            "/metrics needs a token: set MT5_AGENT_METRICS_TOKEN (or MT5_AGENT_METRICS_TOKEN_FILE)",
        )
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("credentials required: 'Authorization: Bearer <metrics token>'", invalid=False)
    # Every token compared, in constant time, whichever matches: the timing says nothing about which.
    matched = [_same(token, t) for t in tokens]
    if not any(matched):
        raise _unauthorized("invalid token", invalid=True)


def _is_metrics(request: web.Request) -> bool:
    """The request reaches the /metrics route (matched by resource, so no spelling of the path escapes)."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical == METRICS_PATH


def metrics_auth_middleware(settings: Settings) -> Middleware:
    """Guards the /metrics route that agent.metrics registers, without that module knowing about auth.
    Nothing configured: nothing checked (the loopback default stays open, as before)."""
    protected = metrics_auth_configured(settings)

    @web.middleware
    async def metrics_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if protected and _is_metrics(request):
            require_metrics(request, settings)
        return await handler(request)

    return metrics_auth
