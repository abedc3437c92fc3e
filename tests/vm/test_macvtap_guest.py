"""A real guest's virtio-net NIC on a ``vnetio.Macvtap``: QEMU's tap netdev on the adapter's
own descriptor (``FdNic(m.fileno(), m.mac)``).

vnetio creates the macvtap link on one end of a veth pair (the test's namespace) and keeps
the adapter open, without reading from it, while the guest runs; the veth's other end is a
host in a second namespace. Checked: pings both ways (the guest's frames leave through the
lower device, the host's reach the guest by the link's MAC), with the descriptor opened
with offload (IFF_VNET_HDR, which QEMU probes), and the link gone once the adapter closes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.netutil import Netns, create_netns, delete_netns
from tests.vm import rig

pytestmark = [pytest.mark.vm, pytest.mark.privileged]

LOWER, HOST_END = "vnvmq0", "vnvmq1"
HOST_IP, GUEST_IP = "198.51.100.1", "198.51.100.2"


@pytest.fixture
def host(netns: Netns) -> Iterator[Netns]:
    """The host on the lower device's segment: a second namespace with the veth's far end."""
    peer = create_netns(ipv6=False)
    try:
        netns.ip("link", "add", LOWER, "type", "veth", "peer", "name", HOST_END, "netns", peer.name)
        netns.ip("link", "set", "dev", LOWER, "up")
        peer.ip("addr", "add", f"{HOST_IP}/24", "dev", HOST_END)
        peer.ip("link", "set", "dev", HOST_END, "up")
        yield peer
    finally:
        delete_netns(peer.name)


def _all_replies(output: str) -> bool:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    return match is not None and match.group(1) == match.group(2) != "0"


def test_guest_nic_on_a_vnetio_macvtap(netns: Netns, host: Netns) -> None:
    import vnetio

    with vnetio.Macvtap(LOWER, netns=netns.name, offload=True) as m:
        m.up()
        with rig.Guest(nics=[rig.FdNic(m.fileno(), m.mac)], name="macvtap") as guest:
            ifname = guest.ifname(m.mac)
            guest.run(
                f"ip addr add {GUEST_IP}/24 dev {ifname} && ip link set dev {ifname} up && "
                f"for i in $(seq 100); do "
                f"[ $(cat /sys/class/net/{ifname}/carrier) = 1 ] && exit 0; usleep 50000; done; "
                "exit 1",
                check=True,
            )
            out = guest.run(f"ping -c 3 -W 5 {HOST_IP}", timeout=30).stdout
            assert _all_replies(out), out
            back = host.exec("ping", "-c", "3", "-W", "5", GUEST_IP, check=False, timeout=30)
            assert _all_replies(back), back
        name = m.name
    assert not netns.has_link(name)
