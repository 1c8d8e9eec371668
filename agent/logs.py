"""SHIM(issue 11): moved to agent.telemetry.logs; this re-export goes when the lead removes the shims."""

from agent.telemetry.logs import *  # noqa: F403
from agent.telemetry.logs import (  # noqa: F401
    REDACTED,
    JsonFormatter,
    KeyValueFormatter,
    TraceContextFilter,
    make_handler,
    redact,
    register_secrets,
    setup_logging,
)
