"""vnetio's WireGuard against kernel WireGuard in a Linux guest (issue 16).

The guest (tests/vm/rig.py) gets Debian's ``wireguard`` module, the host's iproute2 ``ip``
and wireguard-tools ``wg`` (copied in with their libraries), and a virtio-rng device (kernel
WireGuard answers no handshake before the guest's CRNG is seeded). Its virtio NIC sits on
QEMU's tap netdev on a TAP in a namespace made here; in that namespace vnetio's
``wireguard.Interface(..., tun="vnwg0")`` is the other end::

    host namespace                                      guest
    vnwg0 (vnetio TUN)  10.9.0.1/24  fd09::1/64         wg0 (kernel)  10.9.0.2/24  fd09::2/64
    vnetio UDP :51820 -- TAP vnvmwg0 192.0.2.1  <-->  eth0 192.0.2.2 -- kernel UDP :51821
                                 2001:db8:1::1          2001:db8:1::2

With a preshared key on both sides. One guest boot serves the whole module. Checked: a
handshake started by each side (the other side has no endpoint for it, so it can only
answer, and learns the endpoint from the handshake), seen by ``iface.peers()`` and by the
guest's ``wg show``, with the datagrams over IPv4 and (guest-started) over IPv6; pings both
ways over IPv4 and IPv6 inside, up to a full 1420-byte packet; 4 MiB TCP streams both ways
with sha256 at both ends (small because the guest's crypto and TCP run under TCG
emulation); no drops by vnetio other than stray multicast, no invalid packets counted by
the kernel.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import vnetio
from vnetio import wireguard

from tests.netutil import Netns, create_netns, delete_netns, need
from tests.vm import rig
from tests.vm.hostnet import StreamReceiver, send_stream

pytestmark = [pytest.mark.vm, pytest.mark.privileged]

TAP, TAP_MAC = "vnvmwg0", "52:54:00:76:6e:31"
HOST_OUTER, GUEST_OUTER = "192.0.2.1", "192.0.2.2"
HOST_OUTER6, GUEST_OUTER6 = "2001:db8:1::1", "2001:db8:1::2"
HOST_PORT, GUEST_PORT = 51820, 51821
WG_TUN = "vnwg0"
HOST_INNER = {"ipv4": "10.9.0.1", "ipv6": "fd09::1"}
GUEST_INNER = {"ipv4": "10.9.0.2", "ipv6": "fd09::2"}
MTU = 1420
STREAM_BYTES = 4 << 20  # each way; the guest's WireGuard crypto runs under TCG emulation


def endpoints(outer: str) -> tuple[str, str]:
    """vnetio's and the guest's WireGuard endpoint over IPv4 or IPv6."""
    if outer == "ipv6":
        return f"[{HOST_OUTER6}]:{HOST_PORT}", f"[{GUEST_OUTER6}]:{GUEST_PORT}"
    return f"{HOST_OUTER}:{HOST_PORT}", f"{GUEST_OUTER}:{GUEST_PORT}"


@dataclass
class Tunnel:
    """The booted guest, the host namespace its NIC leads to, and vnetio's interface there
    (replaced by :meth:`reset`)."""

    ns: Netns
    guest: rig.Guest
    eth: str  # the guest's name for its NIC
    host_key: str
    guest_key: str
    psk: str
    iface: wireguard.Interface | None = None

    def reset(self, *, initiator: str, outer: str = "ipv4") -> None:
        """Fresh WireGuard state on both ends (no session): vnetio's interface made anew,
        the guest's wg0 deleted and made anew. Only ``initiator`` ("vnetio" or "guest")
        knows the other's endpoint, so only it can start the handshake; ``outer`` is the
        family of the endpoint addresses (the UDP datagrams between the two)."""
        if self.iface is not None:
            self.iface.close()
            self.iface = None
        host_ep, guest_ep = endpoints(outer)
        guest_endpoint = f"endpoint {host_ep}" if initiator == "guest" else ""
        self.guest.run(
            "ip link del wg0 2>/dev/null; "
            "ip link add wg0 type wireguard && "
            f"wg set wg0 private-key /etc/wg/key listen-port {GUEST_PORT} "
            f"peer {wireguard.pubkey(self.host_key)} preshared-key /etc/wg/psk "
            f"allowed-ips {HOST_INNER['ipv4']}/32,{HOST_INNER['ipv6']}/128 {guest_endpoint} && "
            f"ip addr add {GUEST_INNER['ipv4']}/24 dev wg0 && "
            f"ip -6 addr add {GUEST_INNER['ipv6']}/64 dev wg0 nodad && "
            f"ip link set dev wg0 mtu {MTU} up",
            check=True,
        )
        iface = wireguard.Interface(
            self.host_key,
            listen_port=HOST_PORT,
            addresses=[f"{HOST_INNER['ipv4']}/24", f"{HOST_INNER['ipv6']}/64"],
            mtu=MTU,
            netns=self.ns.name,
            tun=WG_TUN,
        )
        self.iface = iface
        iface.add_peer(
            wireguard.pubkey(self.guest_key),
            endpoint=guest_ep if initiator == "vnetio" else None,
            allowed_ips=[f"{GUEST_INNER['ipv4']}/32", f"{GUEST_INNER['ipv6']}/128"],
            preshared_key=self.psk,
        )

    @property
    def wg(self) -> wireguard.Interface:
        """vnetio's interface (made by :meth:`reset`)."""
        assert self.iface is not None, "Tunnel.reset() makes the interface"
        return self.iface

    def wg_show(self, field: str) -> list[str]:
        """``wg show wg0 FIELD`` in the guest, split into words."""
        return self.guest.run(f"wg show wg0 {field}", check=True).stdout.split()

    def diagnostics(self) -> str:
        """What both ends say about the tunnel, for failure messages: vnetio's counters and
        peer, the guest's ``wg show`` and kernel WireGuard's debug log."""
        guest = self.guest.run("wg show wg0; dmesg | grep wireguard | tail -n 20", timeout=15)
        iface = self.iface
        host = f"{iface.stats()}\n{iface.peers()}" if iface is not None else "(no interface)"
        return f"--- vnetio ---\n{host}\n--- guest ---\n{guest.stdout}{guest.stderr}"

    def ping(self, source: str, family: str, count: int = 3, size: int = 56) -> None:
        """Ping the other end's inner address from ``source`` ("host" or "guest"); every
        echo must be answered."""
        flag = "-6" if family == "ipv6" else "-4"
        args = f"{flag} -c {count} -s {size} -i 0.2 -w 15"
        if source == "host":
            proc = subprocess.run(
                ["ip", "netns", "exec", self.ns.name, "ping", *args.split(), GUEST_INNER[family]],
                capture_output=True, text=True, timeout=25, check=False,
            )  # fmt: skip
            out = proc.stdout + proc.stderr
        else:
            result = self.guest.run(f"ping {args} {HOST_INNER[family]}", timeout=25)
            out = result.stdout + result.stderr
        match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
        if not (match and int(match.group(1)) == int(match.group(2)) == count):
            raise AssertionError(
                f"{source} ping {args} over the tunnel: not every echo answered\n{out}\n"
                + self.diagnostics()
            )


