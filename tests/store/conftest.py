"""Fixtures running one contract suite against both stores: SQLite on a temp file and MongoDB on a real
wire-protocol server (secantusd-py subprocess, one per session, a fresh database per test)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store.base import Store
from agent.store.codec import iso_ms
from agent.store.mongo import MongoStore
from agent.store.sqlite import SQLiteStore

from .mongo_server import MongoServer, require_secantusd


class Backend:
    """Makes store instances over one backing storage (so a test can 'restart' the store) and reads
    raw documents behind the store's back (to see fields no AccountRecord carries)."""

    name: str

    def make(self) -> Store:
        raise NotImplementedError

    def raw_account(self, account: int) -> dict[str, Any] | None:
        raise NotImplementedError

    def put_raw_run(self, doc: dict[str, Any]) -> None:
        """Store a run document as is (e.g. one an older or newer agent wrote)."""
        raise NotImplementedError

    def put_raw_event(self, event_id: int, doc: dict[str, Any]) -> None:
        """Store an event document as is, with its id (e.g. one a newer agent wrote)."""
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def make(self) -> SQLiteStore:
        return SQLiteStore(str(self.path))

    def raw_account(self, account: int) -> dict[str, Any] | None:
        conn = sqlite3.connect(self.path)
        try:
            row = conn.execute("SELECT doc FROM mt5_accounts WHERE account = ?", (account,)).fetchone()
        finally:
            conn.close()
        return json.loads(row[0]) if row else None

    def put_raw_run(self, doc: dict[str, Any]) -> None:
        conn = sqlite3.connect(self.path)
        try:
            text = json.dumps(doc, default=iso_ms)
            conn.execute(
                "INSERT INTO mt5_sync_runs (run_id, started_at, doc) VALUES (?, ?, ?)",
                (doc["run_id"], iso_ms(doc["started_at"]), text),
            )
            conn.commit()
        finally:
            conn.close()

    def put_raw_event(self, event_id: int, doc: dict[str, Any]) -> None:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute(
                "INSERT INTO mt5_trade_events (id, dedup_key, account, type, detected_at, doc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event_id,
                    doc["dedup_key"],
                    doc["account"],
                    doc["type"],
                    iso_ms(doc["detected_at"]),
                    json.dumps(doc, default=iso_ms),
                ),
            )
            conn.commit()
        finally:
            conn.close()


class MongoBackend(Backend):
    name = "mongo"

    def __init__(self, server: MongoServer, database: str) -> None:
        self.server = server
        self.database = database

    def make(self) -> MongoStore:
        return MongoStore(self.server.url, database=self.database, timeout_ms=5000)

    def raw_account(self, account: int) -> dict[str, Any] | None:
        with self.server.client() as client:
            return client[self.database]["mt5_accounts"].find_one({"account": account}, {"_id": 0})

    def put_raw_run(self, doc: dict[str, Any]) -> None:
        with self.server.client() as client:
            client[self.database]["mt5_sync_runs"].insert_one(dict(doc))

    def put_raw_event(self, event_id: int, doc: dict[str, Any]) -> None:
        with self.server.client() as client:
            client[self.database]["mt5_trade_events"].insert_one({"_id": event_id, **doc})

    def drop(self) -> None:
        with self.server.client() as client:
            client.drop_database(self.database)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(require_secantusd(), tmp_path_factory.mktemp("secantus") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "mongo"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield SQLiteBackend(tmp_path / "store.db")
        return
    server: MongoServer = request.getfixturevalue("mongo_server")
    mongo = MongoBackend(server, f"test_{uuid.uuid4().hex[:16]}")
    yield mongo
    mongo.drop()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def database(mongo_server: MongoServer) -> Iterator[str]:
    """A fresh database name on the session's server, dropped after the test (MongoDB-only tests)."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with mongo_server.client() as client:
        client.drop_database(name)


@pytest.fixture
async def mongo_store(mongo_server: MongoServer, database: str) -> AsyncIterator[MongoStore]:
    s = MongoStore(mongo_server.url, database=database)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
