"""Every test leaves the logging configuration as it found it: a test that runs a command in-process
(`setup_logging` replaces the root handlers with one writing to that test's captured stderr) must not
leave a handler on a stream pytest has closed, which would print "--- Logging error ---" into whichever
test logs next."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