@pytest.fixture(scope="module")
def tunnel() -> Iterator[Tunnel]:
    need("wg", "wireguard-tools")  # copied into the guest from the host
    ns = create_netns(ipv6=True)
    guest = None
    t = None
    try:
        with vnetio.Tap(TAP, persist=True, netns=ns.name) as tap:
            tap.add_address(f"{HOST_OUTER}/24")
            tap.add_address(f"{HOST_OUTER6}/64")
            tap.up()
        guest = rig.Guest(
            nics=[rig.TapNic(TAP, TAP_MAC, netns=ns.name)],
            modules=[*rig.VIRTIO_NET_MODULES, "wireguard", "virtio_rng"],
            programs=["ip", "wg"],
            qemu_args=["-device", "virtio-rng-pci"],
            name="wg",
        ).start()
        # Kernel WireGuard drops every handshake packet until the CRNG is initialized
        # ("Dropping handshake packet" in its debug log), and a TCG guest has no entropy
        # source of its own (QEMU's default CPU has no RDRAND): virtio-rng seeds it in ~4 s.
        guest.run(
            "for i in $(seq 300); do dmesg | grep -q 'crng init done' && exit 0; "
            "usleep 100000; done; echo 'the guest CRNG is not ready' >&2; exit 1",
            timeout=40,
            check=True,
        )
        # Kernel WireGuard's debug messages (why it dropped a packet) into dmesg, for
        # failure messages (Tunnel.diagnostics); best effort.
        guest.run(
            "mount -t debugfs none /sys/kernel/debug && "
            "echo 'module wireguard +p' > /sys/kernel/debug/dynamic_debug/control"
        )
        eth = guest.ifname(TAP_MAC)
        guest.run(
            f"ip addr add {GUEST_OUTER}/24 dev {eth} && "
            f"ip -6 addr add {GUEST_OUTER6}/64 dev {eth} nodad && ip link set dev {eth} up && "
            f"for i in $(seq 100); do "
            f"[ $(cat /sys/class/net/{eth}/carrier) = 1 ] && exit 0; usleep 50000; done; exit 1",
            check=True,
        )
        host_key, guest_key = wireguard.genkey(), wireguard.genkey()
        psk = base64.b64encode(os.urandom(32)).decode()  # what `wg genpsk` prints
        guest.run("mkdir -p /etc/wg && chmod 700 /etc/wg", check=True)
        guest.put_file("/etc/wg/key", guest_key.encode() + b"\n", mode=0o600)
        guest.put_file("/etc/wg/psk", psk.encode() + b"\n", mode=0o600)
        t = Tunnel(ns, guest, eth, host_key, guest_key, psk)
        t.reset(initiator="vnetio")
        yield t
    finally:
        if t is not None and t.iface is not None:
            t.iface.close()
        if guest is not None:
            guest.close()
        ns.ip("link", "del", "dev", TAP, check=False)
        delete_netns(ns.name)


