"""Shared by the bench scripts: the simulated bridge in a subprocess, statistics, CPU and RSS readings,
machine facts, and the one-JSON-object output.

Imported as a sibling module (`import _common`): the scripts run as `python bench/<name>.py`, so their
own directory is first on sys.path. The project root is added too, for `tests.store.mongo_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIRST_LOGIN = 1_000_001
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- output ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def emit(result: dict[str, Any]) -> None:
    """The one JSON object a bench prints to stdout (progress goes to stderr)."""
    print(json.dumps(result, sort_keys=False), flush=True)


def note(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- statistics --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


# -- CPU and memory ----------------------------------------------------------------------------------


def cpu_self() -> float:
    """CPU seconds (user + system) of this whole process, every thread included."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_of(pid: int) -> float | None:
    """CPU seconds (user + system) of another process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_of_mb(pid: int) -> dict[str, float | None]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, MiB."""
    out: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
        elif line.startswith("VmHWM:"):
            out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    return out


class LoopMonitor:
    """How long the event loop was blocked: a task sleeps `tick` seconds and records its lateness."""

    def __init__(self, tick: float = 0.002) -> None:
        self.tick = tick
        self.max_lag = 0.0
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(self.tick)
            lag = loop.time() - t0 - self.tick
            self.lags.append(lag)
            self.max_lag = max(self.max_lag, lag)

    def start(self) -> None:
        self.max_lag, self.lags = 0.0, []
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# -- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Wait (bounded) for a stdout line starting with `prefix` from a child."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited ({proc.returncode})")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    raise TimeoutError(f"no {prefix!r} line within {timeout:g}s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@dataclass
class BridgeProc:
    proc: subprocess.Popen[str]
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def bridge_process(
    accounts: int,
    *,
    terminals: int | None = None,
    latency_ms: float = 0.0,
    login_cost_ms: float = 0.0,
    trading: bool = False,
    token: str | None = None,
    call_timeout: float = 30.0,
    start_timeout: float = 120.0,
) -> Iterator[BridgeProc]:
    """Our bridge (bridge.api over bridge.simulated) on 127.0.0.1 in its own process, so its CPU is
    never counted as the agent's."""
    cmd = [
        sys.executable,
        str(BENCH_DIR / "_bridge.py"),
        "--accounts",
        str(accounts),
        "--latency-ms",
        str(latency_ms),
        "--login-cost-ms",
        str(login_cost_ms),
        "--call-timeout",
        str(call_timeout),
    ]
    if terminals is not None:
        cmd += ["--terminals", str(terminals)]
    if trading:
        cmd.append("--trading")
    env = dict(os.environ)
    if token:
        env["BENCH_BRIDGE_TOKEN"] = token
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        port = int(_read_line(proc, "PORT ", start_timeout))
        yield BridgeProc(proc, f"http://127.0.0.1:{port}")
    finally:
        stop_process(proc)


def account_entries(n: int, *, trading: bool) -> list[dict[str, Any]]:
    """`n` simulated accounts (logins from 1,000,001). A trading account replays a simulated market
    (about 0.7 ms of bridge CPU per read, 15 ms for the first); a non-trading one (balance 0) costs the
    bridge ~0.01 ms and sends the same live_data fields, so the agent's work per account is the same."""
    from bridge.simulated import SERVER

    return [
        {
            "login": FIRST_LOGIN + i,
            "password": f"bench-{FIRST_LOGIN + i}",
            "name": f"Bench account {i + 1}",
            "server": SERVER,
            "balance": 10_000.0 + 37 * i if trading else 0.0,
        }
        for i in range(n)
    ]


def accounts_per_terminal(n: int, terminals: int | None) -> int:
    """The most accounts any one terminal serves (simulated_pool spreads them round-robin)."""
    if terminals is None:
        return 1 if n else 0
    return math.ceil(n / max(1, min(terminals, n)))


def env_without_agent_settings() -> dict[str, str]:
    """The environment minus any MT5_AGENT_* / OTEL_* a developer has set (settings come from there)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MT5_AGENT_", "OTEL_"))}


@dataclass
class AgentProc:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def agent_command() -> list[str]:
    """`mt5-agent` beside this interpreter (the project venv), else the module."""
    exe = Path(sys.executable).parent / "mt5-agent"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "agent.cli"]


@contextlib.contextmanager
def agent_process(
    settings: dict[str, str],
    workdir: Path,
    *,
    start_timeout: float = 60.0,
    command: Sequence[str] | None = None,
) -> Iterator[AgentProc]:
    """`mt5-agent run` (or `command`) with MT5_AGENT_* settings from `settings` (listen defaults to a free
    loopback port), until /healthz answers; stopped with SIGTERM. Its log goes to workdir/agent.log."""
    import urllib.request

    env = env_without_agent_settings()
    listen = settings.get("listen") or f"127.0.0.1:{free_port()}"
    env.update({f"MT5_AGENT_{k.upper()}": v for k, v in {**settings, "listen": listen}.items()})
    env.setdefault("MT5_AGENT_LOG_FORMAT", "json")
    log_path = workdir / "agent.log"
    url = f"http://{listen}"
    with log_path.open("ab") as log:
        cmd = list(command) if command else [*agent_command(), "run"]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mt5-agent exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mt5-agent did not answer /healthz within {start_timeout:g}s")
            time.sleep(0.2)
        yield AgentProc(proc, url, log_path)
    finally:
        stop_process(proc)


def data_ages(metrics_text: str) -> dict[str, float]:
    """account -> mt5_account_data_age_seconds, from a text-format scrape."""
    out: dict[str, float] = {}
    prefix = 'mt5_account_data_age_seconds{account="'
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            account, _, rest = line[len(prefix) :].partition('"')
            out[account] = float(rest.rsplit(" ", 1)[1])
    return out


def metric_value(metrics_text: str, series: str) -> float | None:
    """The value of one exact series (`name` or `name{labels}`) in a text-format scrape."""
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
