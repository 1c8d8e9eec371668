"""The span tree of a sync cycle (in-memory exporter), error status on failures, SERVER spans for API
requests, and OTLP export only when configured."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agent.domain.runs import RunResult
from agent.store.errors import StoreError
from agent.telemetry.tracing import otlp_configured, setup_tracing
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.observability.conftest import MakeAgent, Seed, Spans, remove_db
from tests.ports import free_port

BAD = 891215
STAGES = ["bridge.health", "bridge.accounts", "bridge.fetch", "store.write"]


def _one(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def _exception_type(attributes: Mapping[str, Any] | None) -> type:
    """The class an `exception` span event names (`exception.type` is its dotted path)."""
    module, _, name = str(dict(attributes or {})["exception.type"]).rpartition(".")
    return getattr(importlib.import_module(module), name)


def _url(span: ReadableSpan) -> str:
    attrs = span.attributes or {}
    return str(attrs.get("http.url") or attrs.get("url.full"))


def _status_code(span: ReadableSpan) -> object:
    attrs = span.attributes or {}
    return attrs.get("http.status_code", attrs.get("http.response.status_code"))


async def test_cycle_span_tree(seed: Seed, make_agent: MakeAgent, spans: Spans):
    seed.bridge.behaviour[BAD] = "http_500"
    h = await make_agent(seed.url)
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.PARTIAL

    cycle = _one(spans.named("sync.cycle"))
    assert cycle.parent is None
    assert cycle.status.status_code is StatusCode.UNSET  # partial is not an error of the cycle
    attrs = dict(cycle.attributes or {})
    assert attrs["sync.run_id"] == run.run_id
    assert attrs["sync.result"] == "partial"
    assert (attrs["sync.accounts.total"], attrs["sync.accounts.live"], attrs["sync.accounts.failed"]) == (
        7,
        6,
        1,
    )
    failed = [e for e in cycle.events if e.name == "account.failed"]
    assert [dict(e.attributes or {}) for e in failed] == [{"account": BAD, "reason": "http_status"}]

    children = spans.children(cycle)
    assert sorted(c.name for c in children) == sorted(STAGES)
    assert all(s.context.trace_id == cycle.context.trace_id for s in spans.finished())
    by_name = {c.name: c for c in children}

    health_http = _one(spans.children(by_name["bridge.health"]))
    assert health_http.kind is SpanKind.CLIENT and _url(health_http).endswith("/api/mt5/bridge/health")
    summary_http = _one(spans.children(by_name["bridge.accounts"]))
    assert summary_http.kind is SpanKind.CLIENT and _url(summary_http).endswith("/api/mt5/accounts/summary")

    info = spans.children(by_name["bridge.fetch"])
    assert all(s.kind is SpanKind.CLIENT for s in info)
    assert sorted(_url(s).split("/api/mt5/account/")[1] for s in info) == sorted(
        f"{a}/info" for a in SEED_ACCOUNTS
    )
    bad_http = _one([s for s in info if f"/account/{BAD}/" in _url(s)])
    assert _status_code(bad_http) == 500
    assert bad_http.status.status_code is StatusCode.ERROR
    assert {s.status.status_code for s in info if s is not bad_http} == {StatusCode.UNSET}
    assert dict(by_name["store.write"].attributes or {})["store.updates"] == 6
    assert spans.children(by_name["store.write"]) == []


async def test_bridge_down_cycle_is_an_error_span(make_agent: MakeAgent, spans: Spans):
    h = await make_agent(f"http://127.0.0.1:{free_port()}", health_retries=2)
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.SKIPPED
    cycle = _one(spans.named("sync.cycle"))
    assert cycle.status.status_code is StatusCode.ERROR
    assert dict(cycle.attributes or {})["sync.result"] == "skipped"
    health = _one(spans.children(cycle))
    assert health.name == "bridge.health"
    assert health.status.status_code is StatusCode.ERROR
    assert [e.name for e in health.events] == ["exception"]
    assert "BridgeError" in str(dict(health.events[0].attributes or {})["exception.type"])
    attempts = spans.children(health)
    assert len(attempts) == 2 and all(s.status.status_code is StatusCode.ERROR for s in attempts)


async def test_store_failure_is_recorded_on_the_store_span(
    seed: Seed, make_agent: MakeAgent, spans: Spans, tmp_path: Path
):
    h = await make_agent(seed.url, store_url=f"sqlite:///{tmp_path / 'x.db'}")
    await h.agent.service.run_cycle()
    remove_db(tmp_path, "x.db")
    spans.exporter.clear()
    run = await h.agent.service.run_cycle()
    assert run.result is RunResult.FAILED
    cycle = _one(spans.named("sync.cycle"))
    assert cycle.status.status_code is StatusCode.ERROR
    write = _one(spans.named("store.write"))
    assert write.parent is not None and write.parent.span_id == cycle.context.span_id
    assert write.status.status_code is StatusCode.ERROR
    assert issubclass(_exception_type(_one(list(write.events)).attributes), StoreError)


async def test_server_spans_for_api_requests(seed: Seed, make_agent: MakeAgent, spans: Spans):
    h = await make_agent(seed.url)
    parent_trace = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    traceparent = f"00-{parent_trace:032x}-00f067aa0ba902b7-01"
    async with h.session.get(h.url("/readyz"), headers={"traceparent": traceparent}) as resp:
        status = resp.status
    async with h.session.get(h.url("/no/such/path")) as resp:
        assert resp.status == 404
    async with h.session.get(h.url("/metrics")) as resp:
        assert resp.status == 200
    server = [s for s in spans.finished() if s.kind is SpanKind.SERVER]
    assert sorted(s.name for s in server) == ["GET", "GET /readyz"]  # /metrics is not traced
    ready = _one([s for s in server if s.name == "GET /readyz"])
    assert ready.context.trace_id == parent_trace  # W3C context from the caller is continued
    assert _status_code(ready) == status


@pytest.fixture
def fresh_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let this test set the process-wide provider, and undo it after (OpenTelemetry's own tests do
    the same with these private names): no other test sees it."""
    from opentelemetry.util._once import Once

    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())


