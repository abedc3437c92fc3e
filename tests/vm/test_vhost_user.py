"""vnetio as the other end of a real guest's virtio-net NIC: a ``VhostUserNet`` backend,
forwarded to a vnetio ``Tap`` in a host namespace by ``examples/vhost_forward.py``.

One guest boot serves most tests (module-scoped): pings both ways over IPv4 and IPv6, TCP
streams both ways with sha256 at both ends (32 MiB over IPv4, 8 MiB over IPv6), no TCP
checksum errors on either side, and the guest's TSO super-frames reaching the TAP whole
(``superframes`` mode, counted by the forwarder). Then the guest is killed mid-stream and
a new one boots on the same socket: the backend accepts it and traffic resumes. A second
guest runs with every offload off on its NIC and the forwarder in ``segments`` mode; another
carries the streams through the Rust ``vnetio.Forwarder`` (``--rust``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netutil import Netns, create_netns, delete_netns, run
from tests.vm import rig
from tests.vm.hostnet import StreamReceiver, send_stream

pytestmark = [pytest.mark.vm, pytest.mark.privileged]

ROOT = Path(__file__).resolve().parents[2]
FORWARDER = ROOT / "examples" / "vhost_forward.py"
TAP = "vnvhu0"
GUEST_MAC = "52:54:00:76:68:01"
HOST = {"ipv4": "192.0.2.1", "ipv6": "2001:db8:5::1"}
GUEST = {"ipv4": "192.0.2.2", "ipv6": "2001:db8:5::2"}
STREAM = 32 << 20
SHORT = 8 << 20


class Forwarder:
    """examples/vhost_forward.py in a child process: started, waited for, stopped by PID."""

    def __init__(self, socket_path: Path, ns: Netns, *extra: str) -> None:
        argv = [sys.executable, str(FORWARDER), str(socket_path), TAP, "--netns", ns.name]
        argv += ["--address", f"{HOST['ipv4']}/24", "--address", f"{HOST['ipv6']}/64"]
        argv += ["--count-superframes", *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise AssertionError(f"forwarder failed to start (exit {self.proc.returncode})")
        assert json.loads(line)["event"] == "ready", line

    def kill(self) -> None:
        """End it by PID if it still runs (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> dict[str, Any]:
        """SIGTERM; the counters it printed on the way out."""
        assert self.proc.stdout is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        reports = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        stopped = [r for r in reports if r.get("event") == "stopped"]
        assert stopped, out
        return dict(stopped[-1])


def boot(
    socket_path: Path, *, offloads: bool = True, name: str = "vhu", ethtool: bool = False
) -> rig.Guest:
    device: dict[str, str | int | bool] = {}
    if not offloads:  # the guest driver then negotiates none of them
        for flag in ("csum", "guest_csum", "guest_tso4", "guest_tso6", "guest_ecn",
                     "guest_ufo", "host_tso4", "host_tso6", "host_ecn", "host_ufo",
                     "mrg_rxbuf"):  # fmt: skip
            device[flag] = "off"
    guest = rig.Guest(
        nics=[rig.VhostUserNic(str(socket_path), GUEST_MAC, device=device)],
        programs=["ip", "ethtool"] if ethtool else ["ip"],
        name=name,
    ).start()
    ifname = guest.ifname(GUEST_MAC)
    guest.run(
        f"ip addr add {GUEST['ipv4']}/24 dev {ifname} && "
        f"ip -6 addr add {GUEST['ipv6']}/64 dev {ifname} nodad && ip link set dev {ifname} up"
        f" && for i in $(seq 100); do [ $(cat /sys/class/net/{ifname}/carrier) = 1 ] && exit 0;"
        f" usleep 50000; done; exit 1",
        check=True,
    )
    return guest


@dataclass
class Peer:
    ns: Netns
    socket: Path
    forwarder: Forwarder
    guest: rig.Guest


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    ns = create_netns(ipv6=True)
    sock = tmp_path_factory.mktemp("vnvhu") / "vm.sock"
    forwarder = guest = None
    try:
        forwarder = Forwarder(sock, ns)
        guest = boot(sock)
        yield Peer(ns, sock, forwarder, guest)
    finally:
        if guest is not None:
            guest.close()
        if forwarder is not None:
            forwarder.kill()
        delete_netns(ns.name)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, tuple[Path, str]]]:
    out = {}
    for size in (STREAM, SHORT):
        data = os.urandom(size)
        path = tmp_path_factory.mktemp("vnvhu-blob") / f"blob-{size}"
        path.write_bytes(data)
        out[size] = (path, hashlib.sha256(data).hexdigest())
    yield out
    for path, _ in out.values():
        path.unlink(missing_ok=True)


