"""OpenTelemetry: a tracer provider always (so spans carry ids into logs), an OTLP/HTTP exporter only
when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; nothing is exported
otherwise.

The global provider can be set only once per process, so everything here also takes a provider
explicitly: tests build one per test (with an in-memory exporter) and pass it down.
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from agent import __version__
from agent.telemetry.logs import redact

log = logging.getLogger("mt5_agent.tracing")

OTLP_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Scrapes and probes every few seconds would drown the traces that matter.
UNTRACED_PATHS = frozenset({"/metrics", "/healthz"})
_server_module_ready = False
_EXPORTING: weakref.WeakSet[TracerProvider] = weakref.WeakSet()  # providers set up with an exporter


def otlp_configured() -> bool:
    return any(os.environ.get(name) for name in OTLP_ENV)


def setup_tracing(
    service_name: str = "mt5-agent",
    *,
    exporter: SpanExporter | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """A new provider: `exporter` (tests) gets spans synchronously, OTLP/HTTP in batches when configured.

    Safe to call more than once: only the first call becomes the global provider; later ones are
    returned for explicit use (`build_agent(tracer_provider=...)`).
    """
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.version": __version__})
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _EXPORTING.add(provider)
    if otlp_configured():
        _EXPORTING.add(provider)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if set_global:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        else:
            log.debug("a global tracer provider is already set; this one is only used where passed")
    return provider


def client_trace_config(tracer_provider: trace.TracerProvider | None = None) -> aiohttp.TraceConfig:
    """One CLIENT span per bridge request, child of the current span, with W3C context propagated, when
    spans are exported; otherwise an empty config. The positions poller makes a hundred bridge requests a
    second at 100 accounts, and a span nobody receives still costs ~0.35 ms of CPU (measured: ~1.6 s of
    45 s of agent work under cProfile), while the request's own log lines keep the cycle's span ids."""
    if not exports_spans(tracer_provider):
        return aiohttp.TraceConfig()
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return create_trace_config(tracer_provider=tracer_provider)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_URL_ATTRIBUTES = ("http.target", "http.url", "url.query", "url.full")


def _scrub_query(span: trace.Span) -> None:
    """The instrumentation redacts only cloud signature parameters; a `?token=` (a WebSocket client
    cannot send headers) must not reach an exported trace either."""
    attrs = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attrs.get(key)
        if isinstance(value, str):
            clean = redact(value)
            if clean != value:
                span.set_attribute(key, clean)


def exports_spans(provider: trace.TracerProvider | None) -> bool:
    """Whether spans from this provider (None: the global one) go anywhere."""
    if provider is None:
        provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider in _EXPORTING
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def setup_tracing_middleware(
    app: web.Application,
    tracer_provider: trace.TracerProvider | None = None,
    *,
    untraced: Iterable[str] = UNTRACED_PATHS,
) -> None:
    """SERVER spans for API requests (opentelemetry-instrumentation-aiohttp-server), outermost.

    Only when spans are exported: the middleware costs about a third of a single-account read's CPU
    (bench/api.py), which buys nothing when every span is dropped.
    """
    if not exports_spans(tracer_provider):
        return
    from opentelemetry.instrumentation.aiohttp_server import (
        AioHttpServerInstrumentor,
        create_aiohttp_middleware,
    )

    global _server_module_ready
    instrumentor = AioHttpServerInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return  # auto-instrumentation already patched web.Application: its middleware is on the app
    if not _server_module_ready:
        # The middleware reads module state (excluded URLs, request counters) that only instrument()
        # initialises; instrument() also patches web.Application for every app in the process, which
        # we do not want, so undo that part at once (nothing can run in between: no await).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp: subclassing Application
            instrumentor.instrument(skip_dep_check=True)
        instrumentor.uninstrument()
        _server_module_ready = True
    otel = create_aiohttp_middleware(tracer_provider=tracer_provider)
    skip = frozenset(untraced)

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in skip:
            return await handler(request)

        async def scrubbed(req: web.Request) -> web.StreamResponse:
            if req.query_string:
                _scrub_query(trace.get_current_span())
            return await handler(req)

        response: web.StreamResponse = await otel(request, scrubbed)
        return response

    app.middlewares.insert(0, traced)