async def test_setup_tracing_twice_is_safe(fresh_global_provider: None):
    first = setup_tracing("a")
    assert trace.get_tracer_provider() is first
    exporter = InMemorySpanExporter()
    second = setup_tracing("b", exporter=exporter)
    assert first is not second
    assert trace.get_tracer_provider() is first  # the global is set once, no warning, no error
    with second.get_tracer("t").start_as_current_span("explicit"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["explicit"]
    assert second.resource.attributes["service.name"] == "b"


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A fake OTLP/HTTP collector on loopback that records what it receives."""
    received: list[tuple[str, str, bytes]] = []

    async def traces(request: web.Request) -> web.Response:
        received.append((request.path, request.content_type, await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), received
    await server.close()


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
async def test_otlp_export_when_configured(collector, monkeypatch: pytest.MonkeyPatch, variable: str):
    base, received = collector
    monkeypatch.setenv(variable, base if variable == "OTEL_EXPORTER_OTLP_ENDPOINT" else f"{base}/v1/traces")
    assert otlp_configured()
    provider = setup_tracing("otlp-test", set_global=False)
    with provider.get_tracer("t").start_as_current_span("sync.cycle"):
        pass
    # The batch exporter posts from its own thread; flush there so the loop can answer it.
    assert await asyncio.to_thread(provider.force_flush, 5000)
    await asyncio.to_thread(provider.shutdown)
    assert len(received) == 1
    path, ctype, body = received[0]
    assert (path, ctype) == ("/v1/traces", "application/x-protobuf")
    assert b"sync.cycle" in body and b"otlp-test" in body


def test_nothing_exported_without_endpoint():
    assert not otlp_configured()  # the autouse fixture removed every OTEL_* variable
    provider = setup_tracing(set_global=False)
    # No span processor at all: spans are made (ids for logs) but go nowhere.
    assert provider._active_span_processor._span_processors == ()
