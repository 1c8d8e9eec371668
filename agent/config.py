"""The agent's one typed settings object: TOML file and/or `MT5_AGENT_*` environment (env wins).

Every secret may also come from `<NAME>_FILE`. A bad value stops the start with one line that names the
setting (`ConfigError`).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.domain.freshness import Thresholds

ENV_PREFIX = "MT5_AGENT_"
MIN_JWT_SECRET_BYTES = 32
SECRET_FIELDS = ("bridge_token", "admin_token", "api_token", "jwt_secret", "metrics_token")
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(Exception):
    """One line naming the bad setting."""


@dataclass(frozen=True)
class Schedule:
    """Either a cron minute field (the seed's `1,6,...,56` is `1-59/5`) or a fixed interval."""

    cron_minute: str | None = None
    interval_seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        m = _INTERVAL.match(text)
        if m:
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            if seconds < 0.1:
                raise ValueError(f"interval {text!r} is shorter than 100ms")
            return cls(interval_seconds=seconds)
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger(minute=text.strip(), timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"{text!r} is neither an interval like 10s/5m nor a cron minute field like 1-59/5 ({exc})"
            ) from None
        return cls(cron_minute=text.strip())

    def __str__(self) -> str:
        if self.interval_seconds is not None:
            return f"every {self.interval_seconds:g}s"
        return f"cron minute={self.cron_minute}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False)

    bridge_url: str = "http://127.0.0.1:8000"
    bridge_token: SecretStr | None = None
    bridge_token_file: Path | None = None
    store_url: str = "sqlite:///./mt5-agent.db"
    mongo_database: str = "fidus_production"
    schedule: str = "1-59/5"
    listen: str = "127.0.0.1:8080"
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    jwt_secret: SecretStr | None = None
    jwt_secret_file: Path | None = None
    # Bearer token Prometheus sends to scrape /metrics. /metrics is open only while no credential at all
    # is configured; with any credential it needs this token or the read/admin token.
    metrics_token: SecretStr | None = None
    metrics_token_file: Path | None = None
    freshness: str = "300,600,900"
    cors_origins: str = ""
    request_timeout: float = Field(30.0, gt=0, le=600)
    cycle_deadline: float = Field(240.0, gt=0, le=3600)
    concurrency: int = Field(16, ge=1, le=1024)
    health_retries: int = Field(3, ge=1, le=10)
    health_backoff: float = Field(0.5, ge=0, le=60)
    use_batch: bool = True
    # Bridge reachability is probed on its own short period, independent of the sync schedule, so
    # MT5BridgeDown can fire before any per-account freshness alert.
    probe_interval: float = Field(15.0, ge=0.1, le=600)
    # A source timestamp ahead of the receive time by more than this is counted and not trusted.
    clock_skew_tolerance: float = Field(5.0, ge=0, le=3600)
    # Cap on one source response, compressed and decompressed (bytes).
    max_response_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # Positions and trade events (DESIGN.md 11): the poller's own period, separate from the schedule.
    positions_interval: str = "1"
    events_retention: float = Field(30.0, gt=0, le=3650)  # days
    log_format: str = "auto"
    log_level: str = "INFO"
    access_log: bool = False  # one line per HTTP request (aiohttp's access logger), off by default
    service_name: str = "mt5-agent"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the TOML file (passed as init kwargs).
        return (env_settings, init_settings)

    @field_validator("bridge_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_bridge_url(v)

    @field_validator("store_url")
    @classmethod
    def _store(cls, v: str) -> str:
        from agent.store import validate_store_url

        validate_store_url(v)
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        Schedule.parse(v)
        return v

    @field_validator("freshness")
    @classmethod
    def _freshness(cls, v: str) -> str:
        Thresholds.parse(v)
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v

    @field_validator("positions_interval", mode="before")
    @classmethod
    def _positions_interval(cls, v: object) -> str:
        text = str(v) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else repr(v)
        parse_positions_interval(text)  # a TOML number (0.5) is taken as seconds too
        return text

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v not in ("auto", "json", "text"):
            raise ValueError("must be auto, json or text")
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if v.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return v.upper()

    @model_validator(mode="after")
    def _secret_files(self) -> Settings:
        for name in SECRET_FIELDS:
            path: Path | None = getattr(self, f"{name}_file")
            if path is None:
                continue
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from None
            if not value:
                raise ValueError(f"{name}_file: {path} is empty")
            setattr(self, name, SecretStr(value))
        jwt_secret = self.secret("jwt_secret")
        if jwt_secret is not None and len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            # RFC 7518 3.2: an HS256 key shorter than the hash output is guessable offline.
            raise ValueError(f"jwt_secret: must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256")
        return self

    # Derived, typed views -------------------------------------------------------------------
    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.parse(self.freshness)

    @property
    def parsed_schedule(self) -> Schedule:
        return Schedule.parse(self.schedule)

    @property
    def positions_interval_seconds(self) -> float | None:
        """Seconds between positions rounds; None: the poller is off."""
        return parse_positions_interval(self.positions_interval)

    @property
    def listen_host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def secret(self, name: str) -> str | None:
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value is not None else None


MIN_POSITIONS_INTERVAL = 0.25


def parse_positions_interval(text: str) -> float | None:
    """`1`, `0.5`, `250ms`, `2s` -> seconds (at least 0.25); `0` or `off` -> None (no positions poller)."""
    t = str(text).strip().lower()
    if t in ("off", "0", "0s", "0.0"):
        return None
    m = _INTERVAL.match(t)
    try:
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else float(t)
    except ValueError:
        raise ValueError(f"{text!r} is neither seconds (1, 0.5, 250ms) nor off") from None
    if seconds == 0:
        return None
    if not seconds >= MIN_POSITIONS_INTERVAL or seconds > 3600:
        raise ValueError(f"{text!r}: must be off or between {MIN_POSITIONS_INTERVAL:g}s and 3600s")
    return seconds


def split_listen(v: str) -> tuple[str, int]:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port like 127.0.0.1:8080, got {v!r}")
    return host.strip("[]"), int(port)


def _redact_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if sep and "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{tail}"


def check_bridge_url(v: str) -> str:
    """An http(s) URL with a host and, if any, a numeric port 1-65535; user info is never echoed."""
    shown = _redact_userinfo(v)
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL like http://127.0.0.1:8000, got {shown!r}")
    if any(c.isspace() for c in parts.netloc):
        raise ValueError(f"the host part contains whitespace: {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port must be a number 1-65535, got {shown!r}") from None
    if port == 0:
        raise ValueError(f"the port must be a number 1-65535, got {shown!r}")
    return v.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment and explicit overrides.

    Raises ConfigError with one line naming the setting.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        data = data.get("agent", data)
        if isinstance(data.get("freshness"), list):  # `freshness = [300, 600, 900]` reads naturally in TOML
            data["freshness"] = ",".join(str(v) for v in data["freshness"])
        from_file = {k for k in data if f"{ENV_PREFIX}{k.upper()}" not in os.environ}
        file_label = str(path)
    else:
        from_file, file_label = set(), ""
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, from_file - set(overrides), file_label)) from None


