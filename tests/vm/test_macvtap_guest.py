"""A real guest's virtio-net NIC on a ``vnetio.Macvtap``: QEMU's tap netdev on the adapter's
own descriptor (``FdNic(m.fileno(), m.mac)``).

vnetio creates the macvtap link on one end of a veth pair (the test's namespace) and keeps
the adapter open, without reading from it, while the guest runs; the veth's other end is a
host in a second namespace. Checked: pings both ways (the guest's frames leave through the
lower device, the host's reach the guest by the link's MAC), with the descriptor opened
with offload (IFF_VNET_HDR, which QEMU probes), a 32 MiB TCP stream each way with sha256
at both ends, and the link gone once the adapter closes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netutil import Netns, create_netns, delete_netns
from tests.vm import rig
from tests.vm.hostnet import StreamReceiver, send_stream

pytestmark = [pytest.mark.vm, pytest.mark.privileged]

LOWER, HOST_END = "vnvmq0", "vnvmq1"
HOST_IP, GUEST_IP = "198.51.100.1", "198.51.100.2"
STREAM = 32 << 20  # the same stream as through QEMU's tap and vnetio's backend


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


def test_guest_nic_on_a_vnetio_macvtap(netns: Netns, host: Netns, tmp_path: Path) -> None:
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
            # A TCP stream each way, sha256 at both ends.
            blob = tmp_path / "blob"
            data = os.urandom(STREAM)
            blob.write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            server = guest.run_bg("nc -l -p 5401 > /tmp/rx")
            send_stream(host.name, GUEST_IP, 5401, blob)
            server.wait(timeout=60)
            got = guest.run("wc -c < /tmp/rx; sha256sum /tmp/rx", check=True).stdout.split()
            assert got[:2] == [str(STREAM), digest], "host->guest stream corrupted"
            receiver = StreamReceiver(host.name, HOST_IP, 5402)
            try:
                guest.run(f"nc {HOST_IP} 5402 < /tmp/rx", timeout=60, check=True)
                back_stream = receiver.result()
            finally:
                receiver.close()  # by PID, whatever happened (a later test must not see it)
            assert (back_stream.bytes, back_stream.sha256) == (STREAM, digest)
            guest_tcp = guest.read_snmp("Tcp")
            assert guest_tcp["InCsumErrors"] == 0 and guest_tcp["InErrs"] == 0, guest_tcp
        name = m.name
    assert not netns.has_link(name)
