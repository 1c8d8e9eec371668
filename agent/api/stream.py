"""`WS /api/v1/stream`: the stored trade events, replayed from a cursor and then live, in id order
(DESIGN.md section 11). The protocol, close codes and choices are in docs/stream.md.

One `Session` per connection: the handler's task authenticates, says `hello` and reads the client's
messages; a sender task replays from the store and then sends what the hub (agent.live.hub) queues for
its subscription, with heartbeats. The subscription is made BEFORE the replay is read, so an event stored
meanwhile is both replayed and queued: the sender drops queued ids at or below the last one replayed,
which leaves no gap and no duplicate at the seam. Events are encoded once by the hub and the same bytes
go to every client (`send_frame`, no per-client copy, no compression).

Access is the REST API's (agent.api.auth): the admin and read tokens see every account, a client JWT
only its client's, and its stream is closed when the token stops being accepted (`exp` plus the same
leeway). A token is never taken from the query string (it would land in access logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import WSMsgType, hdrs, web
from pydantic import Field

from agent.api.auth import (
    JWT_LEEWAY_SECONDS,
    Caller,
    Role,
    bearer_token,
    identify,
    read_auth_configured,
    require_read,
)
from agent.api.common import known_accounts, settings
from agent.api.errors import ApiError
from agent.api.keys import STORE
from agent.api.schema import Schema
from agent.api.spec import Operation, documented
from agent.api.trades import EVENT_ID_MAX, event_json
from agent.domain.trades import EventType, TradeEvent
from agent.live.hub import EventHub, Subscription
from agent.store.base import cursor_expired
from agent.store.errors import StoreError

log = logging.getLogger("mt5_agent.stream")
routes = web.RouteTableDef()

STREAM_PATH = "/api/v1/stream"
SUBPROTOCOL = "bearer"
# Close codes (docs/stream.md). 4000-4999 are the application's; 4xxx mirrors the HTTP status it means.
CLOSE_GOING_AWAY = 1001  # the agent stops
CLOSE_UNSUPPORTED = 1003  # a binary frame
CLOSE_POLICY = 1008  # too many bad messages in a row
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013  # the store did not answer
CLOSE_SLOW = 4008  # the client fell more than its queue behind: resume with `after`
CLOSE_AUTH = 4401  # no, a wrong or an expired token (also when a JWT expires while streaming)
CLOSE_CURSOR_EXPIRED = 4410  # `after` is older than the retained history

MAX_MESSAGE_BYTES = 64 * 1024  # a client message larger than this is closed 1009 by aiohttp
MAX_ACCOUNTS = 1000  # in one subscribe
MAX_BAD_MESSAGES = 20  # in a row, then 1008
REPLAY_PAGE = 500
CLOSE_TIMEOUT = 10.0  # seconds a close may take (a slow client reads its backlog first), then dropped
HUB_READY_WAIT = 5.0  # seconds a subscribe waits for the hub to reach the store
DIRECT_MAX_BUFFER = 64 * 1024  # bytes unsent on a socket above which a live event is queued, not written
_TYPES = {t.value: t for t in EventType}
_SUBSCRIBE_KEYS = {"op", "accounts", "types", "after"}

HUB = web.AppKey("mt5_stream_hub", EventHub)
SESSIONS = web.AppKey("mt5_stream_sessions", set["Session"])


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Frame:
    """One event message: its JSON, and the whole WebSocket text frame a server sends it in (unmasked,
    uncompressed: the same bytes for every client)."""

    payload: bytes
    wire: bytes


def text_frame(payload: bytes) -> bytes:
    """RFC 6455 5.2: FIN + text opcode, the payload length (7 bits, or 126 + 16, or 127 + 64), no mask."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def event_frame(event: TradeEvent) -> Frame:
    """One event message, as every client receives it (the hub calls this once per event)."""
    payload = encode({"type": "event", "event": event_json(event)})
    return Frame(payload, text_frame(payload))


def setup_stream(app: web.Application, hub: EventHub) -> None:
    """Give the stream its hub (the composition root's call); its streams are closed (1001) when the app
    shuts down, before its cleanup closes the store."""
    app[HUB] = hub
    app[SESSIONS] = set()
    app.on_shutdown.append(close_streams)


