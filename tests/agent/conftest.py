"""Fixtures shared by the agent tests: the fake seed bridge on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.agent.fake_seed_bridge import SeedBridge, serve_seed_bridge


@pytest.fixture
async def seed() -> AsyncIterator[tuple[SeedBridge, str]]:
    async with serve_seed_bridge() as running:
        yield running
