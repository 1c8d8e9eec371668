"""The batch answer's pre-encoded pieces are exactly json.dumps of the dicts the single-account answers
use, for any values a terminal could hand over (non-finite and negative-zero numbers, ints where floats
belong, huge integers, any text, any time zone); the summary, written from the same pieces, is the bytes
of the dict-per-account answer it replaced."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.api import (
    StoredPieces,
    _num,
    accounts_live,
    accounts_summary,
    create_app,
    encode_read,
    iso_utc,
    live_data,
    stored_data,
)
from bridge.pool import AccountRead, TerminalPool
from bridge.simulated import SimulatedTerminal, demo_accounts
from bridge.terminal import AccountCredentials, AccountInfo

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0.0, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]),
)
texts = st.text() | st.sampled_from(["", "Zoë ✓", '"\\\t\n', "\x00\x1f\x7f", "𝄞", "</script>"])
zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-3, minutes=-30))])
instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 30), timezones=zones)


@st.composite
def reads(draw: st.DrawFn) -> AccountRead:
    fields: dict[str, Any] = dict(
        login=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        leverage=draw(st.integers(min_value=0, max_value=2**62) | st.floats(allow_nan=False)),
        trade_allowed=draw(st.booleans() | st.integers(0, 2)),
        balance=draw(numbers),
        equity=draw(numbers),
        profit=draw(numbers),
        margin=draw(numbers),
        margin_free=draw(numbers),
        margin_level=draw(numbers),
        name=draw(texts),
        server=draw(texts),
        currency=draw(texts),
    )
    return AccountRead(AccountInfo(**fields), draw(instants))


@settings(max_examples=400, deadline=None)
@given(reads())
def test_pieces_are_json_dumps_of_the_dicts(read: AccountRead) -> None:
    live, stored = encode_read(read)
    assert live == json.dumps(live_data(read))
    assert stored == json.dumps(stored_data(read))


def test_stored_pieces_reuse_only_the_same_read() -> None:
    info = AccountInfo(login=7, balance=1.5, name="x", server="s", currency="USD")
    first = AccountRead(info, datetime(2026, 1, 1, tzinfo=UTC))
    second = AccountRead(info._replace(balance=2.5), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    pieces = StoredPieces()
    assert pieces.stored(7, None) == "null"
    assert pieces.stored(7, first) == json.dumps(stored_data(first))  # never seen: encoded there and then
    assert pieces.live(7, first) == json.dumps(live_data(first))
    kept = pieces.stored(7, first)
    assert kept == json.dumps(stored_data(first)) and pieces.stored(7, first) is kept
    assert pieces.stored(7, second) == json.dumps(stored_data(second))  # another read: not the kept piece


def _reference_summary(pool: TerminalPool) -> str:
    """The summary as it was written before pieces: a dict per account, one json.dumps."""
    out = []
    for login in pool.accounts:
        creds, known = pool.credentials(login), pool.last_known(login)
        info = known.info if known else None
        out.append(
            {
                "account": login,
                "name": creds.name or (info.name if info else None),
                "server": creds.server,
                "currency": (info.currency if info else None) or creds.currency or None,
                "balance": _num(info.balance) if info else None,
                "equity": _num(info.equity) if info else None,
                "terminal": pool.handle(login).name,
                "updated_at": iso_utc(known.read_at) if known else None,
            }
        )
    return json.dumps({"accounts": out})


async def test_summary_is_the_dict_answer_byte_for_byte() -> None:
    """Credentials without a name or currency (a real bridge's config may leave them out), accounts never
    read, read by the batch, and read by a single call after it (not the kept piece)."""
    accounts = demo_accounts()
    term = SimulatedTerminal(accounts, name='sim "ë"', static=True)
    creds = [a.credentials() for a in accounts]
    creds[0] = AccountCredentials(creds[0].login, creds[0].password, creds[0].server)  # no name, no currency
    creds[1] = AccountCredentials(creds[1].login, creds[1].password, creds[1].server, name="Named")
    pool = TerminalPool([(term, creds)])
    app = create_app(pool, token=None)
    try:

        async def summary() -> str:
            response = await accounts_summary(
                make_mocked_request("GET", "/api/mt5/accounts/summary", app=app)
            )
            assert isinstance(response, web.Response) and response.text is not None
            return response.text

        assert await summary() == _reference_summary(pool)  # nothing read yet
        await accounts_live(
            make_mocked_request("GET", f"/api/mt5/accounts/live?accounts={creds[2].login}", app=app)
        )
        assert await summary() == _reference_summary(pool)
        await pool.read_many([c.login for c in creds], 5.0)  # reads the pieces never saw
        await pool.read_account(creds[2].login, 5.0)
        assert await summary() == _reference_summary(pool)
    finally:
        pool.close()
        assert pool.join(5.0)
