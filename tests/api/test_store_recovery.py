"""A SQLite file deleted while the agent runs (issue 10 finding 14): the next cycle writes a new file at
the same path, `mt5_store_up` stays 1 and the API answers from the new file, without a restart."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agent.domain.runs import RunResult
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.api.conftest import ALL_TOKENS, METRICS, READ, Api, MakeApi


async def _store_up(api: Api) -> float:
    resp = await api.call("GET", "/metrics", METRICS)
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == "mt5_store_up":
                return sample.value
    raise AssertionError("no mt5_store_up sample")


async def test_a_deleted_sqlite_file_is_recreated_by_the_next_cycle(
    make_api: MakeApi, fake_bridge: Any, tmp_path
):
    """Before: every later cycle failed with reason `store` and mt5_store_up stayed 0 until a restart."""
    _, url = fake_bridge
    db = tmp_path / "agent.db"
    api = await make_api(
        seed=False, bridge_url=url, store_url=f"sqlite:///{db}", metrics_token=METRICS, **ALL_TOKENS
    )
    assert (await api.agent.service.run_cycle()).result is RunResult.SUCCESS
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{db}{suffix}")

    run = await api.agent.service.run_cycle()

    assert run.result is RunResult.SUCCESS, run.summary_line()
    assert db.exists()
    assert await _store_up(api) == 1
    _, listed = await api.json("GET", "/api/v1/accounts", READ)
    assert {a["account"] for a in listed["accounts"] if a["data_source"]} == set(SEED_ACCOUNTS)
    _, runs = await api.json("GET", "/api/v1/sync/runs", READ)
    assert [r["run_id"] for r in runs["runs"]] == [run.run_id]  # the new file holds what came after
    _, ready = await api.json("GET", "/readyz")
    assert ready == {"ready": True, "problems": []}