async def close_streams(app: web.Application) -> None:
    sessions = list(app.get(SESSIONS, ()))
    for session in sessions:
        session.close_soon(CLOSE_GOING_AWAY, "shutdown", "agent stopping")
    closing = [s.closing for s in sessions if s.closing is not None]
    if closing:
        await asyncio.wait(closing, timeout=CLOSE_TIMEOUT + 1)


class Protocol400(ValueError):
    """A client message that is not what the protocol allows (answered with an `error` message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Subscribe:
    accounts: frozenset[int] | None
    types: frozenset[EventType] | None
    after: int | None


def parse_subscribe(data: dict[str, Any]) -> Subscribe:
    unknown = set(data) - _SUBSCRIBE_KEYS
    if unknown:
        raise Protocol400(
            "invalid_subscribe", f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:80]}"
        )
    accounts = data.get("accounts")
    if accounts is not None:
        if not isinstance(accounts, list) or len(accounts) > MAX_ACCOUNTS:
            raise Protocol400("invalid_subscribe", f"accounts must be a list of at most {MAX_ACCOUNTS} ids")
        if not all(type(a) is int and 1 <= a <= EVENT_ID_MAX for a in accounts):
            raise Protocol400("invalid_subscribe", "accounts must be positive integers")
    types = data.get("types")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) and t in _TYPES for t in types):
            raise Protocol400("invalid_subscribe", f"types must be a list of {', '.join(_TYPES)}")
    after = data.get("after")
    if after is not None and not (type(after) is int and 0 <= after <= EVENT_ID_MAX):
        raise Protocol400("invalid_subscribe", "after must be an event id (an integer >= 0) or null")
    return Subscribe(
        accounts=frozenset(accounts) if accounts is not None else None,
        types=frozenset(_TYPES[t] for t in types) if types is not None else None,
        after=after,
    )


def offered_token(request: web.Request) -> str | None:
    """The token of `Sec-WebSocket-Protocol: bearer, <token>`, else of `Authorization: Bearer`."""
    values = [
        v.strip() for h in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ()) for v in h.split(",")
    ]
    if SUBPROTOCOL in values:
        i = values.index(SUBPROTOCOL)
        if i + 1 < len(values) and values[i + 1]:
            return values[i + 1]
    try:
        return bearer_token(request)
    except ApiError:
        return ""  # malformed: refused like a wrong token


class Session:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, hub: EventHub) -> None:
        self.request = request
        self.ws = ws
        self.hub = hub
        self.observer = hub.observer
        cfg = settings(request)
        self.heartbeat = cfg.stream_heartbeat
        self.auth_timeout = cfg.stream_auth_timeout
        self.queue = cfg.stream_queue
        self.caller: Caller | None = None
        self.sub: Subscription | None = None
        self.after: int | None = None  # the replay's start (None: live only)
        self.start = 0  # the id after which this stream delivers (what `subscribed` said)
        self.last = 0  # the id of the last event sent (replayed or live)
        self.replay_accounts: frozenset[int] | None = None
        self.types: frozenset[EventType] | None = None
        self.subscribed = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        self.closing: asyncio.Task[None] | None = None
        self.reason: str | None = None  # why it ended (metrics label); None: the client's doing
        self._expiry: asyncio.TimerHandle | None = None
        self._last_send = time.monotonic()
        self._bad = 0
        self._transport = request.transport  # this connection's socket (the direct writes go there)

    # --- sending -----------------------------------------------------------------------------------

    async def send(self, kind: str, message: dict[str, Any]) -> None:
        await self.ws.send_frame(encode({"type": kind, **message}), WSMsgType.TEXT)
        self._last_send = time.monotonic()
        self.observer.on_stream_sent(kind)

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.send("error", {"code": code, "message": message, **extra})

    def close_soon(self, code: int, reason: str, message: str) -> None:
        """Start closing (once): leave the hub, close with `code` (bounded in time). The sender is not
        cancelled: it may be waiting for the socket to drain, and aiohttp's writers share that wait (a
        cancelled one cancels the close frame's too). It stops by itself: its queue says closed, and
        aiohttp refuses frames after the close frame."""
        if self.closing is not None:
            return
        self.reason = reason
        if self.sub is not None:
            self.hub.unsubscribe(self.sub)
        self.closing = asyncio.get_running_loop().create_task(self._close(code, message))

    async def _close(self, code: int, message: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), CLOSE_TIMEOUT)

    # --- the connection ----------------------------------------------------------------------------

    async def run(self) -> None:
        sessions = self.request.app[SESSIONS]
        sessions.add(self)
        self.observer.on_stream_opened()
        try:
            if await self._authenticate() and await self._hello():
                self.sender = asyncio.get_running_loop().create_task(self._send_loop())
                await self._read_loop()
        except Exception:
            log.exception("event stream failed")
            self.close_soon(CLOSE_INTERNAL, "internal", "internal error")
        finally:
            sessions.discard(self)
            if self._expiry is not None:
                self._expiry.cancel()
            if self.sub is not None:
                self.hub.unsubscribe(self.sub)
            if self.closing is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.closing
            elif not self.ws.closed:
                await self._close(1000, "")
            if self.sender is not None:  # the connection is closed: no send of it is waiting to drain
                self.sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.sender
            self.observer.on_stream_closed(self.reason or "client")

    async def _authenticate(self) -> bool:
        cfg = settings(self.request)
        if not read_auth_configured(cfg):
            self.caller = require_read(self.request, cfg)  # anonymous (loopback: checked before upgrade)
            return True
        token = offered_token(self.request)
        if token is None:
            token = await self._auth_message()
            if token is None:
                return False
        try:
            self.caller = identify(token, cfg)
        except ApiError as exc:
            self.close_soon(CLOSE_AUTH, "auth_failed", exc.message)
            return False
        if self.caller.role is Role.CLIENT:
            exp = jwt.decode(token, options={"verify_signature": False})["exp"]  # verified by identify
            delay = float(exp) + JWT_LEEWAY_SECONDS - time.time()  # as long as the REST API accepts it
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, delay), self.close_soon, CLOSE_AUTH, "token_expired", "token expired"
            )
        return True

    async def _auth_message(self) -> str | None:
        """The token of a first `{"op": "auth", "token": ...}` message; None when closed instead."""
        try:
            msg = await self.ws.receive(timeout=self.auth_timeout)
        except TimeoutError:
            self.close_soon(CLOSE_AUTH, "auth_failed", "authentication required")
            return None
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            if msg.type is WSMsgType.ERROR:
                self.reason = "protocol_error"
            return None
        data: Any = None
        if msg.type is WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                data = json.loads(msg.data)
        if isinstance(data, dict) and data.get("op") == "auth" and isinstance(data.get("token"), str):
            return str(data["token"])
        self.close_soon(CLOSE_AUTH, "auth_failed", 'authentication required: first {"op": "auth", "token"}')
        return None

    async def _hello(self) -> bool:
        events = self.request.app[STORE].events
        try:
            latest = await events.latest_id()
            oldest = await events.oldest_available()
        except StoreError as exc:
            log.warning("event stream: store unavailable for hello (%s)", exc)
            self.close_soon(CLOSE_TRY_LATER, "store_unavailable", "store unavailable")
            return False
        await self.send(
            "hello", {"heartbeat_s": self.heartbeat, "latest_id": latest, "oldest_available": oldest}
        )
        return True

    async def _read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                self.close_soon(CLOSE_UNSUPPORTED, "protocol_error", "text frames only")
            elif msg.type is WSMsgType.ERROR:  # an oversized or malformed frame: aiohttp closes it
                self.reason = self.reason or "protocol_error"
                break

    async def _on_text(self, text: str) -> None:
        try:
            try:
                data = json.loads(text)
            except ValueError:
                raise Protocol400("bad_message", "not JSON") from None
            if not isinstance(data, dict) or not isinstance(data.get("op"), str):
                raise Protocol400("bad_message", 'expected a JSON object with an "op"')
            if data["op"] == "subscribe":
                await self._subscribe(parse_subscribe(data))
            elif data["op"] == "auth":
                raise Protocol400("bad_message", "already authenticated")
            else:
                raise Protocol400("unknown_op", "op must be subscribe")
            self._bad = 0
        except Protocol400 as exc:
            self._bad += 1
            if self._bad > MAX_BAD_MESSAGES:
                self.close_soon(CLOSE_POLICY, "protocol_error", "too many bad messages")
                return
            await self.send_error(exc.code, exc.message)

    async def _subscribe(self, request: Subscribe) -> None:
        caller = self.caller
        assert caller is not None
        if self.sub is not None or self.closing is not None:
            raise Protocol400("already_subscribed", "one subscribe per connection: reconnect to change it")
        client_id = None if caller.sees_all else caller.client_id
        replay_accounts = request.accounts
        if client_id is not None:
            fleet = known_accounts(self.request)
            if fleet is None:
                self.close_soon(CLOSE_TRY_LATER, "store_unavailable", "accounts not loaded yet")
                return
            owned = frozenset(a for a, state in fleet.items() if state.client_id == client_id)
            if request.accounts is not None and not request.accounts <= owned:
                raise Protocol400("forbidden", "this token may read only its own client's accounts")
            replay_accounts = request.accounts if request.accounts is not None else owned
        if not await self.hub.wait_ready(HUB_READY_WAIT) or self.closing is not None:
            self.close_soon(CLOSE_TRY_LATER, "store_unavailable", "store unavailable")
            return
        self.sub = self.hub.subscribe(
            accounts=request.accounts,
            types=request.types,
            client_id=client_id,
            limit=self.queue,
            on_overflow=self._overflowed,
        )
        start = request.after if request.after is not None else (self.hub.cursor or 0)
        self.after, self.replay_accounts, self.types = request.after, replay_accounts, request.types
        self.start = start
        await self.send(
            "subscribed",
            {
                "after": start,
                "accounts": sorted(request.accounts) if request.accounts is not None else None,
                "types": sorted(t.value for t in request.types) if request.types is not None else None,
            },
        )
        self.subscribed.set()

    def _overflowed(self) -> None:
        self.close_soon(CLOSE_SLOW, "slow_consumer", "too slow: resume with after")

    # --- the sender --------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        try:
            while not self.subscribed.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._until_heartbeat()):
                        await self.subscribed.wait()
                if not self.subscribed.is_set():
                    await self.send("heartbeat", {})
            sub = self.sub
            assert sub is not None
            last = await self._replay() if self.after is not None else self.start
            if last is None:
                return
            self.last = last
            text = WSMsgType.TEXT
            while self.closing is None:
                sub.direct = self._direct  # idle: the hub may write live events itself
                items = await sub.take(self._until_heartbeat())
                sub.direct = None  # busy sending: what comes meanwhile is queued behind
                if sub.closed:
                    return
                if not items:
                    if self._until_heartbeat() <= 0:
                        await self.send("heartbeat", {})
                    continue
                sent = 0
                for event_id, frame in items:
                    if event_id <= self.last:  # replayed already (stored while the replay was read)
                        continue
                    await self.ws.send_frame(frame.payload, text)
                    self.last = event_id
                    sent += 1
                if sent:
                    self._last_send = time.monotonic()
                    self.observer.on_stream_sent("event", sent)
        except (ConnectionError, RuntimeError):  # the connection went away meanwhile
            return
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            log.warning("event stream: store unavailable for a replay (%s)", exc)
            await self.send_error("store_unavailable", "store unavailable: resume with after")
            self.close_soon(CLOSE_TRY_LATER, "store_unavailable", "store unavailable")
        except Exception:
            log.exception("event stream sender failed")
            self.close_soon(CLOSE_INTERNAL, "internal", "internal error")

    def _direct(self, item: tuple[int, Frame]) -> bool:
        """A live event written to the socket at once, from the hub's fan-out (no task switch, no copy: the
        prebuilt frame), while this sender is idle and the socket drains; False: queue it instead."""
        event_id, frame = item
        if event_id <= self.last:
            return True  # replayed already
        transport = self._transport
        if (
            transport is None
            or self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_MAX_BUFFER
        ):
            return False
        transport.write(frame.wire)
        self.last = event_id
        self._last_send = time.monotonic()
        return True

    def _until_heartbeat(self) -> float:
        return self._last_send + self.heartbeat - time.monotonic()

    async def _replay(self) -> int | None:
        """Send the stored events after `after`; the id of the last one (or `after`), None when closed."""
        assert self.after is not None
        events = self.request.app[STORE].events
        cursor, sent, first = self.after, 0, True
        accounts = set(self.replay_accounts) if self.replay_accounts is not None else None
        types = set(self.types) if self.types is not None else None
        while True:
            page = await events.list_events(after=cursor, limit=REPLAY_PAGE, accounts=accounts, types=types)
            if first:
                # Both read after the page (a prune between the check and the read is caught), the latest
                # id first: an event stored between the two reads then never passes for a pruned one.
                latest = await events.latest_id()
                oldest = await events.oldest_available()
                if cursor_expired(self.after, oldest, latest):
                    await self.send_error(
                        "cursor_expired",
                        f"events after {self.after} are no longer retained (oldest available: {oldest}); "
                        "re-read the positions and resume from their as_of_event_id",
                        # as the REST API's 410: where to resume (oldest null: every event was pruned)
                        oldest_available=oldest,
                        latest_id=latest,
                    )
                    self.close_soon(CLOSE_CURSOR_EXPIRED, "cursor_expired", "cursor expired")
                    return None
                first = False
            for event in page:
                await self.ws.send_frame(event_frame(event).payload, WSMsgType.TEXT)
                assert event.id is not None
                cursor = event.id
                sent += 1
            if len(page) < REPLAY_PAGE:
                break
        self.observer.on_stream_replayed(sent)
        if sent:
            self._last_send = time.monotonic()
            self.observer.on_stream_sent("event", sent)
        return cursor


class StreamInfo(Schema):
    """What a plain GET (not a WebSocket upgrade) answers: how to connect."""

    websocket: str = Field(description="this path, to open with a WebSocket client")
    subprotocol: str = Field(description="offer `bearer, <token>` in Sec-WebSocket-Protocol")
    heartbeat_s: float
    auth_timeout_s: float = Field(description="seconds to send the auth message when no token was offered")
    queue: int = Field(description="events queued per client; a client further behind is closed 4008")
    docs: str


@routes.get(STREAM_PATH)
@documented(
    Operation(
        "streamEvents",
        "Trade events, replayed from a cursor then live (WebSocket)",
        "events",
        "read",
        StreamInfo,
        "not a WebSocket upgrade: how to connect (an upgrade answers 101 and streams)",
        errors=(400, 401, 403, 503),
        responses={101: ("Switching Protocols: the event stream (docs/stream.md)", None)},
        description="A WebSocket (RFC 6455). The token goes in `Sec-WebSocket-Protocol: bearer, <token>` "
        '(the server answers `bearer`) or in a first message `{"op": "auth", "token"}` within 10 s, never '
        "in the query string (400). Then `hello`, `subscribe` {accounts, types, after}, the replay, live "
        "events, heartbeats; close codes 4401 (auth, token expired), 4008 (too slow: resume with "
        "`after`), 4410 (cursor expired), 1001 (agent stopping). See docs/stream.md.",
    )
)
async def stream(request: web.Request) -> web.StreamResponse:
    if request.query_string:
        # Never echoed nor logged here: it may hold a token (the log formatter scrubs JWTs and `token=`).
        raise ApiError(
            400,
            "query_not_allowed",
            "the stream takes no query parameters; send the token in Sec-WebSocket-Protocol or in the "
            "auth message, never in the URL",
        )
    cfg = settings(request)
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,),
        compress=False,
        max_msg_size=MAX_MESSAGE_BYTES,
        timeout=CLOSE_TIMEOUT,
        heartbeat=None,
    )
    if not ws.can_prepare(request).ok:
        require_read(request, cfg)  # as every read endpoint: 401 without credentials
        info = {
            "websocket": STREAM_PATH,
            "subprotocol": SUBPROTOCOL,
            "heartbeat_s": cfg.stream_heartbeat,
            "auth_timeout_s": cfg.stream_auth_timeout,
            "queue": cfg.stream_queue,
            "docs": "docs/stream.md",
        }
        return web.json_response(info)
    if not read_auth_configured(cfg):
        require_read(request, cfg)  # 503 off loopback, as every read endpoint
    hub = request.app.get(HUB)
    if hub is None:
        raise ApiError(503, "unavailable", "the event stream is not wired in this agent")
    await ws.prepare(request)
    await Session(request, ws, hub).run()
    return ws
