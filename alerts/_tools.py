"""SHIM(issue 11): this test helper moved to tests/tools.py; it goes when the lead removes the shims
(tests/e2e/stack.py and tests/test_compose.py still import this path)."""

from tests.tools import *  # noqa: F403
from tests.tools import in_ci, require, require_tool  # noqa: F401
