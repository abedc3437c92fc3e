"""`netns="name"`: the adapter lives in the namespace; the test process never moves."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import vnetio

from tests.adapters import recv_own
from tests.conftest import BridgePair
from tests.netutil import Netns, random_suffix, run
from tests.packets import make_frame

pytestmark = pytest.mark.privileged


def own_namespace() -> tuple[str, str]:
    """(this process's namespace, this thread's namespace)."""
    return os.readlink("/proc/self/ns/net"), os.readlink("/proc/thread-self/ns/net")


def in_root_namespace(name: str) -> bool:
    return Path("/sys/class/net", name).exists() or bool(
        run(["ip", "link", "show", "dev", name], check=False)
    )


@pytest.mark.parametrize("cls", [vnetio.Tap, vnetio.Tun], ids=["tap", "tun"])
def test_adapter_opens_inside_the_namespace(
    netns: Netns, cls: type[vnetio.Tap | vnetio.Tun]
) -> None:
    name = f"vn{random_suffix(4)}"  # unique, so "absent from the root namespace" means something
    before = own_namespace()
    with cls(name, netns=netns.name) as adapter:
        assert own_namespace() == before
        assert adapter.netns == netns.name
        assert netns.has_link(name)
        assert not in_root_namespace(name)
        # Configuration made later goes to the namespace too.
        adapter.up()
        adapter.mtu = 1400
        adapter.add_address("192.0.2.1/24")
        link = netns.link(name)
        assert "UP" in link["flags"]
        assert link["mtu"] == 1400
        assert netns.addresses(name) == {"192.0.2.1/24"}
        assert adapter.ifindex == link["ifindex"]
        assert not in_root_namespace(name)
        assert own_namespace() == before
    assert not netns.has_link(name)
    assert own_namespace() == before


def test_open_from_a_thread_leaves_every_thread_in_place(netns: Netns) -> None:
    before = own_namespace()
    seen: dict[str, object] = {}

    def worker() -> None:
        mine = os.readlink("/proc/thread-self/ns/net")
        with vnetio.Tap("vnthr0", netns=netns.name) as tap:
            seen["name"] = tap.name
        seen["same"] = mine == os.readlink("/proc/thread-self/ns/net")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert seen == {"name": "vnthr0", "same": True}
    assert own_namespace() == before


def test_missing_namespace_is_an_os_error(netns: Netns) -> None:
    missing = f"{netns.name}-missing"
    with pytest.raises(OSError) as info:
        vnetio.Tap("vnmiss0", netns=missing)
    assert missing in str(info.value)
    assert not in_root_namespace("vnmiss0")


def test_traffic_between_namespaced_adapters(bridge_pair: BridgePair) -> None:
    ns = bridge_pair.ns
    before = own_namespace()
    with (
        vnetio.Tap(bridge_pair.a, netns=ns.name) as a,
        vnetio.Tap(bridge_pair.b, netns=ns.name) as b,
    ):
        bridge_pair.wait_forwarding()
        sent = [make_frame(i, 100) for i in range(10)]
        a.send_batch(sent)
        assert recv_own(b, len(sent)) == sent
    assert own_namespace() == before
