"""SHIM(issue 11): conversions moved to agent.store.codec, input checks to agent.store.checks; the lead
removes this module once agent/cli.py, agent/api/admin.py and agent/api/openapi.py import from there."""

from agent.store.checks import *  # noqa: F403
from agent.store.checks import (  # noqa: F401
    ACCOUNT_MAX,
    CLIENT_ID_MAX_LENGTH,
    CLIENT_ID_PATTERN,
    INT64_MAX,
    INT64_MIN,
    check_account,
    check_client_id,
    check_storable,
    client_id_problem,
    refused,
)
from agent.store.codec import *  # noqa: F403
from agent.store.codec import (  # noqa: F401
    RECORD_DATETIME_FIELDS,
    RUN_DATETIME_FIELDS,
    RUN_FIELDS,
    STATE_DATETIME_FIELDS,
    STATE_FIELDS,
    iso_ms,
    last_per_account,
    parse_dt,
    record_from,
    run_from_doc,
    run_to_doc,
    state_from_doc,
    state_to_doc,
    utc_ms,
)
