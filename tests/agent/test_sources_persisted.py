"""Issue 15, the rest: the source holding each account is stored with it, so after a restart with that
source dead its accounts still carry it (`mt5_account_info{source}`: what MT5BridgeDown's inhibition
joins on); sync runs and the last success are exported per source; a login two bridges serve from the
start is reported once, naming both sources, counted, and never merged.

Real simulated bridges on loopback (aiohttp TestServer), a real SQLite store, the real agent wiring."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from agent.app import Agent, build_agent, close_agent, start_background
from agent.config import load_settings
from agent.domain.runs import RunResult
from tests.ports import free_port

from .test_several_sources import A_LOGINS, B_LOGINS, _bridge, _config, _no_agent_env, _until  # noqa: F401 (autouse fixture)


def _url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def _samples(agent: Agent, family: str) -> dict[str, float]:
    assert agent.metrics is not None
    text = generate_latest(agent.metrics.registry).decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{family}(\{{.*\}}) (\S+)$", text, re.M)}


async def test_after_a_restart_with_a_source_dead_its_accounts_keep_it(tmp_path: Path) -> None:
    a, pool_a = await _bridge(A_LOGINS, seed=5)
    b, pool_b = await _bridge(B_LOGINS, seed=5)
    try:
        agent = build_agent(load_settings(_config(tmp_path, _url(a), _url(b))))
        try:
            for service in agent.services:
                assert (await service.run_cycle()).result is RunResult.SUCCESS
            assert await agent.store.accounts.get_sources() == {
                **dict.fromkeys(A_LOGINS, "vps-a"),
                **dict.fromkeys(B_LOGINS, "vps-b"),
            }
            runs = _samples(agent, "mt5_source_sync_runs_total")
            assert runs['{result="success",source="vps-a"}'] == 1.0
            assert runs['{result="success",source="vps-b"}'] == 1.0
            assert runs['{result="failed",source="vps-b"}'] == 0.0
            last = _samples(agent, "mt5_source_last_success_timestamp_seconds")
            assert set(last) == {'{source="vps-a"}', '{source="vps-b"}'}
        finally:
            await close_agent(agent)
        # Restart with vps-b gone (nothing listens at its address): its accounts come back from the store
        # held by vps-b, before and after vps-b's failed cycle; vps-a cannot take them.
        dead = f"http://127.0.0.1:{free_port()}"
        agent = build_agent(load_settings(_config(tmp_path, _url(a), dead)))
        try:
            await agent.service.ensure_ready()
            snap = agent.fleet.snapshot()
            assert {n: snap.accounts[n].source for n in B_LOGINS} == dict.fromkeys(B_LOGINS, "vps-b")
            assert (await agent.services[1].run_cycle()).result is RunResult.SKIPPED
            assert (await agent.services[0].run_cycle()).result is RunResult.SUCCESS
            info = _samples(agent, "mt5_account_info")
            for login in B_LOGINS:
                [labels] = [k for k in info if f'account="{login}"' in k]
                assert 'source="vps-b"' in labels, labels
            runs = _samples(agent, "mt5_source_sync_runs_total")
            assert runs['{result="skipped",source="vps-b"}'] == 1.0
            assert runs['{result="success",source="vps-a"}'] == 1.0
            last = _samples(agent, "mt5_source_last_success_timestamp_seconds")
            assert set(last) == {'{source="vps-a"}'}  # absent for a source with no success yet
            # The unlabelled aggregate keeps its meaning: the sum over sources, by result.
            total = _samples(agent, "mt5_sync_runs_total")
            assert total['{result="skipped"}'] == 1.0 and total['{result="success"}'] == 1.0
        finally:
            await close_agent(agent)
    finally:
        for server, pool in ((a, pool_a), (b, pool_b)):
            await server.close()
            pool.close()  # type: ignore[attr-defined]


async def test_a_login_two_bridges_serve_from_the_start_is_reported_once_never_merged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = A_LOGINS[0]
    a, pool_a = await _bridge(A_LOGINS, seed=5)
    b, pool_b = await _bridge([shared, *B_LOGINS], seed=5)
    agent = build_agent(load_settings(_config(tmp_path, _url(a), _url(b))))
    caplog.set_level(logging.ERROR, logger="mt5_agent.sync")
    try:
        start_background(agent)  # both sources' first cycles start together
        fleet = agent.fleet
        await _until(
            lambda: all(s.status.last_run is not None for s in agent.services), 10, "both first cycles"
        )
        holder = fleet.holder(shared)
        other = "vps-b" if holder == "vps-a" else "vps-a"
        assert holder in ("vps-a", "vps-b")
        lines = [r.getMessage() for r in caplog.records if "another source already holds" in r.getMessage()]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"source {other} lists 1 account(s)"), lines[0]
        assert f"{shared} (held by {holder})" in lines[0], lines[0]
        dup = _samples(agent, "mt5_source_duplicate_accounts")
        assert dup[f'{{source="{other}"}}'] == 1.0 and dup[f'{{source="{holder}"}}'] == 0.0
        # Never merged: one document, written by its holder only; the other's run left it out.
        assert fleet.snapshot().accounts[shared].source == holder
        assert (await agent.store.accounts.get_sources())[shared] == holder
        loser = next(s for s in agent.services if s.source.name == other)
        assert loser.status.last_run is not None
        assert loser.status.last_run.accounts_total == (len(B_LOGINS) if other == "vps-b" else 2)
    finally:
        await close_agent(agent)
        for server, pool in ((a, pool_a), (b, pool_b)):
            await server.close()
            pool.close()  # type: ignore[attr-defined]
