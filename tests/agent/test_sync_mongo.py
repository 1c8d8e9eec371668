"""The sync cycle with the MongoDB store on a real wire-protocol server (SecantusDB subprocess): values
land, private fields stay untouched, and a store outage fails the cycle with reason `store`, writes
nothing, and the next cycle after the server is back recovers by itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.domain.accounts import DataSource, Reason
from agent.domain.runs import RunResult
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store.mongo import MongoStore
from agent.sync.cycle import SyncService
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS, serve_seed_bridge
from tests.store.mongo_server import MongoServer, require_secantusd

SENTINEL = "mongo-password-sentinel"
DB = "fidus_production"


@pytest.fixture
def mongo(tmp_path: Path) -> Iterator[MongoServer]:
    server = MongoServer(require_secantusd(), tmp_path / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def seed() -> AsyncIterator[str]:
    async with serve_seed_bridge() as (_, url):
        yield url


async def test_mongo_sync_outage_and_recovery(mongo: MongoServer, seed: str) -> None:
    with mongo.client() as c:
        c[DB]["mt5_accounts"].insert_many(
            [
                {
                    "account": a,
                    "name": v["name"],
                    "client_id": "client_x",
                    "password": SENTINEL,
                    "balance": -1.0,
                }
                for a, v in SEED_ACCOUNTS.items()
            ]
        )
    store = MongoStore(mongo.url, database=DB, timeout_ms=1500)
    client = BridgeClient(seed, timeout=2.0)
    svc = SyncService(store, BridgeSource(client), health_backoff=0.01)
    try:
        assert await svc.ensure_ready()
        run = await svc.run_cycle()
        assert run.result is RunResult.SUCCESS and run.synced_live == 7
        with mongo.client() as c:
            docs = {d["account"]: d for d in c[DB]["mt5_accounts"].find({}, {"_id": 0})}
        for account, v in SEED_ACCOUNTS.items():
            assert docs[account]["balance"] == v["balance"]
            assert docs[account]["data_source"] == DataSource.LIVE.value
            assert docs[account]["password"] == SENTINEL and docs[account]["client_id"] == "client_x"
        assert len(docs) == 7  # updated in place: no duplicate documents

        mongo.stop()
        down = await svc.run_cycle()
        assert down.result is RunResult.FAILED
        assert (down.error or "").startswith("store:")
        assert set(down.failures.values()) == {Reason.STORE.value} and len(down.failures) == 7
        assert svc.fleet.status.store_up is False
        states = [a for a in svc.fleet.snapshot().accounts.values() if a.has_sync_state]
        assert all(st.consecutive_failures == 1 for st in states)

        mongo.start()
        back = await svc.run_cycle()
        assert back.result is RunResult.SUCCESS
        assert svc.fleet.status.store_up is True
        with mongo.client() as c:
            states = {d["account"]: d for d in c[DB]["mt5_sync_state"].find({}, {"_id": 0})}
            runs = list(c[DB]["mt5_sync_runs"].find({}, {"_id": 0}))
        assert all(s["consecutive_failures"] == 0 for s in states.values())
        # The run during the outage is recorded once the store is back, in order.
        assert [r["run_id"] for r in sorted(runs, key=lambda r: r["started_at"])] == [
            run.run_id,
            down.run_id,
            back.run_id,
        ]
    finally:
        await client.close()
        await store.close()
