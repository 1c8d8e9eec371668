"""Every source kind implements the positions side of the `Source` protocol with its signatures (the
events poller will call them on any source), and says the same thing when it has no positions."""

from __future__ import annotations

import inspect

import pytest

from agent.sources import Source, SourceHealth, positions_advertised
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.sources.memory import MemorySource

METHODS = ("positions_supported", "read_positions", "read_deals")


@pytest.mark.parametrize("kind", [MemorySource, BridgeSource])
def test_each_kind_has_the_protocols_signatures(kind: type) -> None:
    for name in METHODS:
        ours = inspect.signature(getattr(kind, name))
        protocol = inspect.signature(getattr(Source, name))
        assert list(ours.parameters) == list(protocol.parameters), (kind.__name__, name)
        for p in protocol.parameters.values():
            assert ours.parameters[p.name].default == p.default, (kind.__name__, name, p.name)
        assert inspect.iscoroutinefunction(getattr(kind, name)) == inspect.iscoroutinefunction(
            getattr(Source, name)
        )


async def test_instances_are_sources_and_agree_on_the_feature() -> None:
    bridge = BridgeSource(BridgeClient("http://127.0.0.1:9"))
    memory = MemorySource()
    try:
        for source in (bridge, memory):
            assert isinstance(source, Source)
            for features in (frozenset(), frozenset({"batch"}), frozenset({"batch", "positions"})):
                health = SourceHealth("healthy", True, features)
                assert source.positions_supported(health) is positions_advertised(health)
    finally:
        await bridge.close()
