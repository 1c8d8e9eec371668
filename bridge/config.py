"""Bridge configuration files and the token: validated up front so a bad file fails with one clear line."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from bridge.terminal import AccountCredentials

MAX_LOGIN = 2**63 - 1
TOKEN_ENV = "MT5_BRIDGE_TOKEN"
TOKEN_FILE_ENV = "MT5_BRIDGE_TOKEN_FILE"


class ConfigError(Exception):
    """A bad setting or file; the message is one line meant for stderr."""


class AccountEntry(BaseModel):
    """One account of a simulated accounts file (or of simulated_pool's `accounts`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    login: int = Field(gt=0, le=MAX_LOGIN)
    password: SecretStr
    name: str = ""
    server: str = Field(min_length=1)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    leverage: int = Field(default=100, gt=0, le=100_000)
    balance: float = Field(default=10_000.0, ge=0, allow_inf_nan=False)
    terminal: str | None = Field(default=None, min_length=1)

    def credentials(self) -> AccountCredentials:
        return AccountCredentials(
            login=self.login,
            password=self.password.get_secret_value(),
            server=self.server,
            name=self.name or f"Account {self.login}",
            currency=self.currency,
        )


class AccountsFile(BaseModel):
    """`--accounts FILE` for --simulate."""

    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountEntry] = Field(min_length=1)
    utc_offset_hours: float = Field(default=0.0, ge=-14, le=14)

    @model_validator(mode="after")
    def _unique_logins(self) -> Self:
        _check_unique([a.login for a in self.accounts])
        return self


class RealAccount(BaseModel):
    """One account the real terminal logs into; the password inline or, better, in a file."""

    model_config = ConfigDict(extra="forbid")

    login: int = Field(gt=0, le=MAX_LOGIN)
    password: SecretStr | None = None
    password_file: Path | None = None
    server: str = Field(min_length=1)
    name: str = ""

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("give exactly one of password or password_file")
        return self


class RealConfig(BaseModel):
    """`--config FILE` for the MetaTrader5 terminal. The MetaTrader5 package drives one terminal per
    process, so one file describes one terminal; run one bridge per terminal."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    name: str = Field(default="mt5", min_length=1)
    utc_offset_hours: float = Field(default=0.0, ge=-14, le=14)
    accounts: list[RealAccount] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_logins(self) -> Self:
        _check_unique([a.login for a in self.accounts])
        return self

    def credentials(self, base_dir: Path) -> list[AccountCredentials]:
        out = []
        for a in self.accounts:
            if a.password is not None:
                password = a.password.get_secret_value()
            else:
                assert a.password_file is not None
                pw_path = a.password_file if a.password_file.is_absolute() else base_dir / a.password_file
                password = _read_secret(pw_path, f"password_file of account {a.login}")
            out.append(AccountCredentials(login=a.login, password=password, server=a.server, name=a.name))
        return out


def _check_unique(logins: list[int]) -> None:
    seen: set[int] = set()
    for login in logins:
        if login in seen:
            raise ValueError(f"login {login} appears more than once")
        seen.add(login)


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not value:
        raise ConfigError(f"{what} {path} is empty")
    return value


def _first_error(e: ValidationError) -> str:
    """One line: where and what, plus how many more; never the input value (it may be a password)."""
    errors = e.errors(include_input=False, include_url=False)
    err = errors[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc or 'file'}: {err['msg']}{more}"


def _load_mapping(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: not valid {kind}: {detail}") from None


def load_accounts_file(path: str | Path) -> AccountsFile:
    p = Path(path)
    data = _load_mapping(p)
    try:
        return AccountsFile.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"accounts file {p}: {_first_error(e)}") from None


def load_real_config(path: str | Path) -> tuple[RealConfig, list[AccountCredentials]]:
    p = Path(path)
    data = _load_mapping(p)
    try:
        cfg = RealConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"config file {p}: {_first_error(e)}") from None
    return cfg, cfg.credentials(p.parent)


def load_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The bridge's bearer token from MT5_BRIDGE_TOKEN or MT5_BRIDGE_TOKEN_FILE (trailing newline
    stripped, as `echo secret > file` leaves one). None means unauthenticated, loopback only."""
    env = os.environ if environ is None else environ
    value, file = env.get(TOKEN_ENV), env.get(TOKEN_FILE_ENV)
    if value and file:
        raise ConfigError(f"set only one of {TOKEN_ENV} and {TOKEN_FILE_ENV}")
    if file:
        return _read_secret(Path(file), TOKEN_FILE_ENV)
    if value is not None and value.strip() == "" and value != "":
        raise ConfigError(f"{TOKEN_ENV} is blank")
    return value or None
