"""What the MetaAPI source needs to start: the token (from a file only), the login -> MetaAPI account
mapping, and the bounds of its watchdogs and backoff. Bad configuration is one `MetaApiConfigError`
whose message is one line naming the setting, and never holds the token."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

MAX_TOKEN = 16_384  # a MetaAPI token is a JWT of ~1 kB; anything past this is not a token file
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # MetaAPI account ids are UUID-like


class MetaApiConfigError(ValueError):
    """A bad MetaAPI setting: one line naming it (never the secret's value)."""


@dataclass(frozen=True)
class Bounds:
    """Every timing of the source, in seconds (tests make them small; the defaults suit the cloud)."""

    sync_timeout: float = 300.0  # connected but not synchronized for longer: the connection is recreated
    silence: float = 120.0  # no packet (any callback) for longer: the connection is recreated
    check_interval: float = 5.0  # how often the watchdog looks
    backoff_base: float = 1.0  # first retry delay of a failed connect (doubled each time)
    backoff_cap: float = 300.0  # no retry delay above it (a server's retry time excepted)
    max_retry_after: float = 3600.0  # a server-recommended retry time further than this is capped
    close_timeout: float = 10.0  # closing a connection that hangs is given up after this
    tombstone_ttl: float = 86_400.0  # a removed position id is remembered this long

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (type(value) in (int, float) and 0 < value < 1e7):
                raise MetaApiConfigError(f"metaapi.{name}: {value!r} is not a positive number of seconds")
        if self.backoff_base > self.backoff_cap:
            raise MetaApiConfigError("metaapi.backoff_base: larger than metaapi.backoff_cap")


@dataclass(frozen=True)
class MetaApiSettings:
    """The token is a SecretStr (its repr and str are masked); `accounts` maps an MT5 login to its
    MetaAPI account id."""

    token: SecretStr = field(repr=False)
    accounts: Mapping[int, str]
    bounds: Bounds = Bounds()
    region: str | None = None


def read_token(path: str | Path | None, setting: str = "token_file") -> SecretStr:
    """The token from its file (first line, stripped): the only way it comes in."""
    if path is None or str(path).strip() == "":
        raise MetaApiConfigError(f"metaapi.{setting}: not set (the MetaAPI token comes from a file only)")
    p = Path(path)
    try:
        raw = p.read_bytes()[: MAX_TOKEN + 1]
    except FileNotFoundError:
        raise MetaApiConfigError(f"metaapi.{setting}: file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise MetaApiConfigError(f"metaapi.{setting}: cannot read {str(p)!r} ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MetaApiConfigError(f"metaapi.{setting}: {str(p)!r} is not UTF-8 text") from None
    if not text:
        raise MetaApiConfigError(f"metaapi.{setting}: {str(p)!r} is empty")
    if len(text) > MAX_TOKEN or any(c.isspace() for c in text):
        raise MetaApiConfigError(f"metaapi.{setting}: {str(p)!r} does not hold one token")
    return SecretStr(text)


def parse_accounts(raw: object) -> dict[int, str]:
    """`{login: account_id}` (a TOML table's keys are strings): each login a positive integer, each
    account id a MetaAPI id, no id mapped twice."""
    if not isinstance(raw, Mapping) or not raw:
        raise MetaApiConfigError("metaapi.accounts: no login -> MetaAPI account id mapping given")
    out: dict[int, str] = {}
    for key, value in raw.items():
        text = str(key)
        if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**63):
            raise MetaApiConfigError(f"metaapi.accounts: login {text[:40]!r} is not a positive integer")
        if type(value) is not str or not _ACCOUNT_ID.match(value):
            raise MetaApiConfigError(f"metaapi.accounts.{text}: not a MetaAPI account id")
        if int(text) in out:
            raise MetaApiConfigError(f"metaapi.accounts: login {text} is mapped twice")
        out[int(text)] = value
    ids = list(out.values())
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise MetaApiConfigError(f"metaapi.accounts: MetaAPI account {dup!r} is mapped to two logins")
    return out


def load_settings(
    token_file: str | Path | None,
    accounts: object,
    bounds: Bounds | None = None,
    region: str | None = None,
) -> MetaApiSettings:
    """Settings from their configured form; MetaApiConfigError (one line) on anything wrong."""
    mapping = parse_accounts(accounts)
    return MetaApiSettings(
        token=read_token(token_file), accounts=mapping, bounds=bounds or Bounds(), region=region
    )