def all_replies(output: str) -> bool:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    return bool(match) and match.group(1) == match.group(2)


def stream_both_ways(peer: Peer, blob: tuple[Path, str], size: int, family: str) -> None:
    path, digest = blob
    port = 5101 if family == "ipv4" else 5111
    g = peer.guest
    server = g.run_bg(f"nc -l -p {port} > /tmp/rx")
    send_stream(peer.ns.name, GUEST[family], port, path)
    server.wait(timeout=60)
    got = g.run("wc -c < /tmp/rx; sha256sum /tmp/rx", timeout=60, check=True).stdout.split()
    assert got[:2] == [str(size), digest], "host->guest stream corrupted"
    receiver = StreamReceiver(peer.ns.name, HOST[family], port + 1)
    g.run(f"nc {HOST[family]} {port + 1} < /tmp/rx", timeout=120, check=True)
    back = receiver.result()
    g.run("rm -f /tmp/rx", check=True)
    assert (back.bytes, back.sha256) == (size, digest), "guest->host stream corrupted"


def assert_no_checksum_errors(peer: Peer) -> None:
    guest_tcp = peer.guest.read_snmp("Tcp")
    host_tcp = rig.parse_snmp(peer.ns.exec("cat", "/proc/net/snmp"), "Tcp")
    assert guest_tcp["InCsumErrors"] == 0 and guest_tcp["InErrs"] == 0, guest_tcp
    assert host_tcp["InCsumErrors"] == 0, host_tcp


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ping_both_ways(peer: Peer, family: str) -> None:
    flag = "-6" if family == "ipv6" else "-4"
    out = peer.guest.run(f"ping {flag} -c 3 -i 0.2 -w 10 {HOST[family]}", timeout=15)
    assert out.ok and all_replies(out.stdout), out
    host = run(
        ["ip", "netns", "exec", peer.ns.name, "ping", flag, "-c", "3", "-i", "0.2", "-w", "10",
         GUEST[family]],
        timeout=15,
    )  # fmt: skip
    assert all_replies(host), host


@pytest.mark.parametrize(("family", "size"), [("ipv4", STREAM), ("ipv6", SHORT)])
def test_tcp_stream_both_ways(
    peer: Peer, blobs: dict[int, tuple[Path, str]], family: str, size: int
) -> None:
    stream_both_ways(peer, blobs[size], size, family)
    assert_no_checksum_errors(peer)


def test_driver_reloaded_in_the_guest(peer: Peer) -> None:
    """rmmod/insmod virtio_net: the guest resets its rings on the same connection; the
    backend follows and traffic resumes."""
    g = peer.guest
    before = g.run("cat /sys/class/net/*/address").stdout
    g.run("rmmod virtio_net && insmod /lib/modules/vnvm/virtio_net.ko", check=True, timeout=30)
    ifname = g.ifname(GUEST_MAC)
    g.run(
        f"ip addr add {GUEST['ipv4']}/24 dev {ifname} && ip link set dev {ifname} up && "
        f"for i in $(seq 100); do [ $(cat /sys/class/net/{ifname}/carrier) = 1 ] && exit 0; "
        f"usleep 50000; done; exit 1",
        check=True,
    )
    assert g.run("cat /sys/class/net/*/address").stdout == before
    out = g.run(f"ping -c 3 -i 0.2 -w 15 {HOST['ipv4']}", timeout=20)
    assert all_replies(out.stdout), out


