"""Settings: TOML + env (env wins), *_FILE secrets, and one clear line naming a bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import (
    ConfigError,
    Schedule,
    check_store_location,
    known_env_names,
    load_settings,
    unknown_env_warnings,
)
from agent.domain.freshness import State, Thresholds


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("MT5_AGENT_"):
            monkeypatch.delenv(k)


def test_defaults_are_the_contract() -> None:
    s = load_settings()
    assert s.bridge_url == "http://127.0.0.1:8000"
    assert s.store_url == "sqlite:///./mt5-agent.db"
    assert s.mongo_database == "fidus_production"
    assert s.parsed_schedule == Schedule(cron_minute="1-59/5")
    assert (s.listen_host, s.listen_port) == ("127.0.0.1", 8080)
    assert s.thresholds == Thresholds(300, 600, 900)
    assert s.secret("admin_token") is None


def test_env_wins_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('schedule = "10s"\nbridge_url = "http://127.0.0.1:9000"\n')
    monkeypatch.setenv("MT5_AGENT_SCHEDULE", "5m")
    s = load_settings(cfg)
    assert s.bridge_url == "http://127.0.0.1:9000"
    assert s.parsed_schedule.interval_seconds == 300


def test_secret_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "admin"
    f.write_text("tok-123\n")
    monkeypatch.setenv("MT5_AGENT_ADMIN_TOKEN_FILE", str(f))
    s = load_settings()
    assert s.secret("admin_token") == "tok-123"
    assert "tok-123" not in repr(s)


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("MT5_AGENT_SCHEDULE", "every tuesday", "MT5_AGENT_SCHEDULE"),
        ("MT5_AGENT_FRESHNESS", "600,300,900", "MT5_AGENT_FRESHNESS"),
        ("MT5_AGENT_LISTEN", "nonsense", "MT5_AGENT_LISTEN"),
        ("MT5_AGENT_BRIDGE_URL", "ftp://x", "MT5_AGENT_BRIDGE_URL"),
        ("MT5_AGENT_STORE_URL", "postgres://x", "MT5_AGENT_STORE_URL"),
        ("MT5_AGENT_REQUEST_TIMEOUT", "-1", "MT5_AGENT_REQUEST_TIMEOUT"),
        ("MT5_AGENT_ADMIN_TOKEN_FILE", "/nonexistent/file", "ADMIN_TOKEN"),
        ("MT5_AGENT_JWT_SECRET", "short", "MT5_AGENT_JWT_SECRET"),
        # Finding 7: URLs that used to pass here and fail later (traceback, or every cycle skipped).
        ("MT5_AGENT_BRIDGE_URL", "http://127.0.0.1:notaport", "MT5_AGENT_BRIDGE_URL: the port must be"),
        ("MT5_AGENT_BRIDGE_URL", "http://127.0.0.1:0", "MT5_AGENT_BRIDGE_URL: the port must be"),
        ("MT5_AGENT_BRIDGE_URL", "http://exa mple.com", "MT5_AGENT_BRIDGE_URL"),
        ("MT5_AGENT_STORE_URL", "sqlite:///", "MT5_AGENT_STORE_URL: a SQLite URL needs a path"),
        ("MT5_AGENT_STORE_URL", "mongodb://127.0.0.1:notaport/", "MT5_AGENT_STORE_URL: not a valid MongoDB"),
        ("MT5_AGENT_STORE_URL", "mongodb://u:pw@[::1/", "MT5_AGENT_STORE_URL: not a valid MongoDB URL"),
        ("MT5_AGENT_STORE_URL", "mongodb://", "MT5_AGENT_STORE_URL: not a valid MongoDB URL"),
        ("MT5_AGENT_STORE_URL", "mongodb://h/?nosuchoption=1", "MT5_AGENT_STORE_URL: not a valid MongoDB"),
        ("MT5_AGENT_STORE_URL", "mongodb+srv://h:27017/", "MT5_AGENT_STORE_URL: not a valid MongoDB URL"),
    ],
)
def test_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://admin:Sup3rSecretPw@127.0.0.1:notaport/",
        "mongodb://admin:Sup3rSecretPw@[::1/",
        "mongodb://admin:Sup3r%53ecretPw@h:99999/",
        "mongodb://h/?tlsCertificateKeyFilePassword=Sup3rSecretPw&tls=maybe",
        "postgres://admin:Sup3rSecretPw@h/db",
    ],
)
def test_bad_store_url_never_echoes_credentials(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MT5_AGENT_STORE_URL", url)
    with pytest.raises(ConfigError, match="MT5_AGENT_STORE_URL") as exc:
        load_settings()
    assert "Sup3r" not in str(exc.value) and "\n" not in str(exc.value)


def test_bad_bridge_url_never_echoes_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT5_AGENT_BRIDGE_URL", "http://user:Sup3rSecretPw@127.0.0.1:port")
    with pytest.raises(ConfigError, match="MT5_AGENT_BRIDGE_URL") as exc:
        load_settings()
    assert "Sup3r" not in str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://127.0.0.1:27017/",
        "mongodb://u:p%40ss@db1:27017,db2:27018/fidus?replicaSet=rs0&authSource=admin",
        "mongodb://[::1]:27017/",
        "mongodb+srv://user:pw@cluster0.example.net/?retryWrites=true",
        "sqlite:///./mt5-agent.db",
        "sqlite:///:memory:",
    ],
)
def test_good_store_urls_pass(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MT5_AGENT_STORE_URL", url)
    assert load_settings().store_url == url


def test_missing_sqlite_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT5_AGENT_STORE_URL", f"sqlite:///{tmp_path / 'gone' / 'a.db'}")
    settings = load_settings()  # parsing alone cannot know: the command that opens the store checks
    with pytest.raises(ConfigError) as exc:
        check_store_location(settings)
    assert str(exc.value) == (
        f"invalid setting MT5_AGENT_STORE_URL: directory {tmp_path / 'gone'} does not exist "
        f"(SQLite file {tmp_path / 'gone' / 'a.db'})"
    )
    monkeypatch.setenv("MT5_AGENT_STORE_URL", f"sqlite:///{tmp_path}")
    with pytest.raises(ConfigError, match="is a directory"):
        check_store_location(load_settings())
    monkeypatch.setenv("MT5_AGENT_STORE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    check_store_location(load_settings())


def test_unknown_environment_variables_are_named() -> None:
    env = {
        "MT5_AGENT_SHEDULE": "5m",
        "mt5_agent_schedule": "5m",  # a known setting in any case
        "MT5_AGENT_PROBE_INTERVAL": "15",
        "MT5_AGENT_TOTALLY_ELSE": "secret-value",
        "MT5_BRIDGE_TOKEN": "x",  # the bridge's own variables are not the agent's
        "PATH": "/bin",
    }
    assert unknown_env_warnings(env) == [
        "unknown environment variable MT5_AGENT_SHEDULE is ignored; did you mean MT5_AGENT_SCHEDULE?",
        "unknown environment variable MT5_AGENT_TOTALLY_ELSE is ignored",
    ]
    assert {"MT5_AGENT_METRICS_TOKEN_FILE", "MT5_AGENT_CLOCK_SKEW_TOLERANCE"} <= known_env_names()


def test_unknown_toml_key_and_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("bridge_ulr = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting 'bridge_ulr'"):
        load_settings(cfg)
    cfg.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (None, State.CRITICAL),
        (0, State.FRESH),
        (299.9, State.FRESH),
        (300, State.ACCEPTABLE),
        (600, State.DEGRADED),
        (899, State.DEGRADED),
        (900, State.CRITICAL),
        (10**6, State.CRITICAL),
    ],
)
def test_freshness_boundaries(age: float | None, state: State) -> None:
    assert Thresholds().classify(age) is state
