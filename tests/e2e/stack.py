"""End-to-end stack: the real processes on loopback, each in its own tmp dir, always stopped.

`e2e_stack` starts pieces on demand, the same programs compose runs:

    webhook receiver (deploy/webhook_receiver.py) <- Alertmanager <- Prometheus (rules rendered here,
    scraping with the agent's metrics token) -> agent (bridge probed every PROBE_S) -> bridge

Every subprocess writes its stderr (and stdout) to `<tmp>/<name>.log`; when a test fails, the logs are
printed in the teardown section of the report. Teardown SIGTERMs every process still running (SIGKILL
after a grace period), whatever happened in the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from agent.domain.freshness import Thresholds
from alerts import render
from tests.ports import free_port
from tests.tools import require, require_tool

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_YML = ROOT / "alerts" / "alertmanager.yml"
WEBHOOK_RECEIVER = ROOT / "deploy" / "webhook_receiver.py"
AGENT_JOB = render.AGENT_JOB

# The seed's proportions, shortened: minutes become seconds. A long sync interval against a short bridge
# probe, and freshness thresholds of about 1.6, 3.2 and 4.8 sync intervals (seed: 5-minute schedule,
# 300/600/900 s). The agent exports its MT5_AGENT_FRESHNESS; the rules' rendered fallback is the same.
THRESHOLDS = Thresholds(8, 16, 24)
SCHEDULE_S = 5.0  # agent sync interval
PROBE_S = 0.25  # agent bridge probe interval (MT5_AGENT_PROBE_INTERVAL)
SCRAPE_S = 1.0  # Prometheus scrape_interval
EVAL_S = 1.0  # Prometheus evaluation_interval
GROUP_WAIT_S = 1.0  # Alertmanager group_wait (and group_interval)
REPEAT_INTERVAL = "1m"
# Scheduling slack on top of the computed paths (process start/stop, HTTP, a loaded CI machine).
MARGIN_S = 3.0
WEBHOOK_S = 1.0  # Alertmanager -> webhook HTTP delivery after its group_wait/group_interval
# The alert `for:` durations of the e2e runs: short, so that minutes become seconds.
TIMINGS = render.AlertTimings(
    data="2s",
    sync_failing="2s",
    bridge_down="2s",
    # held after recovery until the accounts had a sync: one schedule, a scrape, an evaluation, slack
    bridge_down_keep_firing="10s",
    agent_down="3s",
    metrics_absent="3s",
    # A failing account makes every run partial; the burn-rate alerts are promtool-tested, not here.
    burn_page="1h",
    burn_ticket="1h",
)
LOG_TAIL_LINES = 150

T = TypeVar("T")
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration (`2s`, `1m30s`, `500ms`) in seconds."""
    parts = _DURATION_PART.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any agent/bridge/OTel settings of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MT5_AGENT_", "MT5_BRIDGE_", "OTEL_"))}
    env.update(extra)
    return env


