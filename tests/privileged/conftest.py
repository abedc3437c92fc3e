"""Fixtures for tests on real adapters (each test gets its own namespace)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import vnetio

from tests.conftest import BridgePair


@pytest.fixture
def bridge_taps(bridge_pair: BridgePair) -> Iterator[tuple[vnetio.Tap, vnetio.Tap]]:
    """Both TAPs of `bridge_pair` opened with vnetio, ports forwarding (pitfall 4)."""
    ns = bridge_pair.ns.name
    with vnetio.Tap(bridge_pair.a, netns=ns) as a, vnetio.Tap(bridge_pair.b, netns=ns) as b:
        bridge_pair.wait_forwarding()
        yield a, b