def assert_handshake_on_both_sides(t: Tunnel, since: float) -> None:
    (peer,) = t.wg.peers()
    assert peer.latest_handshake is not None, t.diagnostics()
    assert since - 1 <= peer.latest_handshake <= time.time() + 1, (since, peer)
    assert peer.preshared_key, peer
    # The guest's clock comes from the emulated RTC: a handshake time, not a close match.
    shown = t.wg_show("latest-handshakes")
    assert shown[0] == wireguard.pubkey(t.host_key) and int(shown[1]) > 0, t.diagnostics()


def test_handshake_started_by_vnetio(tunnel: Tunnel) -> None:
    """The guest has no endpoint for vnetio: the handshake is vnetio's initiation, the
    kernel's response, and the guest learns vnetio's address from it."""
    t = tunnel
    t.reset(initiator="vnetio")
    assert t.wg_show("latest-handshakes")[1] == "0"
    assert t.wg_show("endpoints")[1] == "(none)"
    since = time.time()
    t.ping("host", "ipv4")
    assert_handshake_on_both_sides(t, since)
    assert t.wg_show("endpoints")[1] == endpoints("ipv4")[0]
    assert t.wg.stats()["handshakes"] >= 1


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ping_both_ways(tunnel: Tunnel, family: str) -> None:
    t = tunnel
    t.ping("host", family)
    t.ping("guest", family)
    # Packets of the full tunnel MTU (1420 bytes of IP) both ways: no fragmentation inside.
    size = MTU - (48 if family == "ipv6" else 28)
    t.ping("host", family, count=2, size=size)
    t.ping("guest", family, count=2, size=size)