async def wait_for(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.2
) -> tuple[T, float]:
    """Poll `check` until it returns something other than None/False; return it and the seconds taken.

    A failing check (connection refused while a server starts, ...) counts as "not yet". On timeout the
    last result or error is in the assertion message.
    """
    started = time.monotonic()
    last: object = None
    while True:
        try:
            result = await check()
            if result is not None and result is not False:
                return result, time.monotonic() - started
            last = result
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert self.process is None or self.process.returncode is not None, f"{self.name} already running"
        with self.log.open("ab") as log:
            log.write(f"--- start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    async def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        """Signal the process and wait for it; SIGKILL if it outlives `grace`. Returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return proc.returncode

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Webhook:
    """The stack's webhook receiver (deploy/webhook_receiver.py): its URL, the bearer token it checks per
    receiver, and the notifications last read from its GET /notifications (`Stack.notifications`), each
    with `at`, the receive time in seconds since the epoch."""

    url: str
    tokens: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)

    def notifications(
        self, *, receiver: str | None = None, alertname: str | None = None, status: str | None = None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(notification, alert) pairs matching the filters, in arrival order."""
        out = []
        for note in self.received:
            if receiver is not None and note["receiver"] != receiver:
                continue
            for alert in note["payload"].get("alerts", []):
                if alertname is not None and alert["labels"].get("alertname") != alertname:
                    continue
                if status is not None and alert["status"] != status:
                    continue
                out.append((note, alert))
        return out


# --- configuration -----------------------------------------------------------------------------


def alertmanager_config(webhook: Webhook, secrets: Path) -> dict[str, Any]:
    """alerts/alertmanager.yml with only the receiver URLs, token files and timings replaced."""
    config = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    secrets.mkdir(parents=True, exist_ok=True)
    for receiver in config["receivers"]:
        name = receiver["name"]
        token_file = secrets / f"{name}_webhook_token"
        token_file.write_text(webhook.tokens[name] + "\n", encoding="utf-8")
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook.url}/{name}"
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)

    def shorten(route: dict[str, Any]) -> None:
        for key, value in (
            ("group_wait", f"{GROUP_WAIT_S:g}s"),
            ("group_interval", f"{GROUP_WAIT_S:g}s"),
            ("repeat_interval", REPEAT_INTERVAL),
        ):
            if key in route:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config


def prometheus_config(
    agent_port: int, rules: Path, alertmanager_port: int | None, metrics_token_file: Path
) -> dict[str, Any]:
    """As deploy/prometheus.yml: the agent is scraped with its metrics token, from a file."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{SCRAPE_S:g}s",
            "scrape_timeout": f"{SCRAPE_S:g}s",
            "evaluation_interval": f"{EVAL_S:g}s",
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": AGENT_JOB,
                "authorization": {"type": "Bearer", "credentials_file": str(metrics_token_file)},
                "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}],
            }
        ],
    }
    if alertmanager_port is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        }
    return config


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """Starts the pieces as subprocesses; the fixture stops them all."""

    def __init__(self, tmp: Path, session: aiohttp.ClientSession) -> None:
        self.tmp = tmp
        self.http = session
        self.procs: dict[str, Proc] = {}
        self.bridge_port = free_port()
        self.agent_port = free_port()
        self.prometheus_port = free_port()
        self.alertmanager_port = free_port()
        self.webhook_port = free_port()
        self.bridge_url = f"http://127.0.0.1:{self.bridge_port}"
        self.agent_url = f"http://127.0.0.1:{self.agent_port}"
        self.prometheus_url = f"http://127.0.0.1:{self.prometheus_port}"
        self.alertmanager_url = f"http://127.0.0.1:{self.alertmanager_port}"
        self.webhook = Webhook(
            url=f"http://127.0.0.1:{self.webhook_port}",
            tokens={"paging": "e2e-paging-token", "tickets": "e2e-tickets-token"},
        )
        self.metrics_token = "e2e-metrics-token-0123456789"
        self.metrics_token_file = tmp / "secrets" / "metrics_token"
        self.metrics_token_file.parent.mkdir(parents=True, exist_ok=True)
        self.metrics_token_file.write_text(self.metrics_token + "\n", encoding="utf-8")
        self.rules_doc: dict[str, Any] = {}
        self.prometheus_bin = ""
        self.alertmanager_bin = ""

    def require_tools(self, *, alertmanager: bool) -> None:
        """Skip loudly (fail under CI=true) before starting anything when a binary is missing."""
        self.prometheus_bin = require_tool("prometheus")
        if alertmanager:
            binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
            require(binary is not None, "`prometheus-alertmanager` (or `alertmanager`) not found on PATH")
            assert binary is not None
            self.alertmanager_bin = binary

    def _dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _proc(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        if name not in self.procs:
            self.procs[name] = Proc(name, argv, self.tmp / f"{name}.log", env)
        return self.procs[name]

    async def get_json(self, url: str, **params: str) -> Any:
        async with self.http.get(url, params=params or None) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def _ready(self, proc: Proc, url: str, timeout: float = 30.0) -> float:
        async def check() -> bool:
            proc.check_alive()
            async with self.http.get(url) as response:
                return response.status == 200

        _, took = await wait_for(check, timeout, f"{proc.name} at {url}")
        return took

    # bridge -------------------------------------------------------------------------------------
    async def start_bridge(self, *faults: str) -> Proc:
        """The simulated bridge (7 demo accounts), always on the same port (and with the same `faults`,
        `LOGIN=FAULT`, as when first started) so it can be restarted."""
        fault_args = [arg for fault in faults for arg in ("--fault", fault)]
        proc = self._proc(
            "bridge",
            [
                sys.executable,
                "-m",
                "bridge.cli",
                "--simulate",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.bridge_port),
                *fault_args,
            ],
            clean_env(),
        )
        await proc.start()
        await self._ready(proc, f"{self.bridge_url}/api/mt5/bridge/health")
        return proc

    async def bridge_accounts(self) -> set[str]:
        summary = await self.get_json(f"{self.bridge_url}/api/mt5/accounts/summary")
        return {str(a["account"]) for a in summary["accounts"]}

    # agent --------------------------------------------------------------------------------------
    async def start_agent(self) -> Proc:
        env = clean_env(
            MT5_AGENT_BRIDGE_URL=self.bridge_url,
            MT5_AGENT_STORE_URL=f"sqlite:///{self._dir('agent') / 'agent.db'}",
            MT5_AGENT_SCHEDULE=f"{SCHEDULE_S:g}s",
            MT5_AGENT_PROBE_INTERVAL=f"{PROBE_S:g}",
            MT5_AGENT_METRICS_TOKEN_FILE=str(self.metrics_token_file),
            MT5_AGENT_LISTEN=f"127.0.0.1:{self.agent_port}",
            MT5_AGENT_FRESHNESS=str(THRESHOLDS),
            MT5_AGENT_HEALTH_BACKOFF="0.05",
            MT5_AGENT_REQUEST_TIMEOUT="2",
            MT5_AGENT_LOG_FORMAT="json",
        )
        proc = self._proc("agent", [sys.executable, "-m", "agent.cli", "run"], env)
        await proc.start()
        await self._ready(proc, f"{self.agent_url}/healthz")
        return proc

    # webhook receiver ---------------------------------------------------------------------------
    async def start_webhook_receiver(self) -> Webhook:
        """deploy/webhook_receiver.py, as compose runs it: one token file per receiver."""
        secrets = self._dir("webhook-receiver")
        args = []
        for name, token in self.webhook.tokens.items():
            token_file = secrets / f"{name}_webhook_token"
            token_file.write_text(token + "\n", encoding="utf-8")
            args += ["--receiver", f"{name}={token_file}"]
        proc = self._proc(
            "webhook-receiver",
            [
                sys.executable,
                str(WEBHOOK_RECEIVER),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.webhook_port),
                *args,
            ],
            clean_env(),
        )
        await proc.start()
        await self._ready(proc, f"{self.webhook.url}/healthz")
        return self.webhook

    async def notifications(
        self, *, receiver: str | None = None, alertname: str | None = None, status: str | None = None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The receiver's notifications now, as (notification, alert) pairs matching the filters."""
        received = await self.get_json(f"{self.webhook.url}/notifications")
        for note in received:
            note["at"] = datetime.fromisoformat(note["received_at"]).timestamp()
        self.webhook.received = received
        return self.webhook.notifications(receiver=receiver, alertname=alertname, status=status)

    # alertmanager -------------------------------------------------------------------------------
    async def start_alertmanager(self, webhook: Webhook) -> Proc:
        assert self.alertmanager_bin, "call require_tools(alertmanager=True) first"
        binary = self.alertmanager_bin
        workdir = self._dir("alertmanager")
        config_file = workdir / "alertmanager.yml"
        config_file.write_text(
            yaml.safe_dump(alertmanager_config(webhook, workdir / "secrets"), sort_keys=False),
            encoding="utf-8",
        )
        if amtool := shutil.which("amtool"):
            checked = await asyncio.create_subprocess_exec(
                amtool,
                "check-config",
                str(config_file),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(checked.communicate(), 30)
            assert checked.returncode == 0, out.decode()
        proc = self._proc(
            "alertmanager",
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",
                "--log.level=info",
            ],
        )
        await proc.start()
        await self._ready(proc, f"{self.alertmanager_url}/-/ready")
        return proc

    # prometheus ---------------------------------------------------------------------------------
    async def start_prometheus(self, timings: render.AlertTimings, *, with_alertmanager: bool) -> Proc:
        assert self.prometheus_bin, "call require_tools() first"
        binary = self.prometheus_bin
        workdir = self._dir("prometheus")
        [rules] = render.render_files(
            workdir / "rules", THRESHOLDS, timings=timings, runbook_url="http://127.0.0.1/RUNBOOK.md#{anchor}"
        )
        self.rules_doc = yaml.safe_load(rules.read_text(encoding="utf-8"))
        am_port = self.alertmanager_port if with_alertmanager else None
        config_file = workdir / "prometheus.yml"
        config_file.write_text(
            yaml.safe_dump(
                prometheus_config(self.agent_port, rules, am_port, self.metrics_token_file), sort_keys=False
            ),
            encoding="utf-8",
        )
        proc = self._proc(
            "prometheus",
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--log.level=info",
            ],
        )
        await proc.start()
        await self._ready(proc, f"{self.prometheus_url}/-/ready")
        return proc

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; fails on anything but status success."""
        body = await self.get_json(f"{self.prometheus_url}/api/v1/query", query=promql)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_rules_healthy(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Every rendered rule is loaded and has been evaluated without error (health ok)."""
        expected = {r.get("alert") or r.get("record") for g in self.rules_doc["groups"] for r in g["rules"]}

        async def check() -> list[dict[str, Any]] | None:
            body = await self.get_json(f"{self.prometheus_url}/api/v1/rules")
            loaded = [r for g in body["data"]["groups"] for r in g["rules"]]
            bad = [r for r in loaded if r["health"] == "err"]
            assert not bad, f"rules failing to evaluate in Prometheus: {bad}"
            if {r["name"] for r in loaded} == expected and all(r["health"] == "ok" for r in loaded):
                return loaded
            return None

        loaded, _ = await wait_for(check, timeout, "every rule loaded and evaluated (health ok)")
        return loaded

    async def alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's current (not resolved) alerts, active, suppressed or unprocessed."""
        alerts: list[dict[str, Any]] = await self.get_json(f"{self.alertmanager_url}/api/v2/alerts")
        return alerts

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            self.procs[name].check_alive()

    async def stop_all(self) -> None:
        """Stop every process (Prometheus first, then the others in reverse start order), even if
        stopping one of them fails."""
        names = sorted(reversed(self.procs), key=lambda n: n != "prometheus")
        errors: list[BaseException] = []
        for name in names:
            try:
                await self.procs[name].stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]
