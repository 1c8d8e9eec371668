"""`mt5_accounts` in SQLite: each account a JSON document, so provisioning fields (client_id, fund_type,
credentials...) survive untouched, and a sync merges only the synced fields into it with JSON1's
json_patch. Reads extract allow-listed fields only: nothing else ever leaves the database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agent.domain.accounts import (
    INSERT_ONLY_FIELDS,
    RECORD_FIELDS,
    VALUE_FIELDS,
    AccountRecord,
    AccountUpdate,
)
from agent.store.checks import INT64_MAX, INT64_MIN, check_account, check_client_id, check_storable
from agent.store.codec import SOURCE_FIELD, last_per_account, record_from, source_items, valid_source
from agent.store.errors import StoreRejected
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection, transaction
from agent.store.sqlite.encoding import IsoMemo, dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_accounts (
    account   INTEGER PRIMARY KEY,
    doc       TEXT NOT NULL,
    client_id TEXT GENERATED ALWAYS AS (json_extract(doc, '$.client_id')) VIRTUAL
);
CREATE INDEX IF NOT EXISTS mt5_accounts_client_id ON mt5_accounts (client_id);
"""

# Inserts the whole new document; on an existing account merges it minus the insert-only fields, so
# INSERT_ONLY_FIELDS and every provisioning field keep their stored values (Mongo's $set/$setOnInsert).
_UPSERT_ACCOUNT = (
    "INSERT INTO mt5_accounts (account, doc) VALUES (?, ?) "
    "ON CONFLICT (account) DO UPDATE SET doc = json_patch(doc, json_remove(excluded.doc, "
    + ", ".join(f"'$.{f}'" for f in INSERT_ONLY_FIELDS)
    + "))"
)
# A missing document is created with only account and client_id; an existing one gets client_id set
# and nothing else touched.
_SET_CLIENT = (
    "INSERT INTO mt5_accounts (account, doc) VALUES (?, json_object('account', ?, 'client_id', ?)) "
    "ON CONFLICT (account) DO UPDATE SET "
    "doc = json_set(doc, '$.client_id', json_extract(excluded.doc, '$.client_id'))"
)
_UNSET_CLIENT = "UPDATE mt5_accounts SET doc = json_remove(doc, '$.client_id') WHERE account = ?"
_PUT_ACCOUNT = """INSERT INTO mt5_accounts (account, doc) VALUES (?, ?)
    ON CONFLICT (account) DO UPDATE SET doc = excluded.doc"""
# Multi-path json_extract returns a JSON array: only allow-listed fields ever leave the database.
_RECORD_VALUE_FIELDS = tuple(f for f in RECORD_FIELDS if f != "account")
_SELECT_RECORDS = (
    "SELECT account, json_extract(doc, "
    + ", ".join(f"'$.{f}'" for f in _RECORD_VALUE_FIELDS)
    + ") FROM mt5_accounts"
)

# The source holding an account (agent bookkeeping, agent.store.codec.SOURCE_FIELD): existing documents only.
_SELECT_SOURCES = f"SELECT account, json_extract(doc, '$.{SOURCE_FIELD}') FROM mt5_accounts"
_SET_SOURCE = f"UPDATE mt5_accounts SET doc = json_set(doc, '$.{SOURCE_FIELD}', ?) WHERE account = ?"


def _storable(update: AccountUpdate, key: str, value: Any, iso: IsoMemo) -> Any:
    if isinstance(value, datetime):
        return iso[value]
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        # SQLite's JSON would read it back as a rounded float; refuse it, as BSON does. (check_storable
        # has refused it already: this is the backstop.)
        raise StoreRejected(f"account {update.account}: {key} does not fit in 64 bits", [update.account])
    return value


