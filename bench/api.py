"""The agent's JSON API under concurrent clients on loopback, while sync cycles run.

`mt5-agent run` runs as a subprocess (SQLite store, MT5_AGENT_API_TOKEN set and sent, schedule
`--interval`) against the simulated bridge (another subprocess). Two endpoints are loaded one after
the other for `--duration` seconds each, with `--concurrency` kept-alive connections:

- `single`: GET /api/v1/accounts/{account}, a random account per request;
- `list`:   GET /api/v1/accounts (every account, freshness computed per request);
- `poll`:   GET /api/v1/accounts with `If-None-Match` of the last ETag seen (a frontend polling the
            list: 304 with no body until a cycle or a freshness state changes it; 304s count as ok);
- `mix`:    what a frontend and dashboards ask together, drawn per request with these weights (MIX):
            75 % single reads as above, and 25 % whole-fleet reads: 7 % GET /api/v1/status, 6 %
            GET /api/admin/mt5-health, 6 % GET /api/v1/accounts, 6 % GET /api/client/{id}/portfolio
            (a random one of `--clients` clients of 10 accounts each, assigned before the load).

Meanwhile /metrics is scraped every `--scrape-every` seconds, as Prometheus would. The load generator
is `wrk` when installed (`--client auto`; apt install wrk), else (or with `--client python`) aiohttp in
this process; its own CPU share is reported, since on a 2-core machine it competes with the agent.
Reported: requests/s, p50/p99/max latency, statuses, how much of the time a cycle was running, and
the agent's CPU and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common
import aiohttp
from _common import note, percentile, r

TOKEN = "bench-api-token"
ADMIN_TOKEN = "bench-admin-token"
ENDPOINTS = ("single", "list", "mix", "poll")
# The mix: (kind, percent). A quarter of the requests read the whole fleet (issue 17).
MIX = (("single", 75), ("status", 7), ("health", 6), ("list", 6), ("portfolio", 6))
ACCOUNTS_PER_CLIENT = 10

WRK_SCRIPT = """
local first, n, kind, clients, admin, token = %d, %d, "%s", %d, "%s", "%s"
local mix = {%s}
math.randomseed(42)
local admin_headers = {["Authorization"] = "Bearer " .. admin}
local etag = nil
request = function()
  local k = kind
  if k == "mix" then
    local x, acc = math.random(1, 100), 0
    for i = 1, #mix, 2 do
      acc = acc + mix[i + 1]
      if x <= acc then k = mix[i] break end
    end
  end
  if k == "single" then
    return wrk.format("GET", "/api/v1/accounts/" .. (first + math.random(0, n - 1)))
  elseif k == "status" then
    return wrk.format("GET", "/api/v1/status")
  elseif k == "health" then
    return wrk.format("GET", "/api/admin/mt5-health", admin_headers)
  elseif k == "portfolio" then
    return wrk.format("GET", "/api/client/bench-client-" .. math.random(0, clients - 1) .. "/portfolio")
  elseif k == "poll" and etag then
    return wrk.format("GET", "/api/v1/accounts",
      {["Authorization"] = "Bearer " .. token, ["If-None-Match"] = etag})
  end
  return wrk.format("GET", "/api/v1/accounts")
