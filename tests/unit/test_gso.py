"""Software GSO agrees with scapy (issue: VirtIO offload path).

A super-frame is built the way the kernel hands one out: headers of the first segment,
the whole payload, IP lengths covering it, and a *partial* checksum (the pseudo-header sum
in the transport checksum field, ``needs_csum``). ``Batch.segment()`` must turn it into
exactly the frames scapy builds for the same payload slices: sequence numbers advanced,
IPv4 ID +1 per segment, FIN/PSH only on the last segment and CWR only on the first,
lengths and every checksum recomputed. The same for UDP segmentation (USO, ``udp_l4``):
each segment a whole datagram with its own length and checksum.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import vnetio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw, raw

from tests.packets import inet_checksum

V4 = st.sampled_from(["192.0.2.1", "192.0.2.77", "198.51.100.9", "255.255.255.254"])
V6 = st.sampled_from(["2001:db8::1", "2001:db8:0:1::ff", "fe80::1", "ffff::ffff"])
TCP_OPTIONS = st.lists(
    st.sampled_from(
        [
            ("NOP", None),
            ("MSS", 1460),
            ("WScale", 7),
            ("SAckOK", b""),
            ("Timestamp", (123456789, 987654321)),
            ("SAck", (1000, 2000)),
        ]
    ),
    max_size=4,
)
FIN, PSH, URG, ECE, CWR, ACK = 0x01, 0x08, 0x20, 0x40, 0x80, 0x10


@dataclass
class Case:
    """A super-frame and what scapy says its segments are."""

    frame: bytes
    meta: dict[str, Any]
    kind: Literal["tap", "tun"]
    expected: list[bytes]


def pseudo_sum(ip: Packet, proto: int, l4_len: int) -> int:
    """The folded, uncomplemented pseudo-header sum: what a partial checksum field holds."""
    if isinstance(ip, IP):
        src = bytes(map(int, ip.src.split(".")))
        dst = bytes(map(int, ip.dst.split(".")))
        pseudo = src + dst + struct.pack("!BBH", 0, proto, l4_len)
    else:
        import socket

        src = socket.inet_pton(socket.AF_INET6, ip.src)
        dst = socket.inet_pton(socket.AF_INET6, ip.dst)
        pseudo = src + dst + struct.pack("!IxxxB", l4_len, proto)
    return ~inet_checksum(pseudo) & 0xFFFF


@st.composite
def link_layers(draw: st.DrawFn) -> tuple[Literal["tap", "tun"], Packet | None]:
    kind: Literal["tap", "tun"] = draw(st.sampled_from(["tap", "tun"]))
    if kind == "tun":
        return kind, None
    link: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    tags = draw(st.integers(0, 2))
    if tags == 2:
        link = link / Dot1AD(vlan=draw(st.integers(1, 4094))) / Dot1Q(vlan=7)
    elif tags == 1:
        link = link / Dot1Q(vlan=draw(st.integers(1, 4094)), prio=draw(st.integers(0, 7)))
    return kind, link


@st.composite
def ip_layers(draw: st.DrawFn) -> Packet:
    if draw(st.booleans()):
        ip: Packet = IPv6(src=draw(V6), dst=draw(V6), hlim=64, tc=draw(st.integers(0, 255)))
        if draw(st.booleans()):
            ip = ip / IPv6ExtHdrHopByHop()
        return ip
    ip = IP(
        src=draw(V4),
        dst=draw(V4),
        id=draw(st.integers(0, 65535)),  # wraps within a super-frame near 65535
        ttl=draw(st.integers(1, 255)),
        tos=draw(st.integers(0, 255)),
        flags=draw(st.sampled_from(["DF", 0])),
    )
    if draw(st.booleans()):
        ip.options = b"\x01" * draw(st.sampled_from([4, 8, 40]))  # NOPs: IHL 6, 7, 15
    return ip


def sizes(draw: st.DrawFn) -> tuple[int, int, bytes]:
    """(gso_size, segment count, payload): at most 12 segments, the last one short or full."""
    mss = draw(st.one_of(st.integers(1, 64), st.integers(500, 1460), st.just(1448)))
    count = draw(st.integers(1, 12))
    low = (count - 1) * mss + 1 if count > 1 else 0
    length = draw(st.integers(low, count * mss))
    payload = random.Random(draw(st.integers(0, 2**32))).randbytes(length)
    return mss, count, payload


def assemble(link: Packet | None, rest: Packet) -> Packet:
    return rest if link is None else link / rest


def ip_stack(ip: Packet) -> tuple[Packet, Packet | None]:
    """Split an IP layer with an optional extension header into (ip, ext)."""
    ext = ip.payload if isinstance(ip.payload, IPv6ExtHdrHopByHop) else None
    base = ip.copy()
    base.remove_payload()
    return base, (ext.copy() if ext is not None else None)


def headers_len(frame: bytes, payload_len: int) -> int:
    return len(frame) - payload_len


@st.composite
def tcp_superframes(draw: st.DrawFn) -> Case:
    kind, link = draw(link_layers())
    ip, ext = ip_stack(draw(ip_layers()))
    mss, count, payload = sizes(draw)
    flags = ACK
    for bit in (FIN, PSH, URG, ECE, CWR):
        if draw(st.booleans()):
            flags |= bit
    tcp_fields: dict[str, Any] = {
        "sport": draw(st.integers(1, 65535)),
        "dport": 443,
        "seq": draw(st.integers(0, 2**32 - 1)),  # wraps within a super-frame near 2**32
        "ack": draw(st.integers(0, 2**32 - 1)),
        "window": draw(st.integers(0, 65535)),
        "urgptr": 3 if flags & URG else 0,
        "options": draw(TCP_OPTIONS),
    }
    v4 = isinstance(ip, IP)
    l3 = ip if ext is None else ip / ext

    def build(
        tcp_flags: int, seq: int, ident: int | None, data: bytes, chksum: int | None
    ) -> bytes:
        layer3 = l3.copy()
        if v4 and ident is not None:
            layer3.id = ident
        tcp = TCP(**{**tcp_fields, "seq": seq}, flags=tcp_flags, chksum=chksum)
        return raw(assemble(link, layer3 / tcp / Raw(data)))

    # The super-frame: lengths cover all the payload; checksum field = pseudo-header sum.
    whole = build(flags, tcp_fields["seq"], None, payload, 0)
    tcp_offset = len(whole) - len(payload) - len(raw(TCP(options=tcp_fields["options"])))
    l4_len = len(whole) - tcp_offset
    partial = pseudo_sum(ip, 6, l4_len)
    frame = bytearray(whole)
    frame[tcp_offset + 16 : tcp_offset + 18] = partial.to_bytes(2, "big")
    gso = draw(st.sampled_from(["gso", "gso", "gso", "csum-only"]))
    meta: dict[str, Any] = {
        "gso_type": ("tcpv4" if v4 else "tcpv6") if gso == "gso" else "none",
        "gso_size": mss if gso == "gso" else 0,
        "hdr_len": headers_len(whole, len(payload)),
        "csum_start": tcp_offset,
        "csum_offset": 16,
        "needs_csum": True,
        "ecn": gso == "gso" and bool(flags & CWR) and draw(st.booleans()),
    }
    if gso != "gso":
        expected = [build(flags, tcp_fields["seq"], None, payload, None)]
        return Case(bytes(frame), meta, kind, expected)
    chunks = [payload[i : i + mss] for i in range(0, len(payload), mss)] or [b""]
    assert len(chunks) == count
    expected = []
    for i, chunk in enumerate(chunks):
        f = flags
        if i != len(chunks) - 1:
            f &= ~(FIN | PSH)
        if i != 0:
            f &= ~CWR
        ident = (ip.id + i) & 0xFFFF if v4 else None
        seq = (tcp_fields["seq"] + i * mss) % 2**32
        expected.append(build(f, seq, ident, chunk, None))
    return Case(bytes(frame), meta, kind, expected)


@st.composite
def udp_superframes(draw: st.DrawFn) -> Case:
    kind, link = draw(link_layers())
    ip, ext = ip_stack(draw(ip_layers()))
    mss, count, payload = sizes(draw)
    sport, dport = draw(st.integers(1, 65535)), draw(st.integers(1, 65535))
    v4 = isinstance(ip, IP)
    l3 = ip if ext is None else ip / ext

    def build(ident: int | None, data: bytes, chksum: int | None) -> bytes:
        layer3 = l3.copy()
        if v4 and ident is not None:
            layer3.id = ident
        return raw(assemble(link, layer3 / UDP(sport=sport, dport=dport, chksum=chksum) / data))

    whole = build(None, payload, 0)
    udp_offset = len(whole) - len(payload) - 8
    frame = bytearray(whole)
    partial = pseudo_sum(ip, 17, 8 + len(payload))
    frame[udp_offset + 6 : udp_offset + 8] = partial.to_bytes(2, "big")
    meta = {
        "gso_type": "udp_l4",
        "gso_size": mss,
        "hdr_len": udp_offset + 8,
        "csum_start": udp_offset,
        "csum_offset": 6,
        "needs_csum": True,
    }
    chunks = [payload[i : i + mss] for i in range(0, len(payload), mss)] or [b""]
    assert len(chunks) == count
    expected = [
        build((ip.id + i) & 0xFFFF if v4 else None, chunk, None) for i, chunk in enumerate(chunks)
    ]
    return Case(bytes(frame), meta, kind, expected)


def check(case: Case) -> None:
    batch = vnetio.Batch.from_frames([case.frame], offload=[case.meta])
    info = batch.offload_info(0)
    assert info is not None and info["gso_type"] == case.meta["gso_type"]
    segments = batch.segment(case.kind)
    got = segments.to_list()
    assert len(got) == len(case.expected), (len(got), len(case.expected))
    for i, (mine, scapys) in enumerate(zip(got, case.expected, strict=True)):
        assert mine == scapys, f"segment {i} of {len(got)}: first difference at byte " + str(
            next((j for j, (x, y) in enumerate(zip(mine, scapys, strict=False)) if x != y), None)
        )
    assert all(segments.verify_checksums(case.kind))
    assert all(segments.offload_info(i) is None for i in range(len(segments)))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tcp_superframes())
def test_tcp_segments_equal_scapys(case: Case) -> None:
    check(case)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(udp_superframes())
def test_udp_segments_equal_scapys(case: Case) -> None:
    check(case)


def fixed_tcp4(payload_len: int, mss: int, *, flags: int = ACK | PSH | FIN | CWR) -> Case:
    ip = IP(src="192.0.2.1", dst="192.0.2.2", id=65534, flags="DF")
    seq = 2**32 - 100
    link = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    payload = bytes(i % 251 for i in range(payload_len))
    whole = bytearray(raw(link / ip / TCP(seq=seq, flags=flags, chksum=0) / Raw(payload)))
    whole[50:52] = pseudo_sum(ip, 6, 20 + payload_len).to_bytes(2, "big")
    meta = {
        "gso_type": "tcpv4",
        "gso_size": mss,
        "hdr_len": 54,
        "csum_start": 34,
        "csum_offset": 16,
        "needs_csum": True,
    }
    chunks = [payload[i : i + mss] for i in range(0, payload_len, mss)] or [b""]
    expected = []
    for i, chunk in enumerate(chunks):
        f = flags & ~((FIN | PSH) if i < len(chunks) - 1 else 0) & ~(CWR if i else 0)
        seg = IP(src="192.0.2.1", dst="192.0.2.2", id=(65534 + i) & 0xFFFF, flags="DF")
        expected.append(raw(link / seg / TCP(seq=(seq + i * mss) % 2**32, flags=f) / chunk))
    return Case(bytes(whole), meta, "tap", expected)


@pytest.mark.parametrize(
    ("payload_len", "mss"),
    [(0, 1448), (1, 1448), (1448, 1448), (1449, 1448), (2896, 1448), (65535 - 40, 1448),
     (5000, 1), (3000, 65535)],
)  # fmt: skip
def test_edges(payload_len: int, mss: int) -> None:
    """Empty and exact multiples, a 64 KiB super-frame, a one-byte MSS, an MSS larger than
    the payload; sequence numbers and IPv4 IDs wrap."""
    if payload_len // max(mss, 1) > 100:
        payload_len = 100 * mss  # keep scapy's side quick
    check(fixed_tcp4(payload_len, mss))


def test_plain_frames_pass_unchanged_and_data_valid_is_kept_as_is() -> None:
    case = fixed_tcp4(100, 1448)
    meta = {"data_valid": True}
    batch = vnetio.Batch.from_frames([case.expected[0], case.frame], offload=[None, meta])
    out = batch.segment("tap").to_list()
    assert out == [case.expected[0], case.frame]


@example(b"\x00" * 60)
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_with_gso_metadata_is_a_value_error_not_a_crash(junk: bytes) -> None:
    if len(junk) < 2:
        return
    meta = {"gso_type": "tcpv4", "gso_size": 100, "csum_start": 0, "csum_offset": 0}
    batch = vnetio.Batch.from_frames([junk], offload=[meta])
    for kind in ("tap", "tun"):
        try:
            out = batch.segment(kind)
        except ValueError:
            continue
        assert all(out.verify_checksums(kind))