def test_guest_killed_mid_stream_then_a_new_guest_is_served(
    peer: Peer, blobs: dict[int, tuple[Path, str]]
) -> None:
    """Runs last of the tests on the module's guest: it kills it."""
    path, _ = blobs[STREAM]
    server = peer.guest.run_bg("nc -l -p 5201 > /dev/null")
    sender = subprocess.Popen(
        ["ip", "netns", "exec", peer.ns.name, "sh", "-c",
         f"cat {path} {path} {path} | nc -q 1 {GUEST['ipv4']} 5201"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # mid-stream
        assert server.alive()
        peer.guest.kill()
    finally:
        sender.kill()
        sender.wait()
    again = boot(peer.socket, name="vhu2")  # the same backend, a new connection
    try:
        out = again.run(f"ping -c 3 -i 0.2 -w 15 {HOST['ipv4']}", timeout=20)
        assert all_replies(out.stdout), out
        report = peer.forwarder.stop()  # while the new guest is connected (its features)
    finally:
        again.close()
    vhost = report["vhost"]
    assert vhost["connections"] == 2 and vhost["disconnects"] >= 1, vhost
    # The first guest's TSO super-frames reached the TAP whole (superframes mode).
    assert report["guest_to_tap"]["superframes"] > 0, report
    assert vhost["superframes"] > 0, vhost
    assert {"csum", "guest_tso4", "host_tso4", "mrg_rxbuf"} <= set(report["features"])
    assert report["guest_to_tap"]["send_errors"] == 0, report
    refused = {k: v for k, v in vhost.items() if k.startswith("guest_") and v}
    assert refused == {}, refused
    # The guest's kicks woke the backend, which took its frames in that thread and
    # interrupted it on both queues (as its EVENT_IDX used_event asked).
    for key in ("tx_kicks", "tx_taken_at_kick", "tx_interrupts", "rx_interrupts"):
        assert vhost[key] > 0, (key, vhost)


@pytest.mark.parametrize(
    ("offloads", "mode"), [(False, "superframes"), (True, "segments"), ("ethtool", "superframes")]
)
def test_offloads_resolved_in_software(
    tmp_path: Path, blobs: dict[int, tuple[Path, str]], offloads: bool | str, mode: str
) -> None:
    """A guest that negotiated no offload gets the host's super-frames split and completed
    in software; in ``segments`` mode the guest's own super-frames are split on receipt;
    a guest that negotiated them but turned its send offloads off with ``ethtool -K``
    sends plain, fully checksummed frames, which cross as they are."""
    ns = create_netns(ipv6=True)
    sock = tmp_path / "vm.sock"
    forwarder = guest = None
    try:
        forwarder = Forwarder(sock, ns, "--mode", mode)
        guest = boot(
            sock, offloads=bool(offloads), name=f"vhu-{mode}", ethtool=offloads == "ethtool"
        )
        if offloads == "ethtool":
            ifname = guest.ifname(GUEST_MAC)
            guest.run(f"ethtool -K {ifname} tx off tso off gso off sg off", check=True)
            shown = guest.run(f"ethtool -k {ifname}", check=True).stdout
            assert "tcp-segmentation-offload: off" in shown, shown
        p = Peer(ns, sock, forwarder, guest)
        stream_both_ways(p, blobs[SHORT], SHORT, "ipv4")
        assert_no_checksum_errors(p)
        report = forwarder.stop()
        vhost = report["vhost"]
        assert report["guest_to_tap"]["superframes"] == 0, report  # split, or never made
        if offloads == "ethtool":
            assert {"csum", "host_tso4"} <= set(report["features"]), report["features"]
            assert vhost["superframes"] == 0, vhost  # the guest made none
        elif offloads:
            assert vhost["superframes"] > 0, vhost  # the guest made them; vnetio split them
        else:
            assert not {"csum", "guest_csum", "guest_tso4", "host_tso4"} & set(report["features"])
            assert vhost["superframes"] == 0, vhost
            assert vhost["sent_in_software"] > 0, vhost  # the host's, split for this guest
    finally:
        if guest is not None:
            guest.close()
        if forwarder is not None:
            forwarder.kill()
        delete_netns(ns.name)


def test_rust_forwarder_carries_streams_and_superframes(
    tmp_path: Path, blobs: dict[int, tuple[Path, str]]
) -> None:
    """``--rust``: a ``vnetio.Forwarder`` (Rust threads) in place of the Python pumps: the
    same streams, the guest's super-frames reach the TAP whole, nothing dropped."""
    ns = create_netns(ipv6=True)
    sock = tmp_path / "vm.sock"
    forwarder = guest = None
    try:
        forwarder = Forwarder(sock, ns, "--rust")
        guest = boot(sock, name="vhu-rust")
        p = Peer(ns, sock, forwarder, guest)
        stream_both_ways(p, blobs[SHORT], SHORT, "ipv4")
        stream_both_ways(p, blobs[SHORT], SHORT, "ipv6")
        assert_no_checksum_errors(p)
        report = forwarder.stop()
        g2t, t2g = report["guest_to_tap"], report["tap_to_guest"]
        assert g2t["superframes"] > 0, report  # crossed whole: both ends take metadata
        assert g2t["delivered"] == g2t["frames"] > 0, report
        assert t2g["delivered"] == t2g["frames"] > 0, report
        assert (g2t["dropped"], t2g["dropped"], g2t["send_errors"]) == (0, 0, 0), report
        assert report["vhost"]["superframes"] > 0, report
    finally:
        if guest is not None:
            guest.close()
        if forwarder is not None:
            forwarder.kill()
        delete_netns(ns.name)


def test_two_guests_through_the_python_learning_switch(tmp_path: Path) -> None:
    """examples/learning_switch.py joins two guests' NICs: ping and TCP between them."""
    socks = [tmp_path / "a.sock", tmp_path / "b.sock"]
    macs = ["52:54:00:76:68:0a", "52:54:00:76:68:0b"]
    addrs = ["192.0.2.10", "192.0.2.11"]
    switch = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "learning_switch.py"), *map(str, socks)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    guests: list[rig.Guest] = []
    try:
        assert switch.stdout is not None
        assert json.loads(switch.stdout.readline())["event"] == "ready"
        for sock, mac, addr, name in zip(socks, macs, addrs, ("swa", "swb"), strict=True):
            g = rig.Guest(nics=[rig.VhostUserNic(str(sock), mac)], programs=["ip"], name=name)
            guests.append(g.start())
            ifname = g.ifname(mac)
            g.run(f"ip addr add {addr}/24 dev {ifname} && ip link set dev {ifname} up", check=True)
        a, b = guests
        out = a.run(f"ping -c 3 -i 0.2 -w 15 {addrs[1]}", timeout=20)
        assert all_replies(out.stdout), out
        # busybox nc shuts its socket down when its stdin ends, and a busybox nc client
        # stops at the first FIN it reads: keep the server's stdin open.
        server = b.run_bg("sleep 300 | nc -l -p 5301 > /tmp/rx")
        # Made in the guest: the command channel is too slow to carry it there.
        a.run(f"head -c {SHORT} /dev/urandom > /tmp/tx", check=True)
        size, sent = a.run("wc -c < /tmp/tx; sha256sum /tmp/tx", check=True).stdout.split()[:2]
        assert size == str(SHORT)
        a.run(f"nc {addrs[1]} 5301 < /tmp/tx", timeout=120, check=True)
        b.run(  # nc exits at the FIN; the sleep feeding it goes on
            "for i in $(seq 200); do pidof nc >/dev/null || exit 0; usleep 100000; done; exit 1",
            timeout=30,
            check=True,
        )
        server.kill()
        got = b.run("wc -c < /tmp/rx; sha256sum /tmp/rx", check=True).stdout.split()
        assert got[:2] == [str(SHORT), sent]
        switch.terminate()
        out_text, _ = switch.communicate(timeout=20)
        report = json.loads(out_text.splitlines()[-1])
        assert report["learnt"] == {macs[0]: 0, macs[1]: 1}, report
        assert report["forwarded"] > 0, report
        refused = [
            {k: v for k, v in p["vhost"].items() if k.startswith("guest_") and v}
            for p in report["ports"]
        ]
        assert refused == [{}, {}], refused
    finally:
        for g in guests:
            g.close()
        if switch.poll() is None:
            switch.kill()
            switch.wait()
        if switch.stdout is not None:
            switch.stdout.close()
