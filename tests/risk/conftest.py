"""The risk tests' shared fixtures: the desk and the agent of test_risk_metrics (the correlation tests use
them too)."""

from tests.risk.test_risk_metrics import desk_and_agent  # noqa: F401
