"""Offload (IFF_VNET_HDR + TUNSETOFFLOAD) against the real kernel.

The central test carries a TCP stream between kernel sockets in two network namespaces
through a vnetio forwarder (``recv_batch`` on one adapter, ``send_batch`` on the other):
the bytes must arrive exactly (SHA-256 on both ends) and the kernel's own counters (read
with ``nstat`` inside each namespace) must show no checksum error and no retransmission.
The kernel drops a frame whose checksum is wrong, so a checksum mistake anywhere in the
offload path (partial checksums, GSO split, GRO merge) shows up in those counters or as a
stall. The receiver's window is bounded (SO_RCVBUF) so that a TCP flight always fits in
the adapters' rings (txqueuelen 1000): a retransmission then means a lost or corrupted
frame, never a ring that a slow Python forwarder let overflow (TAP-FACTS).

The rest: what ``offloads`` reports, the device-wide offload mask being reset by an open
without offload, offload metadata built in Python (and refused when malformed), super-
frames sent to adapters without offload, and UDP segmentation offload (UDP_SEGMENT). What
depends on the kernel (USO on TUN/TAP since Linux 6.2) is tested both ways: as the kernel
is, and with TUNSETOFFLOAD refusing the USO flags as an older kernel does (a seccomp filter
in a child process, tests/syscall_faults.py).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import pytest
import vnetio

from tests.conftest import BridgePair
from tests.netutil import Netns, create_netns, delete_netns
from tests.packets import DST_MAC, SRC_MAC, ethernet, tcp4_superframe, udp4
from tests.syscall_faults import run_child

pytestmark = pytest.mark.privileged

Kind = Literal["tun", "tap"]
Mode = Literal["off", "segments", "superframes"]

STREAM_BYTES = 32 * 1024 * 1024
# The receiver's SO_RCVBUF (the kernel doubles it): bounds the TCP flight to a few hundred
# 1500-byte frames, well inside the adapters' 1000-frame rings.
RCVBUF = 256 * 1024
PORT = 5201
UDP_PORT = 5202
# Documentation ranges only (RFC 5737, RFC 3849), inside namespaces the tests create.
ADDRS = {4: ("192.0.2.1", "192.0.2.2", 24), 6: ("2001:db8:77::1", "2001:db8:77::2", 64)}
# TCP/UDP/IP counters that must stay 0 on both ends (nstat names).
CSUM_COUNTERS = (
    "TcpInCsumErrors",
    "UdpInCsumErrors",
    "Udp6InCsumErrors",
    "IpExtInCsumErrors",
    "IcmpInCsumErrors",
    "Icmp6InCsumErrors",
    "IpInHdrErrors",
    "IpExtInTruncatedPkts",
    "Ip6InHdrErrors",
    "Ip6InTruncatedPkts",
)
# Stalls: a retransmission timeout, a lost SYN. Must stay 0.
STALL_COUNTERS = ("TcpExtTCPTimeouts", "TcpExtTCPSynRetrans")


# --- namespaces, adapters, counters ---------------------------------------------------


@pytest.fixture
def two_ns(request: pytest.FixtureRequest) -> Iterator[tuple[Netns, Netns]]:
    """Two fresh namespaces (IPv6 on: the tests below pick the family per case)."""
    with ExitStack() as stack:
        pair = []
        for _ in range(2):
            ns = create_netns(ipv6=True)
            stack.callback(delete_netns, ns.name)
            pair.append(ns)
        yield pair[0], pair[1]


def nstat(ns: Netns) -> dict[str, int]:
    """The namespace's SNMP/netstat counters, absolute (a new namespace starts at 0)."""
    out = ns.exec("nstat", "--ignore", "--noupdate", "--zeros", "--json")
    counters: dict[str, int] = json.loads(out)["kernel"]
    return counters


def open_adapter(kind: Kind, name: str, ns: Netns, mode: Mode) -> vnetio.Tun | vnetio.Tap:
    cls = vnetio.Tun if kind == "tun" else vnetio.Tap
    if mode == "off":
        return cls(name, netns=ns.name)
    return cls(name, netns=ns.name, offload=True, rx_mode=mode)


@dataclass
class Direction:
    """What one direction of the forwarder saw."""

    frames: int = 0
    batches: int = 0
    largest: int = 0
    oversized: int = 0  # frames longer than MTU + link header: super-frames
    with_meta: int = 0
    gso_types: set[str] = field(default_factory=set)


