"""Store selection by MT5_AGENT_STORE_URL, and the test-server policy (skip locally, fail in CI)."""

from __future__ import annotations

import os

import pytest

from agent.store import Store, StoreConfigError, StoreError, open_store, validate_store_url
from agent.store.mongo import MongoStore
from agent.store.sqlite import SQLiteStore

from . import mongo_server


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/agent.db", "data/agent.db"),
        ("sqlite:////var/lib/mt5/agent.db", "/var/lib/mt5/agent.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///my%20dir/a.db", "my dir/a.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    store = open_store(url, timeout_ms=100, accounts_collection="ignored for sqlite")
    assert isinstance(store, SQLiteStore) and isinstance(store, Store)
    assert store.path == (path if path == ":memory:" else os.path.abspath(path))


@pytest.mark.parametrize(
    "url", ["mongodb://127.0.0.1:27017/", "mongodb+srv://user:pw@cluster0.example.net/?retryWrites=true"]
)
def test_mongo_urls(url: str) -> None:
    store = open_store(url, mongo_database="other_db", timeout_ms=100)
    assert isinstance(store, MongoStore) and isinstance(store, Store)
    assert store.database == "other_db"
    assert "pw" not in repr(store)


def test_mongo_database_defaults_to_the_seed_name() -> None:
    store = open_store("mongodb://127.0.0.1:27017/")
    assert isinstance(store, MongoStore) and store.database == "fidus_production"


@pytest.mark.parametrize(
    "url",
    ["postgres://u:topsecret@db/x", "sqlite://relative.db", "sqlite:///", "agent.db", "", "mysql://h/db"],
)
def test_other_urls_are_one_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match="MT5_AGENT_STORE_URL") as err:
        open_store(url)
    message = str(err.value)
    assert "\n" not in message
    assert "topsecret" not in message  # only the scheme is echoed


def test_a_missing_test_server_is_skipped_locally_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongo_server, "find_secantusd", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="secantusd-py"):
        mongo_server.require_secantusd()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="NOT RUN"):
        mongo_server.require_secantusd()


@pytest.mark.parametrize("url", ["postgres://u:topsecret@db/x", "sqlite:///", "mongodb://h:notaport/"])
def test_a_bad_url_is_a_store_config_error_and_a_value_error(url: str) -> None:
    """Typed (issue 11): callers catch StoreConfigError; settings validation still sees a ValueError."""
    with pytest.raises(StoreConfigError) as err:
        validate_store_url(url)
    assert isinstance(err.value, ValueError) and isinstance(err.value, StoreError)
    with pytest.raises(StoreConfigError, match="MT5_AGENT_STORE_URL"):
        open_store(url)
