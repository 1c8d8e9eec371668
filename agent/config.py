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
from dataclasses import field as dc_field
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


@dataclass(frozen=True)
class ShardSpec:
    """`MT5_AGENT_SHARD=i/N` (DESIGN.md section 13): this agent owns the logins with `login % N == i`, across
    all its sources; it syncs, polls and detects events only for those."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        m = _SHARD.match(text)
        if not m:
            raise ValueError(f"{text!r} is not i/N (e.g. 0/2)")
        index, count = int(m.group(1)), int(m.group(2))
        if not 1 <= count <= SHARD_COUNT_MAX:
            raise ValueError(f"{text!r}: N must be 1 to {SHARD_COUNT_MAX}")
        if not 0 <= index < count:
            raise ValueError(f"{text!r}: i must be 0 to N-1 ({count - 1})")
        return cls(index, count)

    def owns(self, login: int) -> bool:
        return login % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


SHARD_COUNT_MAX = 4096  # agent.store.shard_lease's bound too
_SHARD = re.compile(r"^\s*(\d{1,5})\s*/\s*(\d{1,5})\s*$")

DEFAULT_SOURCE = "bridge"  # the one source MT5_AGENT_BRIDGE_URL means
SOURCE_KINDS = ("bridge", "metaapi")
MAX_SOURCES = 32  # the `source` label's closed set stays small
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # a metric label value: bounded charset
_SOURCE_KEYS = {
    "bridge": {"name", "kind", "url", "token_file", "use_batch", "concurrency"},
    "metaapi": {"name", "kind", "token_file", "accounts", "region", "bounds"},
}


@dataclass(frozen=True)
class SourceConfig:
    """One `[[sources]]` entry, validated: a bridge (url, its token read from `token_file`) or MetaAPI
    (`metaapi`: the adapter's own settings, token read from its file)."""

    name: str
    kind: str
    url: str | None = None
    token: SecretStr | None = dc_field(default=None, repr=False)
    token_file: Path | None = None
    use_batch: bool = True
    concurrency: int | None = None  # None: the agent's `concurrency`
    metaapi: Any = dc_field(default=None, repr=False)  # agent.sources.metaapi.settings.MetaApiSettings

    def describe(self) -> str:
        """One line for `mt5-agent settings` (secrets masked, URL password masked)."""
        token = "token (set, masked)" if self.token is not None else "no token"
        if self.token_file is not None:
            token = f"token from {self.token_file}"
        if self.kind == "bridge":
            return f"{self.name}: bridge {_without_password(self.url or '')}, {token}, batch={self.use_batch}"
        accounts = len(self.metaapi.accounts) if self.metaapi is not None else 0
        return f"{self.name}: metaapi, {accounts} account(s), token from {self.token_file} (masked)"


def parse_sources(raw: object) -> list[SourceConfig]:
    """`[[sources]]` as written in the TOML file -> validated `SourceConfig`s. ValueError (one line naming
    the entry and its key, `sources: ...`) on an unknown kind or key, a bad or duplicate name, a bad URL, a
    token file that cannot be read, a login two sources list."""
    if raw is None:
        return []
    if isinstance(raw, list) and all(isinstance(x, SourceConfig) for x in raw):
        return list(raw)
    if not isinstance(raw, list):
        raise ValueError("sources: must be an array of tables ([[sources]])")
    if len(raw) > MAX_SOURCES:
        raise ValueError(f"sources: at most {MAX_SOURCES} sources")
    out: list[SourceConfig] = []
    logins: dict[int, str] = {}
    for i, entry in enumerate(raw, 1):
        where = f"sources: [[sources]] #{i}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be a table")
        name = entry.get("name")
        if not isinstance(name, str) or not _SOURCE_NAME.match(name):
            raise ValueError(f"{where}: name {str(name)[:40]!r} must match [a-z0-9][a-z0-9_-]{{0,31}}")
        where = f"sources: source {name!r}"
        if any(c.name == name for c in out):
            raise ValueError(f"{where}: duplicate name (each source needs its own)")
        kind = entry.get("kind")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"{where}: unknown kind {str(kind)[:40]!r} (bridge or metaapi)")
        unknown = sorted(set(entry) - _SOURCE_KEYS[kind])
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} for kind {kind}")
        build = _bridge_source if kind == "bridge" else _metaapi_source
        config = build(name, entry, where)
        if config.metaapi is not None:
            for login in config.metaapi.accounts:
                if login in logins:
                    raise ValueError(f"{where}: login {login} is also listed by source {logins[login]!r}")
                logins[login] = name
        out.append(config)
    return out