class Forwarder:
    """Two threads: ``a → b`` and ``b → a``, each ``recv_batch`` then ``send_batch``."""

    def __init__(self, a: vnetio.Tun | vnetio.Tap, b: vnetio.Tun | vnetio.Tap) -> None:
        self.a, self.b = a, b
        link = 14 + 8 if a.kind == "tap" else 0  # Ethernet + two VLAN tags at most
        self.limit = max(a.mtu, b.mtu) + link
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.ab, self.ba = Direction(), Direction()
        # Test hook: applied to every a → b batch before it is sent.
        self.mangle: Callable[[vnetio.Batch], vnetio.Batch | list[bytes]] | None = None
        self.threads = [
            threading.Thread(target=self._pump, args=(a, b, self.ab), daemon=True),
            threading.Thread(target=self._pump, args=(b, a, self.ba), daemon=True),
        ]

    def _pump(self, src: Any, dst: Any, seen: Direction) -> None:
        try:
            while not self.stop.is_set():
                batch = src.recv_batch(256, timeout=0.05)
                if not len(batch):
                    continue
                seen.batches += 1
                seen.frames += len(batch)
                lengths = batch.lengths
                seen.largest = max(seen.largest, *lengths)
                for i, n in enumerate(lengths):
                    if n > self.limit:
                        seen.oversized += 1
                    info = batch.offload_info(i) if n > self.limit or src.offload else None
                    if info is not None:
                        seen.with_meta += 1
                        seen.gso_types.add(info["gso_type"])
                if self.mangle is not None and src is self.a:
                    dst.send_batch(self.mangle(batch))
                else:
                    dst.send_batch(batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread
            self.errors.append(exc)

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def check(self) -> None:
        if self.errors:
            raise AssertionError(f"forwarder failed: {self.errors[0]!r}") from self.errors[0]


def wait_source_address(ns: Netns, dest: str, src: str, timeout: float = 10) -> None:
    """Until a packet from ``ns`` to ``dest`` would leave from ``src``. IPv6 makes an address
    usable in a kernel work item after `up()` (DAD off or not); until then the kernel picks
    another source, even ::1, which the peer drops (Ip6InHdrErrors) or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        route = ns.ip("-6", "route", "get", dest)
        if f" src {src} " in f"{route} ":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{src} not the source towards {dest} after {timeout}s: {route}")
        time.sleep(0.02)


@contextmanager
def forwarded_pair(
    ns_a: Netns,
    ns_b: Netns,
    kind: Kind,
    family: int,
    mode_a: Mode,
    mode_b: Mode,
    queue_length: int | None = None,
) -> Iterator[Forwarder]:
    """An adapter in each namespace, addressed on one subnet, joined by a forwarder;
    ``queue_length``: the adapters' kernel rings at least this long (set while they are
    down: a frame in flight while the kernel resizes a ring can be dropped).

    TAP: ARP / neighbour discovery crosses the forwarder like any other frame."""
    addr_a, addr_b, prefix = ADDRS[family]
    with (
        open_adapter(kind, "vnfa0", ns_a, mode_a) as a,
        open_adapter(kind, "vnfb0", ns_b, mode_b) as b,
    ):
        for adapter, addr in ((a, addr_a), (b, addr_b)):
            if queue_length is not None:
                adapter.queue_length = max(adapter.queue_length, queue_length)
            adapter.add_address(f"{addr}/{prefix}")
            adapter.up()
        if family == 6:
            wait_source_address(ns_a, addr_b, addr_a)
            wait_source_address(ns_b, addr_a, addr_b)
        with Forwarder(a, b) as fwd:
            yield fwd
        fwd.check()


# --- programs run inside the namespaces -----------------------------------------------

TCP_SERVER = r"""
import hashlib, socket, sys
family, host, port, rcvbuf = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
s.bind((host, port))
s.listen(1)
s.settimeout(30)
print("ready", flush=True)
c, _ = s.accept()
c.settimeout(30)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
print(n, h.hexdigest(), flush=True)
"""

TCP_CLIENT = r"""
import hashlib, os, socket, sys, time
family, host, port, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = os.urandom(size)
s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(30)
s.connect((host, port))
t0 = time.monotonic()
view = memoryview(data)
for at in range(0, size, 1 << 20):
    s.sendall(view[at:at + (1 << 20)])
