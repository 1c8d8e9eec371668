"""Issue 16, must show: two agent shards over one store, 1,000 accounts on two bridges, one shard killed.

Real processes on loopback: SecantusDB (a MongoDB wire-protocol server, as tests/store starts it), two
simulated bridges (vps-a: 501 accounts, vps-b: 499; 10 of each trade, the others hold a flat balance),
two agents (`mt5-agent run`, `MT5_AGENT_SHARD=0/2` and `1/2`, both sources, one MongoDB database) and one
Prometheus scraping both shards as job mt5-agent with a `shard` label, with deploy/prometheus-shard-rules.yml
loaded (its `for:` shortened like the other e2e rules).

- Every account is synced by exactly one shard, checked in the store: every run document of a source
  counted exactly the logins of one residue class (251/250 of vps-a, 250/249 of vps-b: never the whole
  source), each account document names the source that serves it.
- The union of both shards' /metrics covers every account exactly once (and Prometheus holds 1,000
  `mt5_account_info` series, none twice); each shard's API lists all 1,000, fresh.
- Each shard's WebSocket stream delivers live events of both shards' accounts (even and odd logins).
- Shard 1 killed: on shard 0's API its accounts turn critical (and shard 0's stay fresh), and
  MT5AccountShardDown fires for exactly its accounts within the bound; restarted: every account fresh
  again, the alert resolved, the metrics union exact again, no event stored or streamed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pymongo
import pytest
import yaml

from tests.e2e.stack import MARGIN_S, Proc, Stack, clean_env, wait_for
from tests.ports import free_port
from tests.store.mongo_server import MongoServer, require_secantusd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SHARD_RULES = ROOT / "deploy" / "prometheus-shard-rules.yml"
A_LOGINS = list(range(8_000_000, 8_000_501))  # 251 even, 250 odd
B_LOGINS = list(range(8_100_000, 8_100_499))  # 250 even, 249 odd
TRADING = 10  # per bridge, the first logins (both parities)
ALL = set(A_LOGINS) | set(B_LOGINS)
EVEN = {n for n in ALL if n % 2 == 0}
ODD = ALL - EVEN
SCHEDULE_S = 5.0
FRESHNESS = (12, 20, 30)  # acceptable, degraded, critical after (seconds)
SCRAPE_S = EVAL_S = 1.0
FOR_S = 2.0  # MT5AccountShardDown's `for:` here (1m in the committed rules)
DB = "mt5_shards_e2e"
# The last live data of a killed shard's account is at most a schedule and a cycle old at the kill.
CRITICAL_BOUND_S = FRESHNESS[2] + 1.0 + MARGIN_S  # shard 0's API: age counted from the last live data
PAGE_BOUND_S = FRESHNESS[2] + SCRAPE_S + FOR_S + 2 * EVAL_S + MARGIN_S


def _accounts_file(path: Path, logins: list[int], server: str) -> Path:
    entries = [
        {"login": n, "password": f"pw-{n}", "server": server, **({} if i < TRADING else {"balance": 0.0})}
        for i, n in enumerate(logins)
    ]
    path.write_text(json.dumps({"accounts": entries}), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def _secantus(tmp: Path) -> AsyncIterator[MongoServer]:
    server = MongoServer(require_secantusd(), tmp / "secantus-data")
    (tmp / "secantus-data").mkdir()
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


class Shard:
    def __init__(self, stack: Stack, index: int, config: Path) -> None:
        self.index = index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env(
            MT5_AGENT_SHARD=f"{index}/2",
            MT5_AGENT_LISTEN=f"127.0.0.1:{self.port}",
            MT5_AGENT_LOG_FORMAT="json",
            MT5_AGENT_LOG_LEVEL="WARNING",
        )
        self.proc: Proc = stack._proc(
            f"shard-{index}", [sys.executable, "-m", "agent.cli", "run", "--config", str(config)], env
        )
        self.stack = stack

    async def start(self) -> None:
        await self.proc.start()
        await self.stack._ready(self.proc, f"{self.url}/healthz", timeout=60)

    async def metrics_accounts(self) -> list[int]:
        async with self.stack.http.get(f"{self.url}/metrics") as resp:
            text = await resp.text()
        return [int(a) for a in re.findall(r'^mt5_account_info\{account="(\d+)"', text, re.M)]

    async def accounts(self, state: str | None = None) -> set[int]:
        params = {"state": state} if state else {}
        body = await self.stack.get_json(f"{self.url}/api/v1/accounts", **params)
        return {int(a["account"]) for a in body["accounts"]}


class Listener:
    """One shard's WebSocket stream, subscribed from the latest id at its hello: what arrives is live."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.replace("http://", "ws://") + "/api/v1/stream"
        self.ids: list[int] = []
        self.accounts: list[int] = []
        self.task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        async with self.session.ws_connect(
            self.url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello", hello
            await ws.send_json({"op": "subscribe", "after": hello["latest_id"]})
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if data["type"] == "subscribed":
                    self.subscribed.set()
                elif data["type"] == "event":
                    self.ids.append(int(data["event"]["id"]))
                    self.accounts.append(int(data["event"]["account"]))

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def _prometheus_files(workdir: Path, shards: list[Shard]) -> Path:
    rules = yaml.safe_load(SHARD_RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "MT5AccountShardDown":
                rule["for"] = f"{FOR_S:g}s"
    rules_file = workdir / "shard-rules.yml"
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_S:g}s",
            "scrape_timeout": f"{SCRAPE_S:g}s",
            "evaluation_interval": f"{EVAL_S:g}s",
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": "mt5-agent",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{s.port}"], "labels": {"shard": str(s.index)}} for s in shards
                ],
            }
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_file


