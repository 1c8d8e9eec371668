"""Settings: TOML + env (env wins), *_FILE secrets, and one clear line naming a bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, Schedule, load_settings
from agent.freshness import State, Thresholds


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