def test_tcp_stream_both_ways(tunnel: Tunnel, tmp_path: Path) -> None:
    """4 MiB host -> guest (sha256 in the guest), then 4 MiB made in the guest -> host."""
    t, g = tunnel, tunnel.guest
    data = os.urandom(STREAM_BYTES)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    # busybox nc shuts its socket down when its stdin ends: keep the server's stdin open.
    # It exits at the sender's FIN; the sleep feeding it is killed with its group.
    server = g.run_bg("sleep 300 | nc -l -p 5001 > /tmp/rx")
    try:
        sent = send_stream(t.ns.name, GUEST_INNER["ipv4"], 5001, blob, timeout=120)
        g.run(
            "for i in $(seq 300); do pidof nc >/dev/null || exit 0; usleep 100000; done; exit 1",
            timeout=40,
            check=True,
        )
    finally:
        server.kill()
    got = g.run("wc -c < /tmp/rx; sha256sum /tmp/rx", timeout=30, check=True).stdout.split()
    assert got[:2] == [str(STREAM_BYTES), hashlib.sha256(data).hexdigest()], "host->guest"

    g.run(f"head -c {STREAM_BYTES} /dev/urandom > /tmp/tx", timeout=60, check=True)
    size, digest = g.run("wc -c < /tmp/tx; sha256sum /tmp/tx", check=True).stdout.split()[:2]
    assert size == str(STREAM_BYTES)
    receiver = StreamReceiver(t.ns.name, HOST_INNER["ipv4"], 5002, timeout=120)
    try:
        g.run(f"nc {HOST_INNER['ipv4']} 5002 < /tmp/tx", timeout=120, check=True)
        back = receiver.result()
    finally:
        receiver.close()
    g.run("rm -f /tmp/rx /tmp/tx", check=True)
    assert (back.bytes, back.sha256) == (STREAM_BYTES, digest), "guest->host"
    print(
        f"through kernel WireGuard in a TCG guest: host->guest {sent.gbit_per_s * 1000:.0f} "
        f"Mbit/s, guest->host {back.gbit_per_s * 1000:.0f} Mbit/s"
    )
    # Both ends' per-peer byte counters saw the streams go by.
    transfer = t.wg_show("transfer")  # public key, rx bytes, tx bytes
    assert int(transfer[1]) > STREAM_BYTES and int(transfer[2]) > STREAM_BYTES, transfer
    (peer,) = t.wg.peers()
    assert peer.rx_bytes > STREAM_BYTES and peer.tx_bytes > STREAM_BYTES, peer


def not_routine(drops: dict[str, int]) -> dict[str, int]:
    """Drops other than no_route: the kernel sends IPv6 multicast (MLD reports, router
    solicitations) out of a TUN that comes up, and no AllowedIPs covers ff02::/16."""
    return {reason: n for reason, n in drops.items() if n and reason != "no_route"}


def test_nothing_dropped_or_invalid_on_either_side(tunnel: Tunnel) -> None:
    t = tunnel
    t.ping("host", "ipv4", count=1)  # something went through this session
    stats = t.wg.stats()
    assert stats["rx_packets"] > 0 and stats["tx_packets"] > 0, stats
    assert stats["rx_errors"] == 0 and not_routine(stats["drops"]) == {}, stats
    # The kernel counts datagrams it could not authenticate or place as wg0's rx_errors.
    errors = t.guest.run(
        "cat /sys/class/net/wg0/statistics/rx_errors /sys/class/net/wg0/statistics/rx_dropped",
        check=True,
    ).stdout.split()
    assert errors == ["0", "0"], errors
    guest_tcp = t.guest.read_snmp("Tcp")
    assert guest_tcp["InCsumErrors"] == 0 and guest_tcp["InErrs"] == 0, guest_tcp
    host_tcp = rig.parse_snmp(t.ns.exec("cat", "/proc/net/snmp"), "Tcp")
    assert host_tcp["InCsumErrors"] == 0, host_tcp


@pytest.mark.parametrize("outer", ["ipv4", "ipv6"])
def test_handshake_started_by_the_guest(tunnel: Tunnel, outer: str) -> None:
    """vnetio has no endpoint for the guest: the kernel initiates, vnetio responds and
    learns the guest's address from the handshake, then traffic flows both ways. Over
    IPv4 and over IPv6 between the two ends (vnetio's one socket takes both)."""
    t = tunnel
    t.reset(initiator="guest", outer=outer)
    (peer,) = t.wg.peers()
    assert peer.endpoint is None and peer.latest_handshake is None, peer
    since = time.time()
    t.ping("guest", "ipv4")
    assert_handshake_on_both_sides(t, since)
    (peer,) = t.wg.peers()
    assert peer.endpoint == endpoints(outer)[1], peer
    t.ping("host", "ipv4")
    t.ping("host", "ipv6")
