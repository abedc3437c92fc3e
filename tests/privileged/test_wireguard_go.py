"""vnetio's WireGuard on a TUN against wireguard-go (Debian's), each in its own namespace.

Topology: namespace A holds vnetio's interface (TUN ``vnwg0``), namespace B holds
wireguard-go; a veth joins them (192.0.2.1 ↔ 192.0.2.2). Inner addresses 10.9.0.1/.2 and
fd09::1/::2. Everything is created here and removed on teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from vnetio import wireguard

from tests.netutil import Netns, create_netns, delete_netns, need, random_suffix, run

pytestmark = pytest.mark.privileged

PORT_A, PORT_B = 51820, 51821
STREAM_BYTES = 32 * 1024 * 1024


@dataclass
class GoPeer:
    """wireguard-go in namespace ``ns`` as interface ``name``."""

    ns: Netns
    name: str
    key_file: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, "env", "WG_PROCESS_FOREGROUND=1",
             need("wireguard-go", "wireguard-go"), self.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not Path(f"/var/run/wireguard/{self.name}.sock").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"wireguard-go did not start: {err}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        Path(f"/var/run/wireguard/{self.name}.sock").unlink(missing_ok=True)

    def wg(self, *args: str) -> str:
        return self.ns.exec(need("wg", "wireguard-tools"), *args)

    def configure(self, peer_public: str, *, endpoint: str | None = f"192.0.2.1:{PORT_A}") -> None:
        args = ["set", self.name, "private-key", str(self.key_file), "listen-port", str(PORT_B),
                "peer", peer_public, "allowed-ips", "10.9.0.1/32,fd09::1/128"]  # fmt: skip
        if endpoint:
            args += ["endpoint", endpoint]
        self.wg(*args)
        self.ns.ip("addr", "add", "10.9.0.2/24", "dev", self.name)
        self.ns.ip("addr", "add", "fd09::2/64", "dev", self.name, "nodad")
        self.ns.ip("link", "set", self.name, "up")


@dataclass
class Rig:
    a: Netns
    b: Netns
    go: GoPeer
    key_a: str
    key_b: str

    def vnetio(self, **kwargs: object) -> wireguard.Interface:
        iface = wireguard.Interface(
            self.key_a, tun="vnwg0", netns=self.a.name, listen_port=PORT_A,
            addresses=["10.9.0.1/24", "fd09::1/64"],
        )  # fmt: skip
        iface.add_peer(
            wireguard.pubkey(self.key_b),
            endpoint=f"192.0.2.2:{PORT_B}",
            allowed_ips=["10.9.0.2/32", "fd09::2/128"],
            **kwargs,  # type: ignore[arg-type]
        )
        return iface


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with go_rig(tmp_path) as made:
        yield made


@contextmanager
def go_rig(tmp_path: Path) -> Iterator[Rig]:
    """Namespaces A and B joined by a veth, wireguard-go in B knowing A's key (the `rig`
    fixture; test_wireguard_uapi_set.py uses it too)."""
    need("wireguard-go", "wireguard-go")
    need("wg", "wireguard-tools")
    a, b = create_netns(ipv6=True), create_netns(ipv6=True)
    go = GoPeer(b, f"vnwgo{random_suffix(2)}", tmp_path / "b.key")
    try:
        run(["ip", "link", "add", "vnwgva", "netns", a.name, "type", "veth",
             "peer", "name", "vnwgvb", "netns", b.name])  # fmt: skip
        for ns, dev, addr in ((a, "vnwgva", "192.0.2.1/24"), (b, "vnwgvb", "192.0.2.2/24")):
            ns.ip("addr", "add", addr, "dev", dev)
            ns.ip("link", "set", dev, "up")
        key_a, key_b = wireguard.genkey(), wireguard.genkey()
        go.key_file.write_text(key_b + "\n")
        go.start()
        go.configure(wireguard.pubkey(key_a))
        yield Rig(a, b, go, key_a, key_b)
    finally:
        go.stop()
        delete_netns(a.name)
        delete_netns(b.name)


def not_routine(drops: dict[str, int]) -> dict[str, int]:
    """Drops other than no_route: the kernel sends IPv6 multicast (MLD reports, router
    solicitations) out of any interface that comes up, and no peer's AllowedIPs covers
    ff02::/16, so those are counted as no_route, as kernel WireGuard drops them too."""
    return {reason: n for reason, n in drops.items() if n and reason != "no_route"}


def ping(ns: Netns, addr: str, count: int = 3) -> bool:
    result = subprocess.run(
        ["ip", "netns", "exec", ns.name, "ping", "-c", str(count), "-i", "0.2", "-W", "3", addr],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return result.returncode == 0


STREAM = """
import hashlib, os, socket, sys
role, family, addr, port, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
h = hashlib.sha256()
if role == "server":
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(1); print("ready", flush=True)
    c, _ = s.accept(); got = 0
    while True:
        b = c.recv(1 << 16)
        if not b: break
        h.update(b); got += len(b)
    print(got, h.hexdigest(), flush=True)
else:
    c = socket.create_connection((addr, port), timeout=30); rnd = os.urandom(1 << 20)
    for i in range(size >> 20):
        block = hashlib.sha256(rnd + i.to_bytes(4, "big")).digest() * 32768
        c.sendall(block); h.update(block)
    c.shutdown(socket.SHUT_WR); c.recv(1); print(size, h.hexdigest(), flush=True)