end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if kind == "poll" then etag = headers["ETag"] or headers["Etag"] or etag end
end
done = function(summary, latency, requests)
  local parts = {}
  for k, v in pairs(statuses) do parts[#parts + 1] = string.format('"%%d": %%d', k, v) end
  io.write(string.format(
    'JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, '
    .. '"errors": {"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "status": %%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/api.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--accounts", type=int, default=1000, help="accounts on the bridge (default %(default)s)")
    p.add_argument("--interval", type=float, default=2.0, help="sync schedule, seconds (default %(default)s)")
    p.add_argument("--latency-ms", type=float, default=5.0, help="terminal latency per MT5 call")
    p.add_argument("--terminals", type=int, default=10, help="terminals on the bridge (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=32, help="client connections (default %(default)s)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of load per endpoint")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="cap per endpoint (python client)")
    p.add_argument("--scrape-every", type=float, default=5.0, help="/metrics scrape period, 0 = none")
    p.add_argument(
        "--endpoints",
        default="single,list",
        help="comma-separated, of single,list,mix,poll (default %(default)s)",
    )
    p.add_argument("--clients", type=int, default=20, help="clients of 10 accounts for the mix's portfolios")
    p.add_argument("--client", choices=("auto", "python", "wrk"), default="auto")
    p.add_argument(
        "--agent-command",
        default=None,
        help="run this (shell-split) instead of `mt5-agent run`, for experiments",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    args.endpoint_list = [e for e in args.endpoints.split(",") if e]
    args.clients = max(1, min(args.clients, args.accounts // ACCOUNTS_PER_CLIENT))
    if not set(args.endpoint_list) <= set(ENDPOINTS) or not args.endpoint_list:
        p.error(f"--endpoints: one or more of {', '.join(ENDPOINTS)}")
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    if args.client == "wrk" and not shutil.which("wrk"):
        p.error("--client wrk: wrk is not installed (apt-get install wrk)")
    return args


def request_path(endpoint: str, rng: random.Random, args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The next request of an endpoint set (as WRK_SCRIPT draws it): path and extra headers."""
    kind = endpoint
    if kind == "mix":
        kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    if kind == "single":
        return f"/api/v1/accounts/{_common.FIRST_LOGIN + rng.randrange(args.accounts)}", {}
    if kind == "status":
        return "/api/v1/status", {}
    if kind == "health":
        return "/api/admin/mt5-health", {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if kind == "portfolio":
        return f"/api/client/bench-client-{rng.randrange(args.clients)}/portfolio", {}
    return "/api/v1/accounts", {}


async def assign_clients(http: aiohttp.ClientSession, url: str, args: argparse.Namespace) -> None:
    """`--clients` clients of ACCOUNTS_PER_CLIENT accounts each, for the mix's portfolio reads."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for i in range(args.clients * ACCOUNTS_PER_CLIENT):
        account = _common.FIRST_LOGIN + i
        body = {"client_id": f"bench-client-{i // ACCOUNTS_PER_CLIENT}"}
        path = f"{url}/api/admin/mt5/accounts/{account}/client"
        async with http.put(path, json=body, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"assigning {account}: {resp.status} {await resp.text()}")


async def python_load(url: str, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """`--concurrency` tasks on one aiohttp session, each sending the next request when the last ended."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    sent = 0
    stop_at = loop.time() + args.duration
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as http:

        async def worker(i: int) -> None:
            nonlocal sent, errors
            rng = random.Random(i)
            etag: str | None = None
            while loop.time() < stop_at and sent < args.max_requests:
                sent += 1
                path, extra = request_path(endpoint, rng, args)
                if endpoint == "poll" and etag is not None:
                    extra = {"If-None-Match": etag}
                t0 = time.perf_counter()
                try:
                    async with http.get(url + path, headers=extra) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                        if endpoint == "poll":
                            etag = resp.headers.get("ETag", etag)
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        cpu0, t0 = _common.cpu_self(), time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
        elapsed, cpu = time.perf_counter() - t0, _common.cpu_self() - cpu0
    ok = statuses.get(200, 0) + statuses.get(304, 0)
    return {
        "requests": len(latencies),
        "requests_per_second": r(ok / elapsed, 1),
        "p50_ms": r((percentile(latencies, 50) or 0) * 1000, 2),
        "p99_ms": r((percentile(latencies, 99) or 0) * 1000, 2),
        "max_ms": r(max(latencies, default=0) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "client_cpu_fraction": r(cpu / elapsed, 3),
    }


async def wrk_load(url: str, endpoint: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    script = workdir / f"{endpoint}.lua"
    mix = ", ".join(f'"{k}", {w}' for k, w in MIX)
    script.write_text(
        WRK_SCRIPT % (_common.FIRST_LOGIN, args.accounts, endpoint, args.clients, ADMIN_TOKEN, TOKEN, mix)
    )
    cmd = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.duration:g}s", "--timeout", "10s"]
    cmd += ["-s", str(script), "-H", f"Authorization: Bearer {TOKEN}", url]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    t0 = time.perf_counter()
    out, _ = await asyncio.wait_for(proc.communicate(), args.duration + 60)
    wall = time.perf_counter() - t0
    line = next((x for x in out.decode().splitlines() if x.startswith("JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out.decode()[-500:]}")
    res = json.loads(line[5:])
    seconds = res["duration_us"] / 1e6
    bad = res["errors"]["status"]
    errors = sum(v for k, v in res["errors"].items() if k != "status")
    return {
        "requests": res["requests"],
        "requests_per_second": r((res["requests"] - bad) / seconds, 1),
        "p50_ms": r(res["p50_us"] / 1000, 2),
        "p99_ms": r(res["p99_us"] / 1000, 2),
        "max_ms": r(res["max_us"] / 1000, 2),
        # wrk counts only statuses >= 400 as errors: a poll's 304s are among the good ones
        "statuses": {"non_2xx": bad, "2xx_or_304" if endpoint == "poll" else "2xx": res["requests"] - bad},
        "errors": errors,
        "client_wall_seconds": r(wall, 2),
    }


async def scraper(url: str, every: float, stop: asyncio.Event, results: list[float]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            headers = {"Accept-Encoding": "gzip", "Authorization": f"Bearer {TOKEN}"}  # docs/metrics-auth.md
            async with http.get(url + "/metrics", headers=headers) as resp:
                await resp.read()
            results.append(time.perf_counter() - t0)
            try:
                await asyncio.wait_for(stop.wait(), every)
            except TimeoutError:
                pass


async def sync_counters(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    headers = {"Accept": "text/plain", "Authorization": f"Bearer {TOKEN}"}
    async with http.get(url + "/metrics", headers=headers) as resp:
        text = await resp.text()
    return (
        _common.metric_value(text, "mt5_sync_duration_seconds_count") or 0.0,
        _common.metric_value(text, "mt5_sync_duration_seconds_sum") or 0.0,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "api",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _common.machine(),
        "params": {
            "accounts": args.accounts,
            "interval_seconds": args.interval,
            "latency_ms": args.latency_ms,
            "terminals": args.terminals,
            "concurrency": args.concurrency,
            "duration_seconds": args.duration,
            "scrape_every_seconds": args.scrape_every,
            "client": args.client,
            "mix_percent": dict(MIX),
            "clients": args.clients,
            "agent_command": args.agent_command or "mt5-agent run",
        },
        "endpoints": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="mt5-bench-") as tmp,
        _common.bridge_process(args.accounts, terminals=args.terminals, latency_ms=args.latency_ms) as bridge,
        _common.agent_process(
            {
                "bridge_url": bridge.url,
                "store_url": f"sqlite:///{Path(tmp) / 'agent.db'}",
                "schedule": f"{args.interval:g}s",
                "api_token": TOKEN,
                "admin_token": ADMIN_TOKEN,
                "log_level": "WARNING",
            },
            Path(tmp),
            command=shlex.split(args.agent_command) if args.agent_command else None,
        ) as agent,
    ):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            note("waiting for the first cycle")
            deadline = time.monotonic() + 120
            while (await sync_counters(http, agent.url))[0] < 1:
                if time.monotonic() > deadline:
                    raise TimeoutError("no cycle finished")
                await asyncio.sleep(0.2)
            if "mix" in args.endpoint_list:
                await assign_clients(http, agent.url, args)
            for endpoint in args.endpoint_list:
                stop = asyncio.Event()
                scrapes: list[float] = []
                task = (
                    asyncio.create_task(scraper(agent.url, args.scrape_every, stop, scrapes))
                    if args.scrape_every > 0
                    else None
                )
                count0, sum0 = await sync_counters(http, agent.url)
                cpu0, t0 = _common.cpu_of(agent.pid), time.perf_counter()
                note(f"{endpoint}: {args.duration:g}s with {args.concurrency} connections ({args.client})")
                if args.client == "wrk":
                    res = await wrk_load(agent.url, endpoint, args, Path(tmp))
                else:
                    res = await python_load(agent.url, endpoint, args)
                elapsed, cpu1 = time.perf_counter() - t0, _common.cpu_of(agent.pid)
                stop.set()
                if task is not None:
                    await task
                count1, sum1 = await sync_counters(http, agent.url)
                res["cycles_during_load"] = int(count1 - count0)
                res["sync_busy_fraction"] = r((sum1 - sum0) / elapsed, 3)
                res["agent_cpu_fraction"] = (
                    r((cpu1 - cpu0) / elapsed, 3) if cpu0 is not None and cpu1 is not None else None
                )
                res["metrics_scrapes"] = len(scrapes)
                res["metrics_scrape_max_ms"] = r(max(scrapes, default=0) * 1000, 1)
                out["endpoints"][endpoint] = res
        out.update({f"agent_{k}": v for k, v in _common.rss_of_mb(agent.pid).items()})
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _common.emit(asyncio.run(asyncio.wait_for(run(args), args.timeout)))


if __name__ == "__main__":
    main()