async def _firing_accounts(stack: Stack) -> set[int]:
    result = await stack.query('ALERTS{alertname="MT5AccountShardDown", alertstate="firing"}')
    return {int(r["metric"]["account"]) for r in result}


def _run_totals(db: Any) -> dict[str, set[int]]:
    totals: dict[str, set[int]] = {}
    for doc in db.mt5_sync_runs.find({"source": {"$ne": None}}, {"source": 1, "accounts_total": 1}):
        totals.setdefault(doc["source"], set()).add(int(doc["accounts_total"]))
    return totals


async def test_two_shards_one_store_one_killed_and_back(e2e_stack: Stack) -> None:
    stack = e2e_stack
    stack.require_tools(alertmanager=False)
    started = time.monotonic()
    async with _secantus(stack.tmp) as mongo:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            mongo.url, serverSelectionTimeoutMS=5000
        )
        db = client[DB]
        bridges = {}
        for name, logins, seed in (("vps-a", A_LOGINS, 3), ("vps-b", B_LOGINS, 4)):
            port = free_port()
            accounts = _accounts_file(stack.tmp / f"{name}.json", logins, f"Demo-{name}")
            proc = stack._proc(
                name,
                [
                    *(sys.executable, "-m", "bridge.cli", "--simulate", "--accounts", str(accounts)),
                    *(
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--seed",
                        str(seed),
                        "--log-level",
                        "WARNING",
                    ),
                ],
                clean_env(),
            )
            await proc.start()
            bridges[name] = (proc, f"http://127.0.0.1:{port}")
        for proc, url in bridges.values():
            await stack._ready(proc, f"{url}/api/mt5/bridge/health", timeout=90)
        config = stack.tmp / "agent.toml"
        config.write_text(
            f"""
[agent]
store_url = "{mongo.url}"
mongo_database = "{DB}"
schedule = "{SCHEDULE_S:g}s"
freshness = "{",".join(str(x) for x in FRESHNESS)}"
store_refresh = 3
shard_heartbeat = 1
positions_interval = "5"
request_timeout = 5.0
cycle_deadline = 20.0
health_backoff = 0.05
probe_interval = 1.0

[[sources]]
name = "vps-a"
kind = "bridge"
url = "{bridges["vps-a"][1]}"

[[sources]]
name = "vps-b"
kind = "bridge"
url = "{bridges["vps-b"][1]}"
""",
            encoding="utf-8",
        )
        shards = [Shard(stack, 0, config), Shard(stack, 1, config)]
        await asyncio.gather(*(s.start() for s in shards))
        listeners = [Listener(stack.http, s.url) for s in shards]
        for listener in listeners:
            listener.start()
        for listener in listeners:
            await asyncio.wait_for(listener.subscribed.wait(), 30)
        prometheus_dir = stack.tmp / "prometheus"
        prometheus_dir.mkdir()
        prometheus = stack._proc(
            "prometheus",
            [
                stack.prometheus_bin,
                f"--config.file={_prometheus_files(prometheus_dir, shards)}",
                f"--storage.tsdb.path={prometheus_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{stack.prometheus_port}",
            ],
        )
        await prometheus.start()
        await stack._ready(prometheus, f"{stack.prometheus_url}/-/ready")

        try:
            # 1. Every account synced, by exactly one shard; every shard's API lists and shows them all.
            async def all_fresh_everywhere() -> bool:
                stack.check_alive()
                return all([await s.accounts("fresh") == ALL for s in shards])

            _, took = await wait_for(all_fresh_everywhere, 90, "1,000 accounts fresh on both shards' API")
            print(f"all 1,000 fresh on both APIs {took:.1f}s after the shards listened")
            for s in shards:
                assert await s.accounts() == ALL
            exported = [await s.metrics_accounts() for s in shards]
            assert sorted(exported[0]) == sorted(EVEN) and sorted(exported[1]) == sorted(ODD)
            assert len(exported[0]) + len(exported[1]) == len(ALL)  # each once: no account twice
            expected_totals = {"vps-a": {251, 250}, "vps-b": {250, 249}}  # never a whole source (501, 499)

            async def runs_recorded() -> bool:
                totals = _run_totals(db)
                assert all(t <= expected_totals.get(k, set()) for k, t in totals.items()), totals
                return totals == expected_totals

            await wait_for(runs_recorded, 30, "a run document of each source by each shard")
            docs = list(db.mt5_accounts.find({}, {"_id": 0, "account": 1, "source": 1}))
            assert len(docs) == len(ALL)
            assert all(d["source"] == ("vps-a" if d["account"] in A_LOGINS else "vps-b") for d in docs)

            async def prometheus_has_all() -> bool:
                series = await stack.query('mt5_account_info{job="mt5-agent"}')
                return len(series) == len(ALL)

            await wait_for(prometheus_has_all, 30, "Prometheus holds 1,000 mt5_account_info series")
            assert await stack.query('count by (account) (mt5_account_info{job="mt5-agent"}) > 1') == []

            # 2. Each shard's stream carries events of both shards' accounts.
            async def streams_cover_both() -> bool:
                stack.check_alive()
                return all({n % 2 for n in listener.accounts} == {0, 1} for listener in listeners)

            _, took = await wait_for(streams_cover_both, 90, "each stream: events of even and odd accounts")
            print(
                f"both streams carried both shards' events after {took:.1f}s:",
                [len(x.ids) for x in listeners],
            )

            # 3. Shard 1 killed: its accounts critical on shard 0's API, and paged; shard 0's stay fresh.
            await shards[1].proc.stop(sig=signal.SIGKILL)
            killed = time.monotonic()

            async def odd_critical() -> bool:
                return await shards[0].accounts("critical") == ODD

            _, took = await wait_for(
                odd_critical, CRITICAL_BOUND_S + 10, "shard 1's accounts critical on shard 0"
            )
            print(
                f"shard 1's 500 accounts critical on shard 0's API {took:.1f}s after the kill",
                f"(bound {CRITICAL_BOUND_S:g}s)",
            )
            assert time.monotonic() - killed <= CRITICAL_BOUND_S
            # shard 0's own accounts keep being synced (fresh, or acceptable on a loaded machine)
            assert await shards[0].accounts("fresh") | await shards[0].accounts("acceptable") == EVEN

            async def paged() -> bool:
                return await _firing_accounts(stack) == ODD

            _, took = await wait_for(
                paged, PAGE_BOUND_S + 20, "MT5AccountShardDown firing for shard 1's accounts"
            )
            page_s = time.monotonic() - killed
            print(
                f"MT5AccountShardDown firing for all 500 {page_s:.1f}s after the kill",
                f"(bound {PAGE_BOUND_S:g}s)",
            )
            assert page_s <= PAGE_BOUND_S

            # 4. Restarted: recovery without duplicates.
            await shards[1].start()
            restarted = time.monotonic()
            states: dict[str, list[int]] = {}

            async def all_synced_everywhere() -> bool:
                stack.check_alive()
                for s in shards:
                    synced = await s.accounts("fresh") | await s.accounts("acceptable")
                    states[f"shard {s.index}"] = [len(synced & EVEN), len(synced & ODD)]
                return all(v == [len(EVEN), len(ODD)] for v in states.values())

            try:
                _, took = await wait_for(
                    all_synced_everywhere, 90, "every account synced again, on both APIs"
                )
                print(f"every account synced again on both APIs {took:.1f}s after the restart")
            finally:
                print("synced (even, odd) on each shard's API:", states)

            async def resolved() -> bool:
                return await _firing_accounts(stack) == set()

            await wait_for(resolved, 30, "MT5AccountShardDown resolved")
            print(f"recovered {time.monotonic() - restarted:.1f}s after the restart")
            exported = [await s.metrics_accounts() for s in shards]
            assert sorted(exported[0]) == sorted(EVEN) and sorted(exported[1]) == sorted(ODD)
            assert _run_totals(db) == expected_totals
            keys = [d["dedup_key"] for d in db.mt5_trade_events.find({}, {"dedup_key": 1})]
            assert keys and len(keys) == len(set(keys))
            for listener in listeners[:1]:  # shard 0's stream lived through it all
                assert len(listener.ids) == len(set(listener.ids)) and listener.ids == sorted(listener.ids)
            print(f"{len(keys)} events stored, each once; whole run {time.monotonic() - started:.0f}s")
        finally:
            for listener in listeners:
                await listener.stop()
            await stack.stop_all()  # before the store stops: the agents write to it until they exit
            client.close()