def account_doc(update: AccountUpdate, iso: IsoMemo) -> dict[str, Any]:
    """The document a new account gets (Mongo's upsert of filter + $setOnInsert + $set): the same dict,
    key order included, as `{"account", **update.insert_fields(), **update.set_fields()}` with times as
    ISO text (tests/store/test_sqlite_encoding.py), built without the intermediate dicts: it runs for
    every account of every cycle."""
    doc: dict[str, Any] = {"account": _storable(update, "account", update.account, iso)}
    for key in INSERT_ONLY_FIELDS:
        value = getattr(update, key)
        if value is not None:
            doc[key] = _storable(update, key, value, iso)
    values = update.values
    for key in VALUE_FIELDS:
        value = getattr(values, key)
        if value is not None:
            kind = type(value)
            plain = kind is float or kind is str or kind is bool
            doc[key] = value if plain else _storable(update, key, value, iso)
    doc["updated_at"] = synced = iso[update.synced_at]
    doc["synced_from_vps"] = True
    doc["vps_sync_timestamp"] = synced
    doc["data_source"] = update.data_source.value
    if update.live_data_at is not None:
        doc["live_data_at"] = iso[update.live_data_at]
    return doc


def update_rows(updates: Sequence[AccountUpdate], iso: IsoMemo) -> list[tuple[int, str]]:
    """Encoded off the event loop, before the transaction: most of a 10,000-account cycle's cost."""
    return [(u.account, dumps(account_doc(u, iso))) for u in updates]


def write_update_rows(conn: sqlite3.Connection, rows: Sequence[tuple[int, str]]) -> None:
    """Inside the caller's transaction."""
    conn.executemany(_UPSERT_ACCOUNT, rows)


class SQLiteAccounts:
    """`AccountStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    async def _records(self, op: str, where: str, params: tuple[Any, ...]) -> list[AccountRecord]:
        sql = f"{_SELECT_RECORDS} {where} ORDER BY account"

        def read_sync(conn: sqlite3.Connection) -> list[AccountRecord]:
            return [
                record_from(account, dict(zip(_RECORD_VALUE_FIELDS, json.loads(values), strict=True)))
                for account, values in conn.execute(sql, params)
            ]

        return await self._db.run(op, read_sync, read=True)

    @operation("get_accounts")
    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        if client_id is None:
            return await self._records("get_accounts", "", ())
        return await self._records("get_accounts", "WHERE client_id = ?", (client_id,))

    @operation("get_account")
    async def get_account(self, account: int) -> AccountRecord | None:
        records = await self._records("get_account", "WHERE account = ?", (account,))
        return records[0] if records else None

    @operation("write_updates")
    async def write_updates(self, updates: Sequence[AccountUpdate]) -> None:
        updates = last_per_account(updates)
        if not updates:
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            check_storable(updates, ())
            rows = update_rows(updates, IsoMemo())
            with transaction(conn):
                write_update_rows(conn, rows)

        await self._db.run("write_updates", write_sync)

    @operation("put_account_documents")
    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        rows = []
        for doc in docs:
            account = doc.get("account")
            if not isinstance(account, int) or isinstance(account, bool):
                raise ValueError(f"account document needs an integer 'account', got {account!r}")
            try:
                rows.append((account, dumps({k: v for k, v in doc.items() if k != "_id"})))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"account {account} document is not storable: {exc}") from None
        if not rows:
            return

        def put_sync(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(_PUT_ACCOUNT, rows)

        await self._db.run("put_account_documents", put_sync)

    @operation("set_client")
    async def set_client(self, account: int, client_id: str | None) -> None:
        check_account(account)
        check_client_id(client_id)

        def set_sync(conn: sqlite3.Connection) -> None:
            if client_id is None:
                conn.execute(_UNSET_CLIENT, (account,))
            else:
                conn.execute(_SET_CLIENT, (account, account, client_id))

        await self._db.run("set_client", set_sync)

    @operation("get_sources")
    async def get_sources(self) -> dict[int, str]:
        def read_sync(conn: sqlite3.Connection) -> dict[int, str]:
            rows = conn.execute(_SELECT_SOURCES)
            return {account: source for account, source in rows if valid_source(source)}

        return await self._db.run("get_sources", read_sync, read=True)

    @operation("set_sources")
    async def set_sources(self, sources: Mapping[int, str]) -> None:
        rows = [(source, account) for account, source in source_items(sources)]
        if not rows:
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(_SET_SOURCE, rows)

        await self._db.run("set_sources", write_sync)
