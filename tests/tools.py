"""Test helper (not shipped): locate the external CLI tools (promtool, amtool, docker-compose) tests run."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest


def in_ci() -> bool:
    """True when running under CI (env CI=true), where a missing tool is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip loudly when `condition` is false; fail instead under CI."""
    if condition:
        return
    message = f"MISSING PREREQUISITE, test not run: {reason}"
    if in_ci():
        pytest.fail(message + " (CI=true: failing instead of skipping)")
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """Absolute path of the executable `name`; skip loudly (fail under CI=true) when it is missing."""
    path = shutil.which(name)
    require(
        path is not None,
        f"`{name}` not found on PATH (Debian packages: prometheus for promtool, "
        "prometheus-alertmanager for amtool, docker-compose)",
    )
    assert path is not None
    return path
