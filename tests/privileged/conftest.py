"""Fixtures for tests on real adapters (each test gets its own namespace).

vnetio is imported inside the fixtures, so tests here that do not need the extension
(the fixture self-tests, the doctor tests) still run when it is not built.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import BridgePair

if TYPE_CHECKING:
    import vnetio


@pytest.fixture
def bridge_taps(bridge_pair: BridgePair) -> Iterator[tuple[vnetio.Tap, vnetio.Tap]]:
    """Both TAPs of `bridge_pair` opened with vnetio, ports forwarding (pitfall 4)."""
    import vnetio

    ns = bridge_pair.ns.name
    with vnetio.Tap(bridge_pair.a, netns=ns) as a, vnetio.Tap(bridge_pair.b, netns=ns) as b:
        bridge_pair.wait_forwarding()
        yield a, b
