"""SHIM(issue 11): moved to agent.telemetry.tracing; this re-export goes when the lead removes the shims."""

from agent.telemetry.tracing import *  # noqa: F403
from agent.telemetry.tracing import (  # noqa: F401
    OTLP_ENV,
    UNTRACED_PATHS,
    client_trace_config,
    exports_spans,
    otlp_configured,
    setup_tracing,
    setup_tracing_middleware,
)