def _one_line(exc: ValidationError, from_file: Collection[str] = (), file_label: str = "") -> str:
    """The first error, naming the setting as the user wrote it: the TOML key (and file) when the value
    came from the config file, else the environment variable."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    name = loc[0] if loc else ""
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return f"unknown setting {name!r}"
    if not name and ":" in msg:  # errors raised by model validators name their field first
        name, _, msg = msg.partition(":")
        msg = msg.strip()
    if name and name in from_file:
        return f"invalid setting {name} in {file_label}: {msg}"
    env = f"{ENV_PREFIX}{name.upper()}" if name else "settings"
    return f"invalid setting {env}: {msg}"


# One line per setting for `mt5-agent settings` (README.md's table says the same at more length).
SETTING_HELP: dict[str, str] = {
    "bridge_url": "bridge base URL",
    "bridge_token": "bearer token for the bridge",
    "store_url": "sqlite:///path or mongodb://...",
    "mongo_database": "MongoDB database",
    "schedule": "cron minute field (1-59/5) or an interval (10s, 5m)",
    "listen": "host:port of the agent's HTTP server",
    "admin_token": "token for admin endpoints (none: admin answers 503)",
    "api_token": "read token for trusted backends",
    "jwt_secret": "HS256 secret for per-client JWTs (sub = client id), >= 32 bytes",
    "metrics_token": "bearer token Prometheus sends to scrape /metrics",
    "freshness": "state thresholds in seconds: acceptable, degraded, critical",
    "cors_origins": "comma-separated browser origins allowed to call the API",
    "request_timeout": "per bridge request, seconds",
    "cycle_deadline": "whole fetch phase of a cycle, seconds",
    "concurrency": "parallel /info calls when the bridge has no batch endpoint",
    "health_retries": "health attempts before a cycle is skipped",
    "health_backoff": "base of the exponential backoff between health attempts, seconds",
    "use_batch": "use the bridge's batch endpoint when it advertises one",
    "probe_interval": "seconds between bridge health probes (mt5_bridge_up)",
    "clock_skew_tolerance": "seconds a source timestamp may lead the receive time",
    "max_response_bytes": "cap on one bridge response, compressed and decompressed",
    "positions_interval": "seconds between positions polls (trade events), min 0.25; 0 or off disables",
    "events_retention": "days trade events are kept",
    "log_format": "auto, json or text",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "access_log": "one log line per HTTP request",
    "service_name": "OpenTelemetry service.name",
}


@dataclass(frozen=True)
class SettingLine:
    env: str
    toml_key: str
    value: str  # secrets masked
    source: str  # environment, file, default
    default: str
    help: str


def describe_settings(settings: Settings, file_keys: Collection[str] = ()) -> list[SettingLine]:
    """Every setting with its value, where the value came from and its default; secrets masked. The
    `*_file` companions are folded into their secret (source `file:<path>`)."""
    out = []
    for name, field in Settings.model_fields.items():
        if name.endswith("_file") and name.removesuffix("_file") in SECRET_FIELDS:
            continue
        env = f"{ENV_PREFIX}{name.upper()}"
        if name in SECRET_FIELDS:
            path = getattr(settings, f"{name}_file")
            value = "(set, masked)" if getattr(settings, name) is not None else "(none)"
            if path is not None:
                source = f"secret file {path}"
            elif env in os.environ:
                source = "environment"
            else:
                source = "file" if name in file_keys else "default"
            default = "(none)"
        else:
            value = _without_password(str(getattr(settings, name)))
            source = "environment" if env in os.environ else "file" if name in file_keys else "default"
            default = str(field.default)
        out.append(SettingLine(env, name, value, source, default, SETTING_HELP.get(name, "")))
    return out


def _without_password(value: str) -> str:
    """A URL's password masked (store and bridge URLs may carry credentials); other values unchanged."""
    if "://" not in value or "@" not in value:
        return value
    scheme, _, rest = value.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{host}"


def toml_keys(config_file: str | Path | None) -> set[str]:
    """The setting names a TOML file sets (for `describe_settings`); empty without a file."""
    if config_file is None:
        return set()
    with Path(config_file).open("rb") as fh:
        data = tomllib.load(fh)
    return set(data.get("agent", data))


def known_env_names() -> frozenset[str]:
    """Every `MT5_AGENT_*` variable the settings read."""
    return frozenset(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields)


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One warning line per `MT5_AGENT_*` variable no setting reads (a typo is otherwise silently ignored:
    the environment source only looks up names it knows). Names only: values may be secrets."""
    known = known_env_names()
    out = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        line = f"unknown environment variable {name} is ignored"
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        if close:
            line += f"; did you mean {close[0]}?"
        out.append(line)
    return out


def check_store_location(settings: Settings) -> None:
    """Start-up check of what parsing cannot see: the SQLite file's directory must exist (raises
    ConfigError naming MT5_AGENT_STORE_URL). Only for commands that open the store."""
    from agent.store import store_location_problem

    problem = store_location_problem(settings.store_url)
    if problem is not None:
        raise ConfigError(f"invalid setting {ENV_PREFIX}STORE_URL: {problem}")
