"""/metrics access (issue 10 finding 6): every client's balances and names are in it, so as soon as any
credential is configured it takes the metrics, read or admin token, and never a client JWT."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agent.config import Settings
from tests.api.conftest import ADMIN, ALL_TOKENS, CLIENT_A, JWT_SECRET, METRICS, READ, Api, MakeApi, make_jwt

SECRET_NAME = "Account 200001"  # client B's account name: in /metrics, must not reach a stranger


async def _metrics(api: Api, token: str | None = None, **headers: str) -> tuple[int, str, dict[str, str]]:
    resp = await api.call("GET", "/metrics", token, headers=headers)
    return resp.status, await resp.text(), dict(resp.headers)


async def test_metrics_needs_a_token_when_credentials_are_configured(make_api: MakeApi):
    """Before the fix: 200 with every account's balances and names, without any credential."""
    api = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    status, text, headers = await _metrics(api)
    assert status == 401 and SECRET_NAME not in text
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert headers["Content-Type"].startswith("application/json")

    for token in (METRICS, READ, ADMIN):
        status, text, _ = await _metrics(api, token)
        assert status == 200, token
        assert SECRET_NAME in text and "mt5_account_freshness_state" in text


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {make_jwt(CLIENT_A)}",  # a client JWT would show it the other clients' accounts
        f"Bearer {make_jwt('admin')}",
        f"Bearer {METRICS}x",
        f"Bearer {READ[:-1]}",
        "Bearer",
        f"Basic {METRICS}",
        "Bearer tökén-ü",
    ],
)
async def test_a_jwt_or_a_wrong_token_never_reads_metrics(make_api: MakeApi, header: str):
    api = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    status, text, headers = await _metrics(api, Authorization=header)
    assert status == 401, header
    assert SECRET_NAME not in text and "mt5_" not in text
    assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("setting", ["admin_token", "api_token", "metrics_token"])
async def test_any_single_token_closes_metrics_and_opens_it_to_itself(make_api: MakeApi, setting: str):
    token = {**ALL_TOKENS, "metrics_token": METRICS}[setting]
    api = await make_api(**{setting: token})
    assert (await _metrics(api))[0] == 401
    assert (await _metrics(api, "not-the-token"))[0] == 401
    assert (await _metrics(api, token))[0] == 200


async def test_only_a_jwt_secret_closes_metrics_and_says_what_to_set(make_api: MakeApi):
    api = await make_api(jwt_secret=JWT_SECRET)
    for token in (None, make_jwt(CLIENT_A)):
        _, body = await api.json("GET", "/metrics", token, status=503)
        assert body["error"]["code"] == "metrics_auth_not_configured"
        assert "MT5_AGENT_METRICS_TOKEN" in body["error"]["message"]


async def test_metrics_stays_open_with_no_credential_at_all(make_api: MakeApi):
    api = await make_api()  # the loopback default
    status, text, _ = await _metrics(api)
    assert status == 200 and SECRET_NAME in text


async def test_no_spelling_or_method_of_the_path_gets_around_the_check(make_api: MakeApi):
    api = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    for path in ("/metrics?format=text", "/%6Detrics", "/metrics?name[]=mt5_account_info"):
        resp = await api.client.get(path, headers={})
        text = await resp.text()
        assert resp.status in (401, 404), (path, resp.status)
        assert "mt5_" not in text, path
    resp = await api.client.head("/metrics")
    assert resp.status == 401
    status, _, _ = await api.raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 401


async def test_the_metrics_token_reads_nothing_else(make_api: MakeApi):
    api = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    for method, path in (
        ("GET", "/api/v1/accounts"),
        ("GET", f"/api/client/{CLIENT_A}/mt5-accounts"),
        ("GET", "/api/admin/mt5/accounts"),
    ):
        await api.json(method, path, METRICS, status=401)


async def test_openapi_declares_the_metrics_security(make_api: MakeApi):
    closed = await make_api(metrics_token=METRICS, **ALL_TOKENS)
    _, doc = await closed.json("GET", "/api/openapi.json")
    op = doc["paths"]["/metrics"]["get"]
    assert op["security"] == [{"metricsToken": []}, {"apiToken": []}, {"adminToken": []}]
    assert "401" in op["responses"]
    assert doc["components"]["securitySchemes"]["metricsToken"]["scheme"] == "bearer"
    open_api = await make_api()
    _, doc = await open_api.json("GET", "/api/openapi.json")
    assert doc["paths"]["/metrics"]["get"]["security"] == []


def test_the_doc_shows_a_scrape_config_with_a_credentials_file():
    """docs/metrics-auth.md: its Prometheus example is valid YAML that sends the token from a file."""
    doc = (Path(__file__).parents[2] / "docs" / "metrics-auth.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert blocks
    [job] = yaml.safe_load(blocks[0])["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["credentials_file"]
    for name in ("MT5_AGENT_METRICS_TOKEN", "MT5_AGENT_API_TOKEN", "MT5_AGENT_ADMIN_TOKEN"):
        assert name in doc
        assert name.removeprefix("MT5_AGENT_").lower() in Settings.model_fields
