"""`mt5_sync_runs` in SQLite: each run a JSON document, ordered by its start time (ISO text sorts)."""

from __future__ import annotations

import json
import sqlite3

from agent.domain.runs import SyncRun
from agent.store.codec import iso_ms, run_from_doc, run_to_doc
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection
from agent.store.sqlite.encoding import dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_sync_runs (
    seq        INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL UNIQUE,
    started_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mt5_sync_runs_newest ON mt5_sync_runs (started_at DESC, seq DESC);
"""

_UPSERT_RUN = (
    "INSERT INTO mt5_sync_runs (run_id, started_at, doc) VALUES (?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET started_at = excluded.started_at, doc = excluded.doc"
)


class SQLiteRuns:
    """`RunStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("record_run")
    async def record_run(self, run: SyncRun) -> None:
        row = (run.run_id, iso_ms(run.started_at), dumps(run_to_doc(run)))
        await self._db.run("record_run", lambda conn: conn.execute(_UPSERT_RUN, row))

    @operation("list_runs")
    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")

        def list_sync(conn: sqlite3.Connection) -> list[SyncRun]:
            rows = conn.execute(
                "SELECT doc FROM mt5_sync_runs ORDER BY started_at DESC, seq DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [run_from_doc(json.loads(doc)) for (doc,) in rows]

        return await self._db.run("list_runs", list_sync, read=True)

    @operation("count_runs")
    async def count_runs(self) -> int:
        return await self._db.run(
            "count_runs",
            lambda conn: conn.execute("SELECT count(*) FROM mt5_sync_runs").fetchone()[0],
            read=True,
        )
