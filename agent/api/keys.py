"""What the handlers read from the application: typed `web.AppKey`s, set once by the composition root.

Handlers take everything from `request.app[...]`: no object is closed over, and nothing here imports
`agent.app` (the composition root sits above the API and wires it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from agent.api.fleetview import FleetView
from agent.config import Settings
from agent.domain.runs import SyncRun
from agent.store.base import Store
from agent.sync.cycle import SyncService
from agent.sync.fleet import Fleet

SETTINGS = web.AppKey("mt5_settings", Settings)
STORE = web.AppKey("mt5_store", Store)
# The sync service: its cycle (the manual trigger) and its clock.
SYNC = web.AppKey("mt5_sync", SyncService)
# The one read model: every account read (and the status summaries) comes from its snapshot.
FLEET = web.AppKey("mt5_fleet", Fleet)
# Manual cycles still running, cancelled at shutdown (set by setup_api).
MANUAL_CYCLES = web.AppKey("mt5_manual_cycles", set[asyncio.Task[SyncRun]])
# The generated OpenAPI document (JSON bytes), built once the routes are registered (set by setup_api).
OPENAPI_DOCUMENT = web.AppKey("mt5_openapi_document", bytes)
# Whole-fleet answers from cached pieces over the fleet's snapshots (set by setup_api).
FLEET_VIEW = web.AppKey("mt5_fleet_view", FleetView)
# The demo's scripted story, when one runs (set by `mt5-agent demo`): its current step, or None.
DEMO_STORY: web.AppKey[Callable[[], Mapping[str, Any] | None]] = web.AppKey("mt5_demo_story")
