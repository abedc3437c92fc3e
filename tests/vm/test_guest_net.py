"""Baseline through QEMU's own paths: a real guest's virtio-net driver talks to a host
namespace over (1) QEMU's tap netdev on a vnetio-created TAP and (2) a macvtap on a veth.

One guest boot serves the whole module (module-scoped fixture). What is checked: pings both
ways over IPv4 and IPv6; TCP streams each way with sha256 at both ends (32 MiB over IPv4 on
the TAP; 8 MiB over IPv6 and over the macvtap, to keep the module near 30 s under TCG); no
TCP checksum errors counted by the guest or the host namespace; and iperf3 (copied in from
the host) as the throughput reference the VirtIO work compares against.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netutil import Netns, create_netns, delete_netns, run
from tests.vm import rig
from tests.vm.hostnet import StreamReceiver, StreamResult, send_stream

pytestmark = [pytest.mark.vm, pytest.mark.privileged]

RecordProperty = Callable[[str, object], None]  # pytest's record_property fixture

STREAM_BYTES = 32 << 20  # the main stream (IPv4 over the TAP)
SHORT_STREAM_BYTES = 8 << 20  # IPv6 and macvtap: same path checks, less emulated copying

# The TAP path (documentation prefixes 192.0.2.0/24 and 2001:db8::/32).
TAP = "vnvmt0"
TAP_MAC = "52:54:00:76:6e:01"
TAP_HOST = {"ipv4": "192.0.2.1", "ipv6": "2001:db8:1::1"}
TAP_GUEST = {"ipv4": "192.0.2.2", "ipv6": "2001:db8:1::2"}
# The macvtap path: macvtap VNVM_MT on veth VETH_A, whose peer VETH_B is the host end.
MACVTAP, VETH_A, VETH_B = "vnvmm0", "vnvmv0", "vnvmv1"
MACVTAP_MAC = "52:54:00:76:6e:02"  # the guest NIC must carry the macvtap's own MAC
MV_HOST = {"ipv4": "198.51.100.1", "ipv6": "2001:db8:2::1"}
MV_GUEST = {"ipv4": "198.51.100.2", "ipv6": "2001:db8:2::2"}
PREFIX = {"ipv4": 24, "ipv6": 64}


@dataclass
class Peer:
    """The booted guest and the host namespace its NICs lead to."""

    ns: Netns
    guest: rig.Guest
    tap_if: str  # the guest's name for the NIC on the TAP
    mv_if: str  # … and for the one on the macvtap


def _configure(guest: rig.Guest, ifname: str, addresses: dict[str, str]) -> None:
    """Addresses on, link up, then wait for carrier (virtio link status comes a moment
    after `ip link set up`)."""
    guest.run(
        f"ip addr add {addresses['ipv4']}/24 dev {ifname} && "
        f"ip -6 addr add {addresses['ipv6']}/64 dev {ifname} nodad && "
        f"ip link set dev {ifname} up && "
        f"for i in $(seq 100); do "
        f"[ $(cat /sys/class/net/{ifname}/carrier) = 1 ] && exit 0; usleep 50000; done; exit 1",
        check=True,
    )


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    import vnetio

    ns = create_netns(ipv6=True)
    macvtap_fd = -1
    guest = None
    try:
        with vnetio.Tap(TAP, persist=True, netns=ns.name) as tap:
            for family in ("ipv4", "ipv6"):
                tap.add_address(f"{TAP_HOST[family]}/{PREFIX[family]}")
            tap.up()
        ns.ip("link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B)
        ns.ip(
            "link", "add", "link", VETH_A, "name", MACVTAP, "address", MACVTAP_MAC,
            "type", "macvtap", "mode", "bridge",
        )  # fmt: skip
        for family in ("ipv4", "ipv6"):
            ns.ip("addr", "add", f"{MV_HOST[family]}/{PREFIX[family]}", "dev", VETH_B)
        ns.set_links((VETH_A, VETH_B, MACVTAP), "up")
        macvtap_fd = rig.open_macvtap(MACVTAP, ns.name)
        guest = rig.Guest(
            nics=[rig.TapNic(TAP, TAP_MAC, netns=ns.name), rig.FdNic(macvtap_fd, MACVTAP_MAC)],
            programs=["ip", "iperf3"],
            name="net",
        ).start()
        tap_if, mv_if = guest.ifname(TAP_MAC), guest.ifname(MACVTAP_MAC)
        _configure(guest, tap_if, TAP_GUEST)
        _configure(guest, mv_if, MV_GUEST)
        yield Peer(ns, guest, tap_if, mv_if)
    finally:
        if guest is not None:
            guest.close()
        if macvtap_fd >= 0:
            os.close(macvtap_fd)
        for dev in (MACVTAP, VETH_A, TAP):
            ns.ip("link", "del", "dev", dev, check=False)
        delete_netns(ns.name)


Blob = tuple[Path, str, int]  # host file, sha256, size


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Blob]]:
    """Random host files of each stream size, with their sha256 (deleted afterwards: pytest
    keeps the temporary directories of recent runs)."""
    out = {}
    for size in (STREAM_BYTES, SHORT_STREAM_BYTES):
        data = os.urandom(size)
        path = tmp_path_factory.mktemp("vnvm") / f"blob-{size}"
        path.write_bytes(data)
        out[size] = (path, hashlib.sha256(data).hexdigest(), size)
    yield out
    for path, _, _ in out.values():
        path.unlink(missing_ok=True)


def _assert_all_replies(output: str) -> None:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    assert match, output
    assert match.group(1) == match.group(2), output


def test_guest_nics_on_virtio_net(peer: Peer) -> None:
    links = peer.guest.run("ip -br link", check=True).stdout
    for ifname, mac in ((peer.tap_if, TAP_MAC), (peer.mv_if, MACVTAP_MAC)):
        assert re.search(rf"^{ifname}\s+\S+\s+{mac}\s+<\S*\bUP,LOWER_UP>", links, re.MULTILINE), (
            links
        )
    for ifname in (peer.tap_if, peer.mv_if):
        driver = peer.guest.run(f"basename $(readlink /sys/class/net/{ifname}/device/driver)")
        assert driver.stdout.strip() == "virtio_net"
    # QEMU attached to the persistent TAP with IFF_VNET_HDR (its tap netdev, vnet_hdr=on).
    tun_flags = int(peer.ns.read_sys(f"{TAP}/tun_flags"), 16)
    assert tun_flags & 0x4000, hex(tun_flags)  # IFF_VNET_HDR


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ping_both_ways_over_tap(peer: Peer, family: str) -> None:
    flag = "-6" if family == "ipv6" else "-4"
    out = peer.guest.run(f"ping {flag} -c 3 -i 0.2 -w 10 {TAP_HOST[family]}", timeout=15)
    assert out.ok, out
    _assert_all_replies(out.stdout)
    host = run(
        ["ip", "netns", "exec", peer.ns.name, "ping", flag, "-c", "3", "-i", "0.2", "-w", "10",
         TAP_GUEST[family]],
        timeout=15,
    )  # fmt: skip
    _assert_all_replies(host)


def _stream_both_ways(
    peer: Peer, blob: Blob, host_addr: str, guest_addr: str, port: int
) -> tuple[StreamResult, StreamResult]:
    """``blob`` host -> guest (guest's nc listens, sha256 in the guest), then the received
    file guest -> host (host receiver hashes)."""
    path, digest, size = blob
    g = peer.guest
    server = g.run_bg(f"nc -l -p {port} > /tmp/rx")
    sent = send_stream(peer.ns.name, guest_addr, port, path)
    server.wait(timeout=30)
    got = g.run("wc -c < /tmp/rx; sha256sum /tmp/rx", timeout=30, check=True).stdout.split()
    assert got[:2] == [str(size), digest], "host->guest stream corrupted"
    receiver = StreamReceiver(peer.ns.name, host_addr, port + 1)
    g.run(f"nc {host_addr} {port + 1} < /tmp/rx", timeout=60, check=True)
    back = receiver.result()
    g.run("rm -f /tmp/rx", check=True)
    assert (back.bytes, back.sha256) == (size, digest), "guest->host stream corrupted"
    return sent, back


def _assert_no_tcp_checksum_errors(peer: Peer) -> None:
    guest_tcp = peer.guest.read_snmp("Tcp")
    host_tcp = rig.parse_snmp(peer.ns.exec("cat", "/proc/net/snmp"), "Tcp")
    assert guest_tcp["InCsumErrors"] == 0, guest_tcp
    assert host_tcp["InCsumErrors"] == 0, host_tcp
    assert guest_tcp["InErrs"] == 0, guest_tcp


@pytest.mark.parametrize(("family", "size"), [("ipv4", STREAM_BYTES), ("ipv6", SHORT_STREAM_BYTES)])
def test_tcp_stream_both_ways_over_tap(
    peer: Peer,
    blobs: dict[int, Blob],
    family: str,
    size: int,
    record_property: RecordProperty,
) -> None:
    port = 5001 if family == "ipv4" else 5011
    blob = blobs[size]
    sent, back = _stream_both_ways(peer, blob, TAP_HOST[family], TAP_GUEST[family], port)
    print(f"{family}: host->guest {sent.gbit_per_s:.2f} Gbit/s, guest->host {back.gbit_per_s:.2f}")
    record_property("host_to_guest_gbit", round(sent.gbit_per_s, 2))
    record_property("guest_to_host_gbit", round(back.gbit_per_s, 2))
    _assert_no_tcp_checksum_errors(peer)


def test_macvtap_ping_and_tcp(peer: Peer, blobs: dict[int, Blob]) -> None:
    for family in ("ipv4", "ipv6"):
        flag = "-6" if family == "ipv6" else "-4"
        out = peer.guest.run(f"ping {flag} -c 2 -i 0.2 -w 10 {MV_HOST[family]}", timeout=15)
        _assert_all_replies(out.stdout)
    host = peer.ns.exec("ping", "-c", "2", "-i", "0.2", "-w", "10", MV_GUEST["ipv4"])
    _assert_all_replies(host)
    _stream_both_ways(peer, blobs[SHORT_STREAM_BYTES], MV_HOST["ipv4"], MV_GUEST["ipv4"], 5021)
    _assert_no_tcp_checksum_errors(peer)


@contextlib.contextmanager
def _iperf3_server(ns: Netns, address: str) -> Iterator[None]:
    """A one-shot iperf3 server in the namespace, listening on return, killed by PID."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "iperf3", "-s", "-1", "--forceflush", "-B", address],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        for _ in range(3):  # a dashed line, then "Server listening on 5201 (test #1)"
            line = proc.stdout.readline()
            if "listening" in line or not line:
                break
        assert "listening" in line, line
        yield
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_iperf3_reference_over_tap(peer: Peer, record_property: RecordProperty) -> None:
    """iperf3 each way for 2 s: QEMU's own tap path, the reference for vnetio's backend."""
    rates = {}
    for direction, extra in (("guest_to_host", ""), ("host_to_guest", " -R")):
        with _iperf3_server(peer.ns, TAP_HOST["ipv4"]):
            out = peer.guest.run(
                f"iperf3 -c {TAP_HOST['ipv4']} -t 2 -J{extra}", timeout=30, check=True
            ).stdout
        end = json.loads(out)["end"]
        rates[direction] = round(end["sum_received"]["bits_per_second"] / 1e9, 2)
        record_property(f"{direction}_gbit", rates[direction])
        assert end["sum_received"]["bytes"] > 0
    print(f"QEMU tap netdev under TCG, iperf3 2 s, Gbit/s: {rates}")
