"""Accounts file, real-terminal config and token loading: good files load, bad ones give one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_accounts_file, load_real_config, load_token

GOOD = {
    "accounts": [
        {
            "login": 1001,
            "password": "p1",
            "name": "One",
            "server": "Demo-1",
            "currency": "EUR",
            "leverage": 30,
            "balance": 5000,
            "terminal": "t1",
        },
        {
            "login": 1002,
            "password": "p2",
            "name": "Two",
            "server": "Demo-1",
            "currency": "USD",
            "leverage": 100,
            "balance": 0,
        },
    ],
    "utc_offset_hours": 2,
}


def _write(tmp_path: Path, data: object, name: str = "accounts.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_accounts_file_loads(tmp_path: Path) -> None:
    f = load_accounts_file(_write(tmp_path, GOOD))
    assert [a.login for a in f.accounts] == [1001, 1002]
    assert f.utc_offset_hours == 2 and f.accounts[0].terminal == "t1" and f.accounts[1].terminal is None
    creds = f.accounts[0].credentials()
    assert (creds.login, creds.password, creds.currency) == (1001, "p1", "EUR")
    assert "p1" not in repr(creds) and "p1" not in repr(f.accounts[0])


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["accounts"][1].update(login=-3), "accounts[1].login: Input should be greater than 0"),
        (lambda d: d["accounts"][0].pop("server"), "accounts[0].server: Field required"),
        (lambda d: d["accounts"][1].update(login=1001), "login 1001 appears more than once"),
        (
            lambda d: d["accounts"][0].update(balance=-1),
            "accounts[0].balance: Input should be greater than or equal",
        ),
        (lambda d: d["accounts"][0].update(passwd="x"), "accounts[0].passwd: Extra inputs are not permitted"),
        (lambda d: d.update(accounts=[]), "accounts: List should have at least 1 item"),
        (
            lambda d: d.update(utc_offset_hours=30),
            "utc_offset_hours: Input should be less than or equal to 14",
        ),
    ],
)
def test_bad_accounts_file_one_line(tmp_path: Path, mutate, expected) -> None:
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    with pytest.raises(ConfigError) as exc:
        load_accounts_file(_write(tmp_path, data))
    message = str(exc.value)
    assert "\n" not in message and expected in message and message.startswith("accounts file ")
    assert "p1" not in message and "p2" not in message


def test_unreadable_or_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.json"):
        load_accounts_file(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="not valid JSON") as exc:
        load_accounts_file(_write(tmp_path, '{"accounts": [}'))
    assert "\n" not in str(exc.value)


def test_real_config_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("from-file\n")
    toml = """
path = 'C:\\MT5\\terminal64.exe'
utc_offset_hours = 3
[[accounts]]
login = 886557
password_file = "pw.txt"
server = "MEXAtlantic-Real"
[[accounts]]
login = 886066
password = "inline"
server = "MEXAtlantic-Real"
"""
    cfg, creds = load_real_config(_write(tmp_path, toml, "bridge.toml"))
    assert cfg.utc_offset_hours == 3 and cfg.path == "C:\\MT5\\terminal64.exe"
    assert [(c.login, c.password) for c in creds] == [(886557, "from-file"), (886066, "inline")]

    bad = {"accounts": [{"login": 1, "password": "a", "password_file": "b", "server": "s"}]}
    with pytest.raises(ConfigError, match="exactly one of password or password_file"):
        load_real_config(_write(tmp_path, bad, "bad.json"))
    missing = {"accounts": [{"login": 1, "password_file": "nope.txt", "server": "s"}]}
    with pytest.raises(ConfigError, match="cannot read password_file of account 1"):
        load_real_config(_write(tmp_path, missing, "missing.json"))


def test_token_from_env_or_file(tmp_path: Path) -> None:
    assert load_token({}) is None
    assert load_token({"MT5_BRIDGE_TOKEN": "abc"}) == "abc"
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert load_token({"MT5_BRIDGE_TOKEN_FILE": str(token_file)}) == "s3cret"
    with pytest.raises(ConfigError, match="only one of"):
        load_token({"MT5_BRIDGE_TOKEN": "abc", "MT5_BRIDGE_TOKEN_FILE": str(token_file)})
    token_file.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_token({"MT5_BRIDGE_TOKEN_FILE": str(token_file)})
    with pytest.raises(ConfigError, match="blank"):
        load_token({"MT5_BRIDGE_TOKEN": "   "})
