"""`mt5-agent sync`'s exit code comes from why the run stopped, never from its error text (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.cli import EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_SOME_FAILED, sync_exit_code
from agent.domain.runs import RunResult, StopReason, SyncRun

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("result", "stopped", "error", "code"),
    [
        (RunResult.SUCCESS, None, None, EXIT_OK),
        (RunResult.SKIPPED, StopReason.SOURCE, "bridge unavailable: down", EXIT_COULD_NOT_RUN),
        (RunResult.FAILED, StopReason.STORE, "store: MongoDB ping failed", EXIT_COULD_NOT_RUN),
        (RunResult.FAILED, StopReason.ACCOUNT_LIST, "account list: timeout", EXIT_COULD_NOT_RUN),
        (RunResult.FAILED, StopReason.CYCLE, "cycle error: RuntimeError", EXIT_SOME_FAILED),
        (RunResult.FAILED, None, "no account could be synced", EXIT_SOME_FAILED),
        # The text alone decides nothing: an account's failure message may start with anything.
        (RunResult.FAILED, None, "store: looks like a store outage, is not", EXIT_SOME_FAILED),
        (RunResult.PARTIAL, None, None, EXIT_SOME_FAILED),
    ],
)
def test_exit_code_follows_the_stop_reason(
    result: RunResult, stopped: StopReason | None, error: str | None, code: int
) -> None:
    run = SyncRun("r", started_at=T0, result=result, error=error, stopped=stopped)
    assert sync_exit_code(run) == code
