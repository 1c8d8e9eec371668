"""Private fields stored on account documents (password, credentials, client_id, fund_type, broker,
target_amount) never appear in any response: every route of the app is walked, after a real sync
wrote into those same documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from tests.api.conftest import (
    ADMIN,
    ALL_TOKENS,
    CLIENT_A,
    PRIVATE_KEYS,
    PRIVATE_VALUES,
    READ,
    Api,
    MakeApi,
    account_documents,
    bearer,
    make_jwt,
)
from tests.api.test_sync_endpoints import seed_bridge_accounts


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def _routes(app: web.Application) -> list[tuple[str, str]]:
    calls = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path is None:
            continue
        path = path.replace("{client_id}", CLIENT_A).replace("{account}", "100001")
        calls.extend((route.method, path) for route in resource if route.method != "HEAD")
    return calls


async def test_no_response_contains_private_fields(make_api: MakeApi, fake_bridge):
    _, url = fake_bridge
    api: Api = await make_api(bridge_url=url, **ALL_TOKENS)
    from datetime import UTC, datetime

    await api.store.accounts.put_account_documents(account_documents(datetime.now(UTC)))
    await seed_bridge_accounts(api.store)  # the bridge's accounts, with private fields, get synced
    assert await api.agent.service.load_state()  # the read model takes every document in
    calls = _routes(api.client.app)
    methods_paths = set(calls)
    # The walk covers every endpoint of the issue (and whatever else is registered, e.g. /metrics).
    for expected in [
        ("GET", f"/api/client/{CLIENT_A}/mt5-accounts"),
        ("GET", f"/api/client/{CLIENT_A}/portfolio"),
        ("GET", "/api/admin/mt5/accounts"),
        ("POST", "/api/admin/sync-from-vps"),
        ("GET", "/api/admin/mt5-health"),
        ("PUT", "/api/admin/mt5/accounts/100001/client"),
        ("DELETE", "/api/admin/mt5/accounts/100001/client"),
        ("GET", "/api/v1/accounts"),
        ("GET", "/api/v1/accounts/100001"),
        ("GET", "/api/v1/sync/runs"),
        ("GET", "/api/v1/status"),
        ("GET", "/api/openapi.json"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/"),
    ]:
        assert expected in methods_paths, expected
    # Sync first (writes into the documents holding the private fields), then read everything; the
    # assignment is undone then redone (its answer must not echo the client id either).
    calls.sort(key=lambda c: (c[0] != "POST", c[0] == "PUT"))
    checked = 0
    for token in (ADMIN, READ, make_jwt(CLIENT_A)):
        for method, path in calls:
            if method == "PUT":
                resp = await api.client.put(path, json={"client_id": CLIENT_A}, headers=bearer(token))
            else:
                resp = await api.call(method, path, token)
            text = await resp.text()
            if token == ADMIN:
                assert resp.status == 200, (method, path, resp.status, text[:300])
            for value in PRIVATE_VALUES:
                assert value not in text, (method, path, value)
            # The OpenAPI document names `client_id` as the assignment's request field: a schema, not data.
            if resp.content_type == "application/json" and path != "/api/openapi.json":
                leaked = set(_keys(json.loads(text))) & set(PRIVATE_KEYS)
                assert not leaked, (method, path, leaked)
            checked += 1
    assert checked == 3 * len(calls)
    # The sync really ran over those documents, and kept their private fields (it only $sets).
    run = api.agent.fleet.status.last_run
    assert run is not None and run.synced_live == 7
    assert (await api.store.accounts.get_account(891215)).client_id == CLIENT_A