s.shutdown(socket.SHUT_WR)
s.recv(1)  # the server's close: everything was read
print(size, hashlib.sha256(data).hexdigest(), time.monotonic() - t0, flush=True)
"""


def python_in(ns: Netns, script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], what: str, timeout: float = 40) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} stalled (> {timeout}s): {err.strip()[-500:]}") from None
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}: {err.strip()[-800:]}")
    return out


@dataclass
class StreamResult:
    sent: tuple[int, str]
    received: tuple[int, str]
    seconds: float
    counters: dict[str, dict[str, int]]


def tcp_stream(ns_a: Netns, ns_b: Netns, family: int, size: int = STREAM_BYTES) -> StreamResult:
    """Send ``size`` random bytes from a socket in ns_a to one in ns_b; hash both ends."""
    _, addr_b, _ = ADDRS[family]
    server = python_in(ns_b, TCP_SERVER, family, addr_b, PORT, RCVBUF)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise AssertionError(f"server did not start: {finish(server, 'server')}")
        client = python_in(ns_a, TCP_CLIENT, family, addr_b, PORT, size)
        try:
            c_out = finish(client, "TCP sender").split()
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        s_out = finish(server, "TCP receiver").split()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return StreamResult(
        sent=(int(c_out[0]), c_out[1]),
        received=(int(s_out[0]), s_out[1]),
        seconds=float(c_out[2]),
        counters={"a": nstat(ns_a), "b": nstat(ns_b)},
    )


def lost_retransmissions(sender: dict[str, int], receiver: dict[str, int]) -> int:
    """Retransmitted segments whose original had not arrived: all retransmissions less the
    duplicates the receiver reported (D-SACK). When a Python forwarder is descheduled for a
    few milliseconds the sender fires a tail-loss probe although nothing was lost; the
    receiver then sees old data again and sends a D-SACK (which the sender may not count
    if the connection is closing). A frame dropped for a bad checksum never arrived: its
    retransmission is counted here."""
    dsack_received = sender.get("TcpExtTCPDSACKRecvSegs", sender.get("TcpExtTCPDSACKRecv", 0))
    dsack_sent = receiver.get("TcpExtTCPDSACKOldSent", 0) + receiver.get("TcpExtTCPDSACKOfoSent", 0)
    return sender.get("TcpRetransSegs", 0) - max(dsack_received, dsack_sent)


def assert_clean(result: StreamResult, fwd: Forwarder) -> None:
    drops = {
        f"{side}.{name}": getattr(adapter.stats(), name)
        for side, adapter in (("a", fwd.a), ("b", fwd.b))
        for name in ("rx_dropped", "tx_dropped")
    }
    context = f"forwarder a→b {fwd.ab}, b→a {fwd.ba}; drops {drops}"
    assert result.received == result.sent, f"bytes differ at the receiver; {context}"
    bad = {
        f"{side}.{name}": counters[name]
        for side, counters in result.counters.items()
        for name in CSUM_COUNTERS + STALL_COUNTERS
        if counters.get(name, 0)
    }
    lost = lost_retransmissions(result.counters["a"], result.counters["b"])
    if lost > 0:
        retrans = ("TcpRetransSegs", "TcpExtTCPLossProbes", "TcpExtTCPDSACKRecvSegs")
        bad.update({f"a.{n}": result.counters["a"].get(n, 0) for n in retrans})
        bad["b.TcpExtTCPDSACKOldSent"] = result.counters["b"].get("TcpExtTCPDSACKOldSent", 0)
    assert not bad, f"kernel counters: {bad}; {context}"


# --- the stream through a forwarder ----------------------------------------------------

STREAM_CASES = [
    pytest.param(kind, family, mode, id=f"{kind}-v{family}-{mode}")
    for kind in ("tun", "tap")
    for family in (4, 6)
    for mode in ("off", "segments", "superframes")
]


@pytest.mark.parametrize(("kind", "family", "mode"), STREAM_CASES)
def test_tcp_stream_through_forwarder(
    two_ns: tuple[Netns, Netns], kind: Kind, family: int, mode: Mode
) -> None:
    ns_a, ns_b = two_ns
    with forwarded_pair(ns_a, ns_b, kind, family, mode, mode) as fwd:
        if mode != "off":
            assert fwd.a.offload and fwd.b.offload
            assert {"csum", f"tso{family}"} <= set(fwd.a.offloads)
        result = tcp_stream(ns_a, ns_b, family)
        assert_clean(result, fwd)
        tx_coalesced = fwd.b.stats().tx_coalesced
    data = fwd.ab
    if mode == "off":
        assert data.oversized == 0 and data.with_meta == 0, data
    elif mode == "superframes":
        # The kernel handed the forwarder TSO super-frames, and it passed them on intact.
        assert data.oversized > 0, data
        assert f"tcpv{family}" in data.gso_types, data
    else:
        # Segments mode splits on receive; the send side merges runs again (GRO).
        assert data.oversized == 0 and data.with_meta == 0, data
        assert tx_coalesced > 0, f"no frames merged on send to b; {data}"


MIXED_CASES = [
    pytest.param(kind, family, mode_a, mode_b, id=f"{kind}-v{family}-{mode_a}-{mode_b}")
    for kind in ("tun", "tap")
    for family in (4, 6)
    for mode_a, mode_b in (("superframes", "off"), ("segments", "off"), ("off", "superframes"))
]


@pytest.mark.parametrize(("kind", "family", "mode_a", "mode_b"), MIXED_CASES)
def test_tcp_stream_between_offload_and_plain(
    two_ns: tuple[Netns, Netns], kind: Kind, family: int, mode_a: Mode, mode_b: Mode
) -> None:
    """Offload on one adapter only. Into a plain adapter every segment arrives as vnetio
    completed it (split in software from a super-frame, or on receive in segments mode)
    and the kernel verifies each checksum, unlike a partial-checksum super-frame, which it
    trusts. Plain frames into an offload adapter go through as they are (or merged)."""
    ns_a, ns_b = two_ns
    with forwarded_pair(ns_a, ns_b, kind, family, mode_a, mode_b) as fwd:
        result = tcp_stream(ns_a, ns_b, family, size=STREAM_BYTES // 2)
        assert_clean(result, fwd)
    if mode_a == "superframes":
        assert fwd.ab.oversized > 0, fwd.ab
    else:
        assert fwd.ab.oversized == 0, fwd.ab
    # Received by a kernel that verified every checksum: segments with real TCP data.
    if mode_b == "off":
        assert result.counters["b"]["TcpInSegs"] > (STREAM_BYTES // 2) // 1500


@pytest.mark.parametrize(
    "mode_b",
    [
        "off",
        # Regression: GRO merging once skipped checksum verification, so a corrupted frame
        # got a fresh partial checksum the kernel trusted and was delivered.
        "segments",
    ],
)
def test_a_corrupted_frame_is_dropped_not_delivered(
    two_ns: tuple[Netns, Netns], mode_b: Mode
) -> None:
    """The control for the stream tests: a forwarder that corrupts one byte of TCP payload
    (checksum left as it was). The receiving kernel must drop that frame and count it, TCP
    retransmits it, and the stream still arrives intact. This holds when b has offload
    too: plain frames written there must not become trusted (partial-checksum) data."""
    ns_a, ns_b = two_ns
    with forwarded_pair(ns_a, ns_b, "tun", 4, "off", mode_b) as fwd:
        fwd.mangle = corrupt_one_tcp_payload()
        result = tcp_stream(ns_a, ns_b, 4, size=4 * 1024 * 1024)
    assert result.received == result.sent, "the corrupted byte reached the application"
    assert result.counters["b"]["TcpInCsumErrors"] >= 1
    assert lost_retransmissions(result.counters["a"], result.counters["b"]) >= 1


def corrupt_one_tcp_payload() -> Callable[[vnetio.Batch], vnetio.Batch | list[bytes]]:
    done = False

    def mangle(batch: vnetio.Batch) -> vnetio.Batch | list[bytes]:
        nonlocal done
        if done or len(batch) < 4:
            return batch
        frames = batch.to_list()
        # IPv4 (no options) TCP with payload, in the middle of a batch (so it can merge).
        i = len(frames) // 2
        f = frames[i]
        if f[0] == 0x45 and f[9] == 6 and len(f) > 1000:
            g = bytearray(f)
            g[-100] ^= 0x40
            frames[i] = bytes(g)
            done = True
        return frames

    return mangle


# --- what the device is told -----------------------------------------------------------

ETHTOOL_FEATURES = {
    "csum": "tx-checksum-ip-generic",
    "tso4": "tx-tcp-segmentation",
    "tso6": "tx-tcp6-segmentation",
    "uso4": "tx-udp-segmentation",
}


def ethtool_features(ns: Netns, dev: str) -> dict[str, bool]:
    """`ethtool -k` in ``ns`` (ethtool is one of the Makefile's DEB_PACKAGES)."""
    out = ns.exec("ethtool", "-k", dev)
    features = {}
    for line in out.splitlines():
        name, _, value = line.strip().partition(":")
        if value:
            features[name] = value.split()[0] == "on"
    return features


@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_offloads_reports_what_is_on(netns: Netns, kind: Kind) -> None:
    cls = vnetio.Tun if kind == "tun" else vnetio.Tap
    with cls("vnoff0", netns=netns.name, offload=True) as dev:
        assert dev.offload
        names = dev.offloads
        assert names, "the kernel accepted no offload at all"
        assert names[0] == "csum"
        assert set(names) <= {"csum", "tso4", "tso6", "uso4", "uso6"}
        features = ethtool_features(netns, "vnoff0")
        for name, feature in ETHTOOL_FEATURES.items():
            assert features[feature] == (name in names), (name, feature, features)
    with cls("vnoff1", netns=netns.name) as plain:
        assert not plain.offload
        assert plain.offloads == []


def test_open_without_offload_resets_the_device_mask(two_ns: tuple[Netns, Netns]) -> None:
    """The offload mask is device-wide and outlives descriptors (TAP-FACTS pitfall 7): an
    open without offload must clear it, or a plain reader gets super-frames."""
    ns_a, ns_b = two_ns
    names = {"a": ("vnpa0", ns_a), "b": ("vnpb0", ns_b)}
    try:
        for name, ns in names.values():
            with vnetio.Tun(name, netns=ns.name, persist=True, offload=True) as dev:
                assert "tso4" in dev.offloads
        for name, ns in names.values():
            # Still on after the close: the mask outlives the descriptor.
            assert ethtool_features(ns, name)["tx-tcp-segmentation"]
        with (
            vnetio.Tun("vnpa0", netns=ns_a.name) as a,
            vnetio.Tun("vnpb0", netns=ns_b.name) as b,
        ):
            assert not a.created and not b.created
            assert a.offloads == [] and b.offloads == []
            for name, ns in names.values():
                feats = ethtool_features(ns, name)
                assert not feats["tx-tcp-segmentation"], feats
                assert not feats["tx-checksum-ip-generic"], feats
            for adapter, addr in ((a, ADDRS[4][0]), (b, ADDRS[4][1])):
                adapter.add_address(f"{addr}/24")
                adapter.up()
            # Behaviour, whatever ethtool says: a plain reader sees only MTU-sized packets
            # that verify as they are (no partial checksums), and the stream is clean.
            with Forwarder(a, b) as fwd:
                result = tcp_stream(ns_a, ns_b, 4, size=8 * 1024 * 1024)
            fwd.check()
            assert_clean(result, fwd)
            assert fwd.ab.largest <= a.mtu, fwd.ab
            assert fwd.ab.with_meta == 0
    finally:
        for name, ns in names.values():
            ns.ip("link", "del", "dev", name, check=False)


# --- metadata from Python --------------------------------------------------------------


def test_metadata_round_trips_and_malformed_headers_are_value_errors() -> None:
    frame, meta = tcp4_superframe(bytes(5000))
    batch = vnetio.Batch.from_frames([frame, frame[:60]], offload=[meta, None])
    info = batch.offload_info(0)
    assert info is not None
    assert {k: info[k] for k in meta} == meta
    assert info["ecn"] is False and info["data_valid"] is False
    assert batch.offload_info(1) is None
    segments = batch.segment("tap")
    assert len(segments) == 5  # 4 × 1448 + 208, then the plain frame
    assert all(segments.verify_checksums("tap")[:4])
    bad_cases = {
        "gso_type": {**meta, "gso_type": "udp"},
        "gso_type ": {**meta, "gso_type": 3},
        "csum_start": {**meta, "csum_start": len(frame)},
        "csum_offset": {**meta, "csum_offset": len(frame)},
        "gso_size": {**meta, "gso_size": 0},
        "hdr_len": {**meta, "hdr_len": len(frame) + 1},
        "unknown key": {**meta, "bogus": 1},
        "gso_size ": {**meta, "gso_size": 70000},
    }
    for why, bad in bad_cases.items():
        with pytest.raises(ValueError, match=r"offload\[0\]"):
            vnetio.Batch.from_frames([frame], offload=[bad])
            pytest.fail(f"accepted a header with a bad {why.strip()}")
    with pytest.raises(ValueError, match="offload entries"):
        vnetio.Batch.from_frames([frame, frame], offload=[meta])
    # Well-formed metadata whose gso_type does not match the frame: refused when split.
    wrong = vnetio.Batch.from_frames([frame], offload=[{**meta, "gso_type": "tcpv6"}])
    with pytest.raises(ValueError, match="does not match"):
        wrong.segment("tap")


@pytest.mark.parametrize(
    "offload",
    [
        False,
        # Regression: on an offload adapter such a header once reached the kernel (EINVAL).
        True,
    ],
)
def test_metadata_not_matching_the_frame_is_refused_by_send_batch(
    netns: Netns, offload: bool
) -> None:
    frame, meta = tcp4_superframe(bytes(3000))
    wrong = vnetio.Batch.from_frames([frame], offload=[{**meta, "gso_type": "udp_l4"}])
    with vnetio.Tap("vnm0", netns=netns.name, offload=offload) as tap:
        tap.up()
        with pytest.raises(ValueError, match="frame 0"):
            tap.send_batch(wrong)
        assert tap.stats().tx_frames == 0


def test_superframe_without_metadata_is_too_long(netns: Netns) -> None:
    frame, _ = tcp4_superframe(bytes(3000))
    for offload in (False, True):
        with vnetio.Tap("vnm0", netns=netns.name, offload=offload) as tap:
            tap.up()
            with pytest.raises(ValueError, match="frame 0"):
                tap.send_batch([frame])
            assert tap.stats().tx_frames == 0


@pytest.mark.parametrize(("offload_a", "mode_b"), [(False, "off"), (True, "off"), (True, "superframes"), (False, "segments")])  # fmt: skip
def test_superframe_from_python_arrives_as_valid_segments(
    bridge_pair: BridgePair, offload_a: bool, mode_b: Mode
) -> None:
    """A super-frame with metadata written into TAP A crosses the bridge to TAP B. Into a
    plain A it is split by vnetio; into an offload A the kernel splits it for a plain B,
    or hands it to an offload B whole, with its metadata."""
    ns = bridge_pair.ns
    payload = bytes(range(256)) * 20  # 5120 bytes: 4 segments of 1448 (last 776)
    frame, meta = tcp4_superframe(payload, seq=0xFFFFF000)
    batch = vnetio.Batch.from_frames([frame], offload=[meta])
    expected = batch.segment("tap").to_list()
    kw_b: dict[str, Any] = {} if mode_b == "off" else {"offload": True, "rx_mode": mode_b}
    with (
        vnetio.Tap(bridge_pair.a, netns=ns.name, offload=offload_a) as a,
        vnetio.Tap(bridge_pair.b, netns=ns.name, **kw_b) as b,
    ):
        bridge_pair.wait_forwarding()
        assert a.send_batch(batch) == 1
        got: list[bytes] = []
        infos: list[dict[str, Any] | None] = []
        deadline = time.monotonic() + 5
        want = 1 if mode_b == "superframes" else len(expected)
        while len(got) < want and time.monotonic() < deadline:
            rx = b.recv_batch(timeout=0.2)
            for i, f in enumerate(rx):
                if bytes(f[:12]) == frame[:12]:
                    got.append(bytes(f))
                    infos.append(rx.offload_info(i))
    if mode_b == "superframes":
        assert len(got) == 1 and infos[0] is not None, (len(got), infos)
        assert infos[0]["gso_type"] == "tcpv4" and infos[0]["gso_size"] == 1448
        again = vnetio.Batch.from_frames(got, offload=infos).segment("tap").to_list()
        assert again == expected
        return
    assert len(got) == len(expected) == 4
    assert all(vnetio.Batch.from_frames(got).verify_checksums("tap"))
    assert b"".join(g[54:] for g in got) == payload
    assert got == expected


@pytest.mark.parametrize("offload_a", [False, True])
def test_superframe_with_segments_above_the_mtu_is_a_value_error(
    netns: Netns, offload_a: bool
) -> None:
    frame, meta = tcp4_superframe(bytes(12000), mss=4000)  # 4054-byte segments, MTU 1500
    batch = vnetio.Batch.from_frames([frame], offload=[meta])
    with vnetio.Tap("vnm0", netns=netns.name, offload=offload_a) as tap:
        tap.up()
        assert tap.mtu == 1500
        with pytest.raises(ValueError, match="frame 0"):
            tap.send_batch(batch)


def udp_datagram(i: int, udp_len: int | None = None) -> bytes:
    """Ethernet/IPv4/UDP, 192.0.2.1:1234 → 192.0.2.2:53, 1000 bytes of ``i``; checksums
    right, the UDP length field ``udp_len`` if given (else the true one)."""
    packet = udp4("192.0.2.1", "192.0.2.2", 1234, 53, bytes([i]) * 1000, i, udp_len=udp_len)
    return ethernet(DST_MAC, SRC_MAC, packet)


def gro_udp_run(ns: str, a_name: str, b_name: str) -> dict[str, Any]:
    """Into offload TAP ``a`` (bridged to plain TAP ``b`` in ``ns``): first a good
    datagram, one whose UDP length field is wrong and another good one, then a run of three
    good datagrams of one flow. What ``b`` received (UDP length fields), in two lists, and
    how many frames ``a`` merged for each send. JSON-able: also run in a child process."""
    out: dict[str, Any] = {}
    with (
        vnetio.Tap(b_name, netns=ns) as b,
        vnetio.Tap(a_name, netns=ns, offload=True) as a,
    ):
        out["offloads"] = a.offloads
        Netns(ns).wait_forwarding(a_name, b_name)
        src = udp_datagram(0)[6:12]
        for key, frames in (
            ("wrong_length", [udp_datagram(0), udp_datagram(1, udp_len=500), udp_datagram(2)]),
            ("run", [udp_datagram(3), udp_datagram(4), udp_datagram(5)]),
        ):
            before = a.stats().tx_coalesced
            assert a.send_batch(frames) == 3
            got: list[bytes] = []
            deadline = time.monotonic() + 2
            while len(got) < 3 and time.monotonic() < deadline:
                got += [bytes(f) for f in b.recv_batch(timeout=0.2) if bytes(f)[6:12] == src]
            out[key] = [struct.unpack_from("!H", f, 38)[0] for f in got]
            out[f"{key}_merged"] = a.stats().tx_coalesced - before
    return out


# Linux before 6.2 has no UDP segmentation offload on TUN/TAP (TUN_F_USO4/6). The tests of
# both branches: on this kernel as it is, and with TUNSETOFFLOAD refusing the USO bits as an
# older kernel does (EINVAL for any flag it does not know), by a seccomp filter in a child.
USO_KERNEL = (6, 2)
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_USO4, TUN_F_USO6 = 0x20, 0x40
NO_USO_KERNEL = f"""
import errno
from tests.syscall_faults import Arg, Rule, errno_action, install

install([Rule("ioctl", errno_action(errno.EINVAL),
              [Arg(1, "eq", {TUNSETOFFLOAD:#x}), Arg(2, "bits", {TUN_F_USO4 | TUN_F_USO6:#x})])])
"""


def require_uso(offloads: list[str]) -> None:
    """Fail when a kernel that has USO did not grant it; skip (a failure with CI set) on a
    kernel without it, where only the fallback tests can run."""
    if {"uso4", "uso6"} <= set(offloads):
        return
    release = os.uname().release
    numbers = re.match(r"(\d+)\.(\d+)", release)
    version = (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)
    if version >= USO_KERNEL:
        pytest.fail(f"Linux {release} has USO (since 6.2) but the adapter took only {offloads}")
    pytest.skip(f"Linux {release} has no USO on TUN/TAP (6.2+): only the fallback is tested")


def test_gro_leaves_a_udp_datagram_with_a_wrong_length_field_alone(
    bridge_pair: BridgePair,
) -> None:
    """With USO on, runs of UDP datagrams are merged on send (the run of three is), but
    never one whose length field disagrees with its IP length: merging rewrites it."""
    out = gro_udp_run(bridge_pair.ns.name, bridge_pair.a, bridge_pair.b)
    require_uso(out["offloads"])
    assert out["wrong_length"] == [1008, 500, 1008], out
    assert out["wrong_length_merged"] == 0, out
    assert out["run"] == [1008, 1008, 1008], out
    assert out["run_merged"] > 0, f"GRO merged no UDP run with USO on: {out}"


def test_gro_merges_no_udp_without_uso(bridge_pair: BridgePair) -> None:
    """The kernel refuses USO (as before 6.2): the adapter falls back to csum+TSO, and GRO
    leaves every UDP datagram as it is (a USO super-frame would be refused by the write)."""
    out = run_child(
        NO_USO_KERNEL,
        """
        from tests.privileged.test_offload import gro_udp_run
        report(gro_udp_run(PARAMS["ns"], PARAMS["a"], PARAMS["b"]))
        """,
        ns=bridge_pair.ns.name,
        a=bridge_pair.a,
        b=bridge_pair.b,
    )
    assert out["offloads"] == ["csum", "tso4", "tso6"], out
    assert out["wrong_length"] == [1008, 500, 1008], out
    assert out["run"] == [1008, 1008, 1008], out
    assert out["wrong_length_merged"] == out["run_merged"] == 0, out


def test_fix_checksums_keeps_superframes_sendable(bridge_pair: BridgePair) -> None:
    """E.g. a forwarder that rewrites addresses in received super-frames, then fixes them."""
    frame, meta = tcp4_superframe(bytes(range(256)) * 20)
    fixed = vnetio.Batch.from_frames([frame], offload=[meta]).fix_checksums()
    ns = bridge_pair.ns.name
    with (
        vnetio.Tap(bridge_pair.b, netns=ns) as b,
        vnetio.Tap(bridge_pair.a, netns=ns, offload=True) as a,
    ):
        bridge_pair.wait_forwarding()
        a.send_batch(fixed)
        got = [bytes(f) for f in b.recv_batch(timeout=1) if bytes(f)[:12] == frame[:12]]
    assert len(got) == 4
    assert all(vnetio.Batch.from_frames(got).verify_checksums("tap")), "segments' checksums"


# --- UDP segmentation offload ----------------------------------------------------------

UDP_SEGMENT = 103  # linux/udp.h
UDP_GSO_SIZE = 1200
UDP_SEGS_PER_SEND = 40
UDP_SENDS = 150

UDP_RECEIVER = r"""
import hashlib, socket, sys
family, host, port, want = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE: nothing dropped here
s.bind((host, port))
print("ready", flush=True)
got, bad, sizes = set(), 0, set()
try:
    while len(got) < want:
        # The first datagram waits for the sender's start (a Python start on a loaded
        # machine); after that, 3 s without one ends the run (something was lost).
        s.settimeout(3 if got else 30)
        d = s.recv(65536)
        sizes.add(len(d))
        seq = int.from_bytes(d[:4], "big")
        if d != seq.to_bytes(4, "big") + hashlib.shake_128(d[:4]).digest(len(d) - 4):
            bad += 1
        got.add(seq)
except TimeoutError:
    pass
print(len(got), bad, max(sizes or {0}), flush=True)
"""

UDP_SENDER = r"""
import hashlib, socket, sys, time
family, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
gso, per, sends = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
s = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_UDP, 103, gso)  # UDP_SEGMENT
s.connect((host, port))
seq = 0
for _ in range(sends):
    parts = []
    for _ in range(per):
        head = seq.to_bytes(4, "big")
        parts.append(head + hashlib.shake_128(head).digest(gso - 4))
        seq += 1
    s.send(b"".join(parts))
    time.sleep(0.001)  # let the receiver keep up: UDP has no flow control
print(seq, flush=True)
"""


def udp_gso_run(ns_a: str, ns_b: str, kind: Kind, family: int, mode: Mode) -> dict[str, Any]:
    """A UDP_SEGMENT sender in ``ns_a``, a receiver in ``ns_b``, a forwarder between offload
    adapters (``mode`` on both): what arrived, what the forwarder saw, the kernel counters.
    JSON-able: also run in a child process."""
    a_ns, b_ns = Netns(ns_a), Netns(ns_b)
    _, addr_b, _ = ADDRS[family]
    want = UDP_SEGS_PER_SEND * UDP_SENDS
    # UDP has no flow control, and the forwarder is two Python threads: on a loaded machine
    # one is descheduled long enough for the sender to fill an adapter's ring (500-1000
    # entries; without USO every datagram is one: 121-593 of 6000 lost in 3 of 5 runs at
    # load 10). Rings with room for the whole run make a lost datagram the forwarder's or
    # vnetio's doing; ring drops are asserted apart (assert_udp_arrived), so one is named.
    with forwarded_pair(a_ns, b_ns, kind, family, mode, mode, queue_length=2 * want) as fwd:
        if kind == "tap":
            # Resolve the neighbour first: UDP has no handshake to do it, and a GSO
            # datagram queued behind an unresolved neighbour may be dropped. Until one
            # answer (-w: a request every 0.2 s until then), not a single try.
            a_ns.exec("ping", "-c", "1", "-i", "0.2", "-w", "10", addr_b, timeout=20)
        receiver = python_in(b_ns, UDP_RECEIVER, family, addr_b, UDP_PORT, want)
        try:
            assert receiver.stdout is not None
            assert receiver.stdout.readline().strip() == "ready"
            sender = python_in(
                a_ns, UDP_SENDER, family, addr_b, UDP_PORT, UDP_GSO_SIZE, UDP_SEGS_PER_SEND,
                UDP_SENDS,
            )  # fmt: skip
            assert int(finish(sender, "UDP sender")) == want
            got, bad, largest = map(int, finish(receiver, "UDP receiver").split())
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()
        counters = {"a": nstat(a_ns), "b": nstat(b_ns)}
    return {
        "offloads": {"a": fwd.a.offloads, "b": fwd.b.offloads},
        "want": want,
        "got": got,
        "bad": bad,
        "largest": largest,
        "csum": {f"{s}.{n}": c[n] for s, c in counters.items() for n in CSUM_COUNTERS if c.get(n)},
        # Frames the kernel could not queue for the forwarder (rx_dropped: a ring was
        # full), and frames the forwarder wrote that the kernel dropped (tx_dropped).
        "ring_drops": fwd.a.stats().rx_dropped + fwd.b.stats().rx_dropped,
        "write_drops": fwd.a.stats().tx_dropped + fwd.b.stats().tx_dropped,
        "b_merged": fwd.b.stats().tx_coalesced,
        "ab": {
            "frames": fwd.ab.frames,
            "oversized": fwd.ab.oversized,
            "gso_types": sorted(fwd.ab.gso_types),
        },
    }


def assert_udp_arrived(out: dict[str, Any]) -> None:
    assert not out["csum"], out
    assert out["bad"] == 0 and out["largest"] == UDP_GSO_SIZE, out
    assert out["ring_drops"] == 0, f"an adapter's kernel ring overflowed: {out}"
    assert out["got"] == out["want"], f"{out['want'] - out['got']} datagrams lost: {out}"


UDP_GSO_CASES = [
    pytest.param(kind, family, mode, id=f"{kind}-{family}-{mode}")
    for kind in ("tun", "tap")
    for family in (4, 6)
    for mode in ("superframes", "segments")
]


@pytest.mark.parametrize(("kind", "family", "mode"), UDP_GSO_CASES)
def test_udp_segmentation_offload_through_forwarder(
    two_ns: tuple[Netns, Netns], kind: Kind, family: int, mode: Mode
) -> None:
    """UDP_SEGMENT sockets make the kernel hand USO super-frames (gso_type udp_l4) to an
    adapter that took uso4/uso6; every datagram must arrive intact, none with a bad sum."""
    ns_a, ns_b = two_ns
    out = udp_gso_run(ns_a.name, ns_b.name, kind, family, mode)
    require_uso(out["offloads"]["a"])
    assert_udp_arrived(out)
    if mode == "superframes":
        assert "udp_l4" in out["ab"]["gso_types"], out


@pytest.mark.parametrize(("kind", "family", "mode"), UDP_GSO_CASES)
def test_udp_segmentation_without_uso_in_the_kernel(
    two_ns: tuple[Netns, Netns], kind: Kind, family: int, mode: Mode
) -> None:
    """The kernel refuses USO (as before 6.2): vnetio falls back to csum+TSO, the kernel
    segments the UDP_SEGMENT sends itself before the adapter, and nothing is lost; GRO
    builds no UDP super-frame for b, which would refuse it."""
    ns_a, ns_b = two_ns
    out = run_child(
        NO_USO_KERNEL,
        """
        from tests.privileged.test_offload import udp_gso_run
        report(udp_gso_run(PARAMS["a"], PARAMS["b"], PARAMS["kind"], PARAMS["family"],
                           PARAMS["mode"]))
        """,
        a=ns_a.name,
        b=ns_b.name,
        kind=kind,
        family=family,
        mode=mode,
    )
    assert out["offloads"] == {"a": ["csum", "tso4", "tso6"], "b": ["csum", "tso4", "tso6"]}
    assert_udp_arrived(out)
    assert out["ab"]["oversized"] == 0 and "udp_l4" not in out["ab"]["gso_types"], out
    assert out["b_merged"] == 0, out
