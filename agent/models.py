"""SHIM(issue 11): moved to `agent.domain.accounts` and `agent.domain.runs`; removed by the lead."""

from agent.domain.accounts import *  # noqa: F403
from agent.domain.accounts import (  # noqa: F401
    INSERT_ONLY_FIELDS,
    REASONS,
    RECORD_FIELDS,
    SYNC_META_FIELDS,
    SYNCED_FIELDS,
    VALUE_FIELDS,
    AccountRecord,
    AccountSyncState,
    AccountUpdate,
    AccountValues,
    DataSource,
    Reason,
    to_ms,
)
from agent.domain.runs import *  # noqa: F403
from agent.domain.runs import RUN_RESULTS, RunResult, SyncRun  # noqa: F401
