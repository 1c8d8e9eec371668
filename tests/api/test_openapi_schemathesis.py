"""The OpenAPI document matches what the live server answers: schemathesis (`st run`, all checks) fuzzes
every operation of `/api/openapi.json` on a running agent and must find no 5xx and no response that
violates the document."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.api.conftest import ADMIN, ALL_TOKENS, MakeApi
from tests.api.test_sync_endpoints import seed_bridge_accounts

ST = Path(sys.executable).with_name("st")


async def test_schemathesis_finds_no_violation(make_api: MakeApi, fake_bridge, tmp_path: Path):
    if not ST.exists():
        pytest.fail(f"schemathesis CLI not found at {ST} (dev dependency)")
    _, url = fake_bridge
    api = await make_api(bridge_url=url, **ALL_TOKENS)
    # The document's examples (client_alejandro, 891215: the seed's) exist, so 200s get checked too.
    await seed_bridge_accounts(api.store, client_id="client_alejandro")
    assert await api.agent.service.load_state()  # provisioned after start: the read model takes them in
    await api.json("POST", "/api/admin/sync-from-vps", ADMIN)  # /readyz is 200 from here on
    report = tmp_path / "report.ndjson"
    # `from` after `to`, or further apart than the maximum, is a 400 no schema of two separate parameters can
    # express: the analytics range is pinned (its 400s are tested in tests/api/test_analytics_api.py).
    (tmp_path / "schemathesis.toml").write_text(
        '[[operations]]\ninclude-operation-id = "getAccountAnalytics"\n'
        'parameters = { "query.from" = "2026-03-01T00:00:00Z", "query.to" = "2026-03-10T00:00:00Z" }\n'
    )
    cmd = [
        str(ST),
        "run",
        f"{api.base_url}/api/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {ADMIN}",
        "--max-examples",
        "15",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "20251024",
        "--workers",
        "4",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("schemathesis did not finish within 120 s")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-8000:]
    assert "No issues found" in text, text[-3000:]
    # It really exercised the API: every documented operation but the document itself was tested.
    doc = (await api.json("GET", "/api/openapi.json"))[1]
    documented = {f"{m.upper()} {p}" for p, methods in doc["paths"].items() for m in methods}
    tested = set(re.findall(r'"label":"([A-Z]+ [^"]+)"', report.read_text()))
    assert tested == documented - {"GET /api/openapi.json"}, (documented, tested)
