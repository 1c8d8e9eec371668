"""A real agent (build_agent + create_app, served on loopback) against the fake seed bridge, with its
own span exporter, and /metrics fetched over HTTP and parsed like Prometheus would."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from agent.app import Agent, build_agent, create_app
from agent.config import load_settings
from agent.store.base import Store
from agent.telemetry.tracing import setup_tracing
from tests.agent.fake_seed_bridge import SeedBridge


def remove_db(directory: Path, name: str) -> None:
    """Break a SQLite store under its open connection: its files are deleted and a directory takes
    their place, so the store can neither keep writing to the deleted file nor reopen one there."""
    for p in directory.glob(f"{name}*"):
        p.unlink()
    (directory / name).mkdir()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings and OTLP come from the environment: a developer's or CI's must not leak in."""
    for name in list(os.environ):
        if name.startswith(("MT5_AGENT_", "OTEL_")):
            monkeypatch.delenv(name)


@dataclass
class MarginBridge(SeedBridge):
    """The seed's bridge, plus margin_level (percent) for chosen accounts, as MT5 reports it."""

    margin_levels: dict[int, float] = field(default_factory=dict)

    def live_data(self, account: int) -> dict[str, Any]:
        data = super().live_data(account)
        if account in self.margin_levels:
            data["margin_level"] = self.margin_levels[account]
        return data


@dataclass
class Seed:
    bridge: MarginBridge
    server: TestServer

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def seed() -> AsyncIterator[Seed]:
    bridge = MarginBridge()
    server = TestServer(bridge.app(), host="127.0.0.1")
    await server.start_server()
    yield Seed(bridge, server)
    bridge.release.set()
    await server.close()


@dataclass
class Spans:
    exporter: InMemorySpanExporter
    provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        pid = parent.context.span_id
        return [s for s in self.finished() if s.parent is not None and s.parent.span_id == pid]


@pytest.fixture
def spans() -> Spans:
    exporter = InMemorySpanExporter()
    return Spans(exporter, setup_tracing("mt5-agent-test", exporter=exporter, set_global=False))


@dataclass
class Scrape:
    """One /metrics answer: samples by (name, labels), and family types."""

    status: int
    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    labels: dict[str, set[frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, status: int, text: str) -> Scrape:
        out = cls(status, text)
        for fam in text_string_to_metric_families(text):
            out.types[fam.name] = fam.type
            for s in fam.samples:
                out.samples[(s.name, frozenset(s.labels.items()))] = s.value
                out.labels.setdefault(s.name, set()).add(frozenset(s.labels))
        return out

    def get(self, name: str, /, **labels: str | int) -> float | None:
        return self.samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))

    def value(self, name: str, /, **labels: str | int) -> float:
        v = self.get(name, **labels)
        assert v is not None, f"no sample {name}{labels}"
        return v

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {lbl: v for (n, lbl), v in self.samples.items() if n == name}


@dataclass
class Harness:
    agent: Agent
    server: TestServer
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def scrape(self, **headers: str) -> Scrape:
        async with self.session.get(self.url("/metrics"), headers=headers) as resp:
            text = await resp.text()
            assert resp.status == 200, text
            assert resp.headers["Content-Type"].startswith("text/plain")
            return Scrape.parse(resp.status, text)


MakeAgent = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_agent(tmp_path: Path, spans: Spans) -> AsyncIterator[MakeAgent]:
    harnesses: list[Harness] = []

    async def make(bridge_url: str, *, store: Store | None = None, **settings: Any) -> Harness:
        settings.setdefault("store_url", f"sqlite:///{tmp_path / f'agent{len(harnesses)}.db'}")
        settings.setdefault("health_backoff", 0.01)
        settings.setdefault("request_timeout", 2.0)
        agent = build_agent(
            load_settings(bridge_url=bridge_url, **settings), store=store, tracer_provider=spans.provider
        )
        server = TestServer(create_app(agent, schedule=False), host="127.0.0.1")
        await server.start_server()  # runs the app's lifecycle: opens the store, loads state
        h = Harness(agent, server, aiohttp.ClientSession())
        harnesses.append(h)
        return h

    yield make
    for h in harnesses:
        await h.session.close()
        await h.server.close()