"""


def stream(sender: Netns, receiver: Netns, addr: str, family: str) -> None:
    """32 MB over TCP from `sender` to `receiver` at `addr`: sha256 equal at both ends."""
    port = "5201"
    with subprocess.Popen(
        ["ip", "netns", "exec", receiver.name, sys.executable, "-c", STREAM, "server", family,
         addr, port, str(STREAM_BYTES)],
        stdout=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.run(
            ["ip", "netns", "exec", sender.name, sys.executable, "-c", STREAM, "client", family,
             addr, port, str(STREAM_BYTES)],
            capture_output=True, text=True, timeout=180, check=True,
        )  # fmt: skip
        received = server.stdout.readline().split()
        sent = client.stdout.split()
        assert received == sent and int(sent[0]) == STREAM_BYTES, (sent, received)


def test_ping_both_ways_ipv4_and_ipv6(rig: Rig) -> None:
    with rig.vnetio() as iface:
        assert ping(rig.a, "10.9.0.2"), "vnetio → wireguard-go, IPv4"
        assert ping(rig.b, "10.9.0.1"), "wireguard-go → vnetio, IPv4"
        assert ping(rig.a, "fd09::2"), "vnetio → wireguard-go, IPv6"
        assert ping(rig.b, "fd09::1"), "wireguard-go → vnetio, IPv6"
        stats = iface.stats()
        assert stats["handshakes"] >= 1 and stats["rx_packets"] >= 12, stats
        assert not_routine(stats["drops"]) == {}, stats
        (peer,) = iface.peers()
        assert peer.latest_handshake is not None and peer.endpoint == f"192.0.2.2:{PORT_B}"
        shown = rig.go.wg("show", rig.go.name, "latest-handshakes").split()
        assert shown[0] == wireguard.pubkey(rig.key_a) and int(shown[1]) > 0, shown


@pytest.mark.parametrize("family", ["4", "6"])
def test_tcp_stream_both_ways_is_byte_exact(rig: Rig, family: str) -> None:
    a_addr, b_addr = ("10.9.0.1", "10.9.0.2") if family == "4" else ("fd09::1", "fd09::2")
    with rig.vnetio() as iface:
        stream(rig.a, rig.b, b_addr, family)
        stream(rig.b, rig.a, a_addr, family)
        stats = iface.stats()
        assert stats["tx_packets"] > 20_000 and stats["rx_packets"] > 20_000, stats
        assert not_routine(stats["drops"]) == {}, stats


def ping_until_reply(ns: Netns, addr: str, within: int) -> float:
    """Ping until the first reply; returns how long it took (fails after `within` s)."""
    start = time.monotonic()
    result = subprocess.run(
        ["ip", "netns", "exec", ns.name, "ping", "-c", "1", "-i", "0.5", "-w", str(within), addr],
        capture_output=True, timeout=within + 10, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"no reply from {addr} within {within} s"
    return time.monotonic() - start


def test_handshake_again_after_either_side_restarts(rig: Rig) -> None:
    with rig.vnetio():
        assert ping(rig.a, "10.9.0.2")
    # vnetio restarts (new sessions, same keys): its first packet starts a new handshake.
    with rig.vnetio() as iface:
        assert ping(rig.a, "10.9.0.2"), "after vnetio restarted"
        # wireguard-go restarts without an endpoint for vnetio, so only vnetio can start a
        # handshake: its session is stale, and the protocol's timers notice when data sent
        # gets no reply for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (15 s), then re-handshake.
        before = iface.stats()["handshakes"]
        rig.go.stop()
        rig.go.start()
        rig.go.configure(wireguard.pubkey(rig.key_a), endpoint=None)
        took = ping_until_reply(rig.a, "10.9.0.2", within=30)
        assert iface.stats()["handshakes"] > before and took > 5, (took, iface.stats())
        assert ping(rig.b, "10.9.0.1")


def test_persistent_keepalive_is_seen_on_the_wire(rig: Rig) -> None:
    capture = subprocess.Popen(
        ["ip", "netns", "exec", rig.b.name, need("tshark", "tshark"), "-i", "vnwgvb",
         "-f", f"udp and src port {PORT_A}", "-a", "duration:5", "-T", "fields", "-e", "udp.length"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    time.sleep(1.0)  # tshark is listening
    with rig.vnetio(persistent_keepalive=1):
        out, _ = capture.communicate(timeout=30)
    lengths = [int(x) for x in out.split()]
    # A keepalive is a data message with no payload: 32 bytes of WireGuard, 40 of UDP.
    assert lengths.count(40) >= 2, lengths


def test_a_peer_with_a_wrong_key_gets_nothing_through(rig: Rig) -> None:
    stranger = wireguard.genkey()
    rig.go.key_file.write_text(stranger + "\n")  # wireguard-go now has a key vnetio does not know
    rig.go.wg("set", rig.go.name, "private-key", str(rig.go.key_file))
    with rig.vnetio() as iface:
        assert not ping(rig.b, "10.9.0.1", count=2)
        assert not ping(rig.a, "10.9.0.2", count=2)
        stats = iface.stats()
        assert stats["rx_packets"] == 0 and stats["handshakes"] == 0, stats
        assert stats["drops"]["unknown_peer"] >= 1, stats


def test_wg_showconf_loads_with_from_config(rig: Rig, tmp_path: Path) -> None:
    conf = rig.go.wg("showconf", rig.go.name)
    path = tmp_path / "go.conf"
    path.write_text(conf)
    os.chmod(path, 0o600)
    with wireguard.Interface.from_config(path) as iface:  # in-process: no TUN, no namespace
        assert iface.public_key == wireguard.pubkey(rig.key_b)
        assert iface.listen_port != 0
        (peer,) = iface.peers()
        assert peer.public_key == wireguard.pubkey(rig.key_a)
        assert set(peer.allowed_ips) == {"10.9.0.1/32", "fd09::1/128"}
        assert peer.endpoint == f"192.0.2.1:{PORT_A}"