def _bridge_source(name: str, entry: Mapping[str, Any], where: str) -> SourceConfig:
    url = entry.get("url")
    if not isinstance(url, str):
        raise ValueError(f"{where}: url is required for a bridge source")
    try:
        url = check_bridge_url(url)
    except ValueError as exc:
        raise ValueError(f"{where}: url {exc}") from None
    token = None
    token_file = entry.get("token_file")
    if token_file is not None:
        token_file = Path(str(token_file))
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{where}: token_file: cannot read {token_file}: {exc.strerror}") from None
        if not value:
            raise ValueError(f"{where}: token_file: {token_file} is empty")
        token = SecretStr(value)
    use_batch = entry.get("use_batch", True)
    if not isinstance(use_batch, bool):
        raise ValueError(f"{where}: use_batch must be true or false")
    concurrency = entry.get("concurrency")
    if concurrency is not None and not (type(concurrency) is int and 1 <= concurrency <= 1024):
        raise ValueError(f"{where}: concurrency must be an integer 1-1024")
    return SourceConfig(name, "bridge", url, token, token_file, use_batch, concurrency)


def _metaapi_source(name: str, entry: Mapping[str, Any], where: str) -> SourceConfig:
    from agent.sources.metaapi.settings import Bounds, MetaApiConfigError, load_settings

    bounds = entry.get("bounds", {})
    if not isinstance(bounds, Mapping):
        raise ValueError(f"{where}: bounds must be a table")
    region = entry.get("region")
    if region is not None and not (isinstance(region, str) and re.fullmatch(r"[a-z0-9-]{1,40}", region)):
        raise ValueError(f"{where}: region must be a MetaAPI region name like new-york")
    try:
        unknown = sorted(set(bounds) - set(Bounds.__dataclass_fields__))
        if unknown:
            raise MetaApiConfigError(f"metaapi.bounds: unknown bound {unknown[0]!r}")
        settings = load_settings(entry.get("token_file"), entry.get("accounts"), Bounds(**bounds), region)
    except MetaApiConfigError as exc:
        raise ValueError(f"{where}: {exc}") from None
    token_file = Path(str(entry["token_file"]))
    return SourceConfig(name, "metaapi", token_file=token_file, metaapi=settings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False)

    bridge_url: str = "http://127.0.0.1:8000"
    bridge_token: SecretStr | None = None
    bridge_token_file: Path | None = None
    store_url: str = "sqlite:///./mt5-agent.db"
    store_url_file: Path | None = None  # the URL may carry credentials: a secret file (Kubernetes Secret)
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
    # Recorded equity history (agent.analytics.equity): at most one point per account per period (plus
    # larger moves), kept this many days.
    equity_sample_seconds: float = Field(60.0, ge=1, le=86400)
    equity_retention: float = Field(90.0, gt=0, le=3650)  # days
    # The live event stream (WS /api/v1/stream, docs/stream.md).
    stream_heartbeat: float = Field(15.0, ge=0.05, le=3600)  # seconds of silence before a heartbeat
    stream_auth_timeout: float = Field(10.0, ge=0.05, le=600)  # seconds to send the auth message
    stream_queue: int = Field(1000, ge=1, le=1_000_000)  # events queued per client before it is closed 4008
    # Shards (DESIGN.md section 13, docs/scaling.md): `i/N`, empty for one agent owning every account.
    shard: str = ""
    shard_heartbeat: float = Field(5.0, ge=0.1, le=300)  # seconds between two shard lease heartbeats
    # Seconds between two re-reads of the account documents (accounts other writers or, sharded, the other
    # shards wrote): what this agent's API and fleet show of accounts it does not sync itself.
    store_refresh: float = Field(30.0, ge=0.1, le=3600)
    # Several sources (`[[sources]]` in the TOML file, DESIGN.md section 10); empty: one bridge source named
    # `bridge` over bridge_url / bridge_token (the default, unchanged).
    sources: list[SourceConfig] = Field(default_factory=list)
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

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, v: object) -> list[SourceConfig]:
        try:
            return parse_sources(v)
        except ValueError as exc:  # the error already names `sources` (the setting) by its loc
            raise ValueError(str(exc).removeprefix("sources: ")) from None

    @field_validator("store_url")
    @classmethod
    def _store(cls, v: str) -> str:
        from agent.store import validate_store_url

        validate_store_url(v)
        return v

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: str) -> str:
        if v.strip():
            ShardSpec.parse(v)
        return v.strip()

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
        if self.store_url_file is not None:
            if "store_url" in self.model_fields_set:
                raise ValueError("store_url_file: both it and store_url are set: ambiguous, keep one")
            try:
                url = self.store_url_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                where = self.store_url_file
                raise ValueError(f"store_url_file: cannot read {where}: {exc.strerror}") from None
            if not url:
                raise ValueError(f"store_url_file: {self.store_url_file} is empty")
            from agent.store import validate_store_url

            try:
                validate_store_url(url)
            except ValueError as exc:  # its messages never echo the URL (it may carry a password)
                raise ValueError(f"store_url_file: {self.store_url_file}: {exc}") from None
            self.store_url = url
        if self.sources and "bridge_url" in self.model_fields_set:
            raise ValueError(
                "sources: both MT5_AGENT_BRIDGE_URL (bridge_url) and [[sources]] are set: ambiguous, "
                "declare the bridge as one of the [[sources]]"
            )
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
    def shard_spec(self) -> ShardSpec | None:
        """This agent's shard; None: not sharded (it owns every account)."""
        return ShardSpec.parse(self.shard) if self.shard else None

    @property
    def positions_interval_seconds(self) -> float | None:
        """Seconds between positions rounds; None: the poller is off."""
        return parse_positions_interval(self.positions_interval)

    @property
    def source_configs(self) -> list[SourceConfig]:
        """The sources to watch: `[[sources]]`, or one bridge named `bridge` over bridge_url."""
        if self.sources:
            return list(self.sources)
        return [
            SourceConfig(
                name=DEFAULT_SOURCE,
                kind="bridge",
                url=self.bridge_url,
                token=self.bridge_token,
                token_file=self.bridge_token_file,
                use_batch=self.use_batch,
            )
        ]

    @property
    def source_names(self) -> tuple[str, ...]:
        """Every source's name: the closed set of the metrics' `source` label."""
        return tuple(c.name for c in self.source_configs)

    def source_secrets(self) -> list[str]:
        """Every source's secret value (for the log scrubber)."""
        out = []
        for c in self.source_configs:
            if c.token is not None:
                out.append(c.token.get_secret_value())
            if c.metaapi is not None:
                out.append(c.metaapi.token.get_secret_value())
        return out

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
        sources = data.get("sources") if "agent" in data else None
        data = data.get("agent", data)
        if sources is not None and "sources" not in data:  # [[sources]] beside an [agent] table
            data = {**data, "sources": sources}
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
    "store_url_file": "file holding store_url (a secret: the URL may carry credentials)",
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
    "equity_sample_seconds": "seconds between two recorded equity points of an account (larger moves always)",
    "equity_retention": "days recorded equity points are kept",
    "stream_heartbeat": "seconds of silence before the event stream sends a heartbeat",
    "stream_auth_timeout": "seconds a stream client has to authenticate (else closed 4401)",
    "stream_queue": "events queued per stream client; a client further behind is closed 4008",
    "shard": "i/N: own the accounts with login % N == i (shards share one MongoDB); empty: every account",
    "shard_heartbeat": "seconds between two shard lease heartbeats (duplicate or disagreeing shards)",
    "store_refresh": "seconds between re-reads of the account documents (other shards' and writers')",
    "sources": "[[sources]] in the TOML file: name, kind (bridge, metaapi) and per-kind options",
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
        elif name == "sources":
            value = "; ".join(c.describe() for c in settings.source_configs)
            source = "file" if name in file_keys else "default"
            default = f"one bridge source {DEFAULT_SOURCE!r} over bridge_url"
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
    keys = set(data.get("agent", data))
    return keys | ({"sources"} if "sources" in data else set())


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
