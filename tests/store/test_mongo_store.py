"""MongoDB-only behaviour against a real wire-protocol server: indexes, one bulk write per cycle, error
mapping without credentials, and a server going down and coming back under the same store object."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from agent.domain.accounts import AccountSyncState
from agent.domain.runs import SyncRun
from agent.store.errors import StoreError, StoreUnavailable
from agent.store.mongo import CollectionNames, MongoStore, split_credentials
from tests.ports import free_port

from .factories import T0, update
from .mongo_server import MongoServer, require_secantusd

SECRET = "s3cr3t-Pa55word"
FAST_MS = 500  # timeout for tests that expect the store to be down
DOWN_BOUND_S = 5.0  # a down store must answer within this


async def test_indexes_are_unique_on_account_and_run_id(
    mongo_store: MongoStore, mongo_server: MongoServer
) -> None:
    with mongo_server.client() as client:
        db = client[mongo_store.database]
        accounts = db["mt5_accounts"].index_information()
        runs = db["mt5_sync_runs"].index_information()
        states = db["mt5_sync_state"].index_information()
    assert any(i["key"] == [("account", 1)] and i.get("unique") for i in accounts.values())
    assert any(i["key"] == [("run_id", 1)] and i.get("unique") for i in runs.values())
    assert any(i["key"] == [("account", 1)] and i.get("unique") for i in states.values())


async def test_a_cycle_is_one_bulk_write_per_collection(
    mongo_store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    real = AsyncCollection.bulk_write

    async def counting(self: AsyncCollection[Any], requests: Any, *args: Any, **kw: Any) -> Any:
        calls[self.name] += 1
        assert kw.get("ordered") is False
        return await real(self, requests, *args, **kw)

    monkeypatch.setattr(AsyncCollection, "bulk_write", counting)
    await mongo_store.write_cycle([update(n) for n in range(50)], [AccountSyncState(n) for n in range(50)])

    assert calls == Counter({"mt5_accounts": 1, "mt5_sync_state": 1})
    assert len(await mongo_store.accounts.get_accounts()) == 50


async def test_open_adopts_an_existing_collection(mongo_server: MongoServer, database: str) -> None:
    with mongo_server.client() as client:
        coll = client[database]["mt5_accounts"]
        coll.create_index("account", unique=True)  # as the earlier system left it: account_1
        coll.insert_one({"account": 891215, "client_id": "client_alejandro", "password": "x", "balance": 1.0})
    s = MongoStore(mongo_server.url, database=database)
    await s.open()
    try:
        await s.write_cycle([update(891215, 27047.52)], [])
        [record] = await s.accounts.get_accounts(client_id="client_alejandro")
        assert record.balance == 27047.52
    finally:
        await s.close()
    with mongo_server.client() as client:
        indexes = client[database]["mt5_accounts"].index_information()
    assert sorted(indexes) == ["_id_", "account_1"]


async def test_open_reports_duplicate_accounts_it_cannot_index(
    mongo_server: MongoServer, database: str
) -> None:
    with mongo_server.client() as client:
        client[database]["mt5_accounts"].insert_many([{"account": 1}, {"account": 1}])
    s = MongoStore(mongo_server.url, database=database)
    try:
        with pytest.raises(StoreError, match=r"MongoDB open failed \(\w+\)") as err:
            await s.open()
        assert "duplicate" in str(err.value).lower() or "E11000" in str(err.value)
    finally:
        await s.close()


async def test_an_unreachable_server_fails_fast_without_credentials() -> None:
    url = f"mongodb://mt5user:{SECRET}@127.0.0.1:{free_port()}/?authSource=admin"
    s = MongoStore(url, timeout_ms=FAST_MS)
    assert SECRET not in repr(s) and SECRET not in s.display_url
    try:
        for call in (s.open, s.ping, lambda: s.write_cycle([update(1)], []), s.accounts.get_accounts):
            started = time.monotonic()
            with pytest.raises(StoreError) as err:
                await call()
            assert time.monotonic() - started < DOWN_BOUND_S
            message = str(err.value)
            assert SECRET not in message and "mt5user" not in message
            assert err.value.__cause__ is None and err.value.__suppress_context__
            assert len(message) < 400
    finally:
        await s.close()


async def test_rejected_credentials_are_not_echoed(mongo_server: MongoServer) -> None:
    # The test server runs without --auth and rejects any authentication attempt: a real OperationFailure.
    url = mongo_server.url.replace("mongodb://", f"mongodb://mt5user:{SECRET}@")
    s = MongoStore(url, timeout_ms=2000)
    try:
        with pytest.raises(StoreError, match="OperationFailure") as err:
            await s.open()
        assert SECRET not in str(err.value) and "mt5user" not in str(err.value)
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("url", "display", "secret"),
    [
        ("mongodb://u:p%40ss%2Fword@h1:1,h2:2/db?x=1", "mongodb://h1:1,h2:2/", "p@ss/word"),
        (
            "mongodb+srv://admin:hunter22@cluster0.example.net",
            "mongodb+srv://cluster0.example.net/",
            "hunter22",
        ),
        ("mongodb://127.0.0.1:27017/?directConnection=true", "mongodb://127.0.0.1:27017/", None),
    ],
)
def test_split_credentials(url: str, display: str, secret: str | None) -> None:
    shown, secrets = split_credentials(url)
    assert shown == display
    if secret is None:
        assert secrets == []
    else:
        assert secret in secrets


async def _wait_until_up(store: MongoStore, timeout_s: float = 60.0) -> None:
    """Poll the same store object until it answers (each attempt is bounded by its own timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await store.ping()
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise


async def test_a_store_outage_fails_fast_and_recovers_by_itself(tmp_path: Path) -> None:
    server = MongoServer(require_secantusd(), tmp_path / "data")
    server.start()
    store = MongoStore(server.url, database="outage", timeout_ms=FAST_MS)
    late = MongoStore(server.url, database="outage", timeout_ms=FAST_MS)
    try:
        await store.open()
        await store.write_cycle([update(1, 10.0)], [AccountSyncState(1, 0)])

        server.stop()
        for call in (store.ping, lambda: store.write_cycle([update(1, 11.0)], [AccountSyncState(1, 1)])):
            started = time.monotonic()
            with pytest.raises(StoreError):
                await call()
            assert time.monotonic() - started < DOWN_BOUND_S
        with pytest.raises(StoreError):
            await late.open()  # an agent starting while the store is down

        server.start()  # same port, same data directory
        await _wait_until_up(store)
        await store.write_cycle([update(1, 12.0), update(2, 20.0)], [AccountSyncState(1, 0, None)])
        assert [(r.account, r.balance) for r in await store.accounts.get_accounts()] == [(1, 12.0), (2, 20.0)]

        await late.open()  # the same object that failed to open now works, indexes included
        assert [r.account for r in await late.accounts.get_accounts()] == [1, 2]
        assert (await late.sync_state.get_sync_states())[1].last_reason is None
    finally:
        await store.close()
        await late.close()
        server.stop()


async def test_a_rejected_write_maps_to_store_error(mongo_server: MongoServer, database: str) -> None:
    # A server-side validator (as a DBA might add) refuses negative balances: a real BulkWriteError.
    with mongo_server.client() as client:
        client[database].create_collection(
            "mt5_accounts", validator={"$jsonSchema": {"properties": {"balance": {"minimum": 0}}}}
        )
    s = MongoStore(mongo_server.url, database=database)
    await s.open()
    try:
        with pytest.raises(StoreError, match=r"BulkWriteError.*1 write error.*validation"):
            await s.write_cycle([update(1, 5.0), update(2, -5.0)], [])
        assert [r.account for r in await s.accounts.get_accounts()] == [1]  # unordered: the valid one landed
    finally:
        await s.close()


# -- issue 11: typed errors, collections by name ---------------------------------------------------


async def test_an_unreachable_server_is_unavailable() -> None:
    s = MongoStore(f"mongodb://127.0.0.1:{free_port()}/", timeout_ms=FAST_MS)
    try:
        for call in (s.open, s.ping, lambda: s.write_cycle([update(1)], []), s.runs.count_runs):
            with pytest.raises(StoreUnavailable):
                await call()
    finally:
        await s.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        await s.accounts.get_accounts()


async def test_a_server_refusal_is_a_plain_store_error(mongo_server: MongoServer, database: str) -> None:
    """The server answered: refused credentials, a validator. Not a timeout, not the data's 64 bits."""
    url = mongo_server.url.replace("mongodb://", f"mongodb://mt5user:{SECRET}@")
    s = MongoStore(url, timeout_ms=2000)
    try:
        with pytest.raises(StoreError) as err:
            await s.open()
        assert type(err.value) is StoreError
    finally:
        await s.close()
    with mongo_server.client() as client:
        client[database].create_collection(
            "mt5_accounts", validator={"$jsonSchema": {"properties": {"balance": {"minimum": 0}}}}
        )
    s = MongoStore(mongo_server.url, database=database)
    await s.open()
    try:
        with pytest.raises(StoreError, match="BulkWriteError") as err:
            await s.write_cycle([update(2, -5.0)], [])
        assert type(err.value) is StoreError
    finally:
        await s.close()


async def test_collections_are_chosen_by_name(mongo_server: MongoServer, database: str) -> None:
    s = MongoStore(
        mongo_server.url,
        database=database,
        accounts_collection="acc",
        runs_collection="runs",
        state_collection="state",
    )
    assert s.collections == CollectionNames(accounts="acc", runs="runs", sync_state="state")
    assert CollectionNames() == CollectionNames("mt5_accounts", "mt5_sync_runs", "mt5_sync_state")
    await s.open()
    try:
        await s.write_cycle([update(1)], [AccountSyncState(1, 2)])
        await s.runs.record_run(SyncRun("r1", started_at=T0))
    finally:
        await s.close()
    with mongo_server.client() as client:
        db = client[database]
        # Every concern's collection exists once its indexes are made; only the chosen ones hold data.
        assert sorted(db.list_collection_names()) == [
            "acc",
            "mt5_agent_shards",
            "mt5_deals",
            "mt5_equity",
            "mt5_positions",
            "mt5_trade_event_keys",
            "mt5_trade_events",
            "runs",
            "state",
        ]
        assert [d["account"] for d in db["acc"].find()] == [1]
        assert [d["consecutive_failures"] for d in db["state"].find()] == [2]
        assert [d["run_id"] for d in db["runs"].find()] == ["r1"]
        assert any(i.get("unique") for n, i in db["acc"].index_information().items() if n != "_id_")
