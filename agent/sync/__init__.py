"""The cycle over sources (`cycle`), the fleet read model (`fleet`), the scheduler and the source prober.

SHIM(issue 11): `agent.sync` was a module; its names are re-exported here until the lead removes this.
"""

from agent.sync.cycle import *  # noqa: F403
from agent.sync.cycle import (  # noqa: F401
    INVALID_ENTRY_ENDPOINTS,
    MAX_UNRECORDED_RUNS,
    PRUNE_AFTER,
    YIELD_EVERY,
    AccountView,
    AlreadyRunning,
    RunListener,
    SyncService,
    SyncState,
    guarded,
)
