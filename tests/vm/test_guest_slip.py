"""A Linux guest's own SLIP driver as the far end of a serial line (issue 17).

The guest (tests/vm/rig.py) gets a third serial port, ttyS2, which QEMU wires to one end of
a vnetio SerialPair; Debian's `slip` module (with `slhc`) and net-tools' `slattach`, copied
in, turn it into the interface sl0. On the other end of the pair a vnetio SlipLink bridges
the line to a vnetio Tun in a private namespace. Checked: ping both ways (small and
900-byte), TCP streams both ways byte-exact (sha256 at both ends), and no framing, checksum
or TCP checksum errors counted on either side.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netutil import Netns, create_netns, delete_netns
from tests.vm import rig
from tests.vm.hostnet import StreamReceiver, send_stream

pytestmark = [pytest.mark.vm, pytest.mark.privileged]

HOST, GUEST = "192.0.2.1", "192.0.2.2"
MTU = 1006
STREAM_BYTES = 256 << 10  # each way: an emulated 16550 moves ~100-200 KB/s under TCG


@dataclass
class SlipPeer:
    ns: Netns
    guest: rig.Guest
    link: object  # vnetio.SlipLink


@pytest.fixture(scope="module")
def peer() -> Iterator[SlipPeer]:
    import vnetio

    ns = create_netns()
    pair = vnetio.SerialPair(None)
    tun = link = guest = None
    try:
        tun = vnetio.Tun("vnvmsl0", netns=ns.name, mtu=MTU)
        tun.add_address(f"{HOST}/24")
        tun.up()
        link = vnetio.SlipLink(pair.paths[1], tun, mtu=MTU)
        guest = rig.Guest(
            modules=["slip"],
            programs=["slattach", "ip"],
            # Serial ports in order: ttyS0 console, ttyS1 the rig's command channel, ttyS2
            # this line (QEMU opens the pty as a tty and sets it raw itself).
            qemu_args=[
                "-chardev",
                f"serial,id=slip,path={pair.ptys[0]}",
                "-serial",
                "chardev:slip",
            ],
            name="slip",
        ).start()
        # slattach takes a UUCP lock file; the initramfs has no /var/lock.
        guest.run("mkdir -p /var/lock /run/lock", check=True)
        guest.run_bg("slattach -L -p slip -s 115200 /dev/ttyS2")
        guest.run(
            "for i in $(seq 100); do [ -e /sys/class/net/sl0 ] && exit 0; usleep 50000; done; "
            "exit 1",
            check=True,
        )
        guest.run(f"ip addr add {GUEST}/24 dev sl0 && ip link set dev sl0 mtu {MTU} up", check=True)
        yield SlipPeer(ns, guest, link)
    finally:
        if guest is not None:
            guest.close()
        if link is not None:
            link.close()
        if tun is not None:
            tun.close()
        pair.close()
        delete_netns(ns.name)


def test_ping_both_ways(peer: SlipPeer) -> None:
    out = peer.guest.run(f"ping -c 3 -W 5 {HOST}", timeout=30, check=True).stdout
    assert "3 packets received" in out, out
    out = peer.guest.run(f"ping -c 2 -s 900 -W 5 {HOST}", timeout=30, check=True).stdout
    assert "2 packets received" in out, out
    peer.ns.exec("ping", "-c", "3", "-W", "5", GUEST, timeout=30)
    peer.ns.exec("ping", "-c", "2", "-s", "900", "-W", "5", GUEST, timeout=30)


def test_tcp_stream_both_ways(peer: SlipPeer, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    data = os.urandom(STREAM_BYTES)
    blob.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    g = peer.guest
    server = g.run_bg("nc -l -p 5001 > /tmp/rx")
    send_stream(peer.ns.name, GUEST, 5001, blob, timeout=120)
    server.wait(timeout=60)
    got = g.run("wc -c < /tmp/rx; sha256sum /tmp/rx", timeout=30, check=True).stdout.split()
    assert got[:2] == [str(len(data)), digest], "host -> guest stream corrupted"
    receiver = StreamReceiver(peer.ns.name, HOST, 5002, timeout=120)
    try:
        g.run(f"nc {HOST} 5002 < /tmp/rx", timeout=120, check=True)
        back = receiver.result()
    finally:
        receiver.close()
    assert (back.bytes, back.sha256) == (len(data), digest), "guest -> host stream corrupted"


def test_no_errors_on_either_side(peer: SlipPeer) -> None:
    s = peer.link.link_stats()  # type: ignore[attr-defined]
    assert s["packets_in"] > 0 and s["packets_out"] > 0
    assert s["bad_escape"] + s["over_mtu"] + s["noise"] + s["bad_checksum"] == 0, s
    guest_tcp = peer.guest.read_snmp("Tcp")
    assert guest_tcp["InCsumErrors"] == 0 and guest_tcp["InErrs"] == 0, guest_tcp
    host_tcp = rig.parse_snmp(peer.ns.exec("cat", "/proc/net/snmp"), "Tcp")
    assert host_tcp["InCsumErrors"] == 0, host_tcp
    errors = peer.guest.run(
        "cat /sys/class/net/sl0/statistics/rx_errors /sys/class/net/sl0/statistics/rx_over_errors",
        check=True,
    ).stdout.split()
    assert errors == ["0", "0"]
