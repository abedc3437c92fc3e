"""Hand-built frames and packets for the tests (no scapy: every byte is visible here)."""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass
from typing import Any

# IEEE 802 "local experimental" EtherType: nothing on the bridge speaks it, so frames of
# this type on a port are ours and everything else (IGMP, MLD, ...) is noise to skip.
ETHERTYPE_TEST = 0x88B5
ETH_HEADER = 14
# Locally administered unicast MACs that nobody on the test bridge owns (TAP-FACTS pitfall 5:
# never send *from* the destination MAC).
SRC_MAC = bytes.fromhex("02005e100001")
DST_MAC = bytes.fromhex("02005e100002")
MAGIC = b"VNT1"


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def make_frame(seq: int, size: int, *, src: bytes = SRC_MAC, dst: bytes = DST_MAC) -> bytes:
    """An Ethernet frame of exactly ``size`` bytes carrying ``seq`` and a seq-derived payload."""
    if size < ETH_HEADER + len(MAGIC) + 8:
        raise ValueError(f"size {size} too small for a test frame")
    header = dst + src + struct.pack("!H", ETHERTYPE_TEST) + MAGIC + struct.pack("!Q", seq)
    fill = random.Random(seq).randbytes(size - len(header))
    return header + fill


def frame_seq(frame: bytes | memoryview) -> int | None:
    """The sequence number of one of our test frames, or None for any other frame."""
    frame = bytes(frame)
    if (
        len(frame) < ETH_HEADER + 12
        or frame[6:12] != SRC_MAC
        or struct.unpack_from("!H", frame, 12)[0] != ETHERTYPE_TEST
        or frame[14:18] != MAGIC
    ):
        return None
    return int(struct.unpack_from("!Q", frame, 18)[0])


def own_frames(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if frame_seq(f) is not None]


def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (the value to store in the checksum field)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_PSH, TCP_ACK = 0x08, 0x10
#: IPv4 "don't fragment", in the flags and fragment offset field.
DF = 0x4000


def ethernet(dst: bytes, src: bytes, payload: bytes, ethertype: int = ETHERTYPE_IPV4) -> bytes:
    """An Ethernet frame: MAC addresses as 6 bytes each, then ``ethertype`` (IPv4 unless
    said otherwise) and ``payload``."""
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4_header(
    src: str, dst: str, proto: int, payload_len: int, ident: int = 0x1234, *, flags: int = DF
) -> bytes:
    """An IPv4 header without options (TTL 64), its checksum right; ``flags``: the flags
    and fragment offset field."""
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, IHL 5
        0,
        20 + payload_len,
        ident,
        flags,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]


def udp4(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    ident: int = 0,
    *,
    flags: int = DF,
    udp_len: int | None = None,
) -> bytes:
    """An IPv4 UDP packet, both checksums right (header as :func:`ipv4_header` makes it).
    ``udp_len``: a UDP length field other than the true one; the checksum still covers
    the datagram as sent, as the sender's kernel would compute it."""
    length = 8 + len(payload)
    pseudo = (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!xBH", IPPROTO_UDP, length)
    )
    header = struct.pack("!HHH", sport, dport, length if udp_len is None else udp_len)
    check = inet_checksum(pseudo + header + b"\0\0" + payload) or 0xFFFF  # 0: "no checksum"
    udp = header + struct.pack("!H", check) + payload
    return ipv4_header(src, dst, IPPROTO_UDP, length, ident=ident, flags=flags) + udp


def tcp4(
    payload: bytes,
    *,
    seq: int = 1000,
    ident: int = 7,
    flags: int = TCP_PSH | TCP_ACK,
    partial: bool = False,
    link: bool = True,
) -> bytes:
    """An IPv4/TCP packet, 192.0.2.1:40000 → 192.0.2.2:5201 (ack 1, window 65535), in an
    Ethernet frame from :data:`SRC_MAC` to :data:`DST_MAC` unless ``link`` is false. The TCP
    checksum is right or, ``partial``, holds the pseudo-header sum alone (a checksum left
    for offload to complete, as with ``needs_csum``)."""
    src, dst = "192.0.2.1", "192.0.2.2"
    tcp_len = 20 + len(payload)
    header = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 1, 0x50, flags, 65535, 0, 0)
    pseudo = (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!xBH", IPPROTO_TCP, tcp_len)
    )
    # Partial: the pseudo-header's sum, not complemented (what offload completes).
    check = ~inet_checksum(pseudo) & 0xFFFF if partial else inet_checksum(pseudo + header + payload)
    tcp = header[:16] + struct.pack("!H", check) + header[18:] + payload
    packet = ipv4_header(src, dst, IPPROTO_TCP, tcp_len, ident=ident) + tcp
    return ethernet(DST_MAC, SRC_MAC, packet) if link else packet


def tcp4_superframe(
    payload: bytes,
    *,
    mss: int = 1448,
    link: bool = True,
    seq: int = 1000,
    ident: int = 7,
    flags: int = TCP_PSH | TCP_ACK,
) -> tuple[bytes, dict[str, Any]]:
    """A :func:`tcp4` super-frame with a partial checksum, and its offload metadata (TSO,
    segments of ``mss`` payload bytes) as ``Batch.from_frames(offload=...)`` takes it."""
    frame = tcp4(payload, seq=seq, ident=ident, flags=flags, partial=True, link=link)
    l3 = ETH_HEADER if link else 0
    meta = {
        "gso_type": "tcpv4",
        "gso_size": mss,
        "hdr_len": l3 + 40,
        "csum_start": l3 + 20,
        "csum_offset": 16,
        "needs_csum": True,
    }
    return frame, meta


ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129


def icmp_echo(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", inet_checksum(msg)) + msg[4:]


def ipv4_echo_request(src: str, dst: str, ident: int, seq: int, payload: bytes) -> bytes:
    icmp = icmp_echo(ICMP_ECHO_REQUEST, ident, seq, payload)
    return ipv4_header(src, dst, 1, len(icmp), ident=seq & 0xFFFF) + icmp


def ipv6_pseudo_header(src: bytes, dst: bytes, length: int, next_header: int) -> bytes:
    return src + dst + struct.pack("!I3xB", length, next_header)


def icmpv6_echo(src: str, dst: str, kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    csum = inet_checksum(ipv6_pseudo_header(s, d, len(msg), 58) + msg)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


def ipv6_echo_request(src: str, dst: str, ident: int, seq: int, payload: bytes) -> bytes:
    icmp = icmpv6_echo(src, dst, ICMPV6_ECHO_REQUEST, ident, seq, payload)
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(icmp),
        58,  # next header: ICMPv6
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + icmp


@dataclass(frozen=True)
class Echo:
    """A parsed ICMP / ICMPv6 echo message inside an IP packet."""

    src: str
    dst: str
    kind: int
    ident: int
    seq: int
    payload: bytes
    checksum_ok: bool
    ip_checksum_ok: bool


def parse_ipv4_echo(packet: bytes) -> Echo | None:
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    icmp = packet[ihl:total]
    kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", icmp)
    return Echo(
        src=str(ipaddress.IPv4Address(packet[12:16])),
        dst=str(ipaddress.IPv4Address(packet[16:20])),
        kind=kind,
        ident=ident,
        seq=seq,
        payload=icmp[8:],
        checksum_ok=inet_checksum(icmp) == 0,
        ip_checksum_ok=inet_checksum(packet[:ihl]) == 0,
    )


def parse_ipv6_echo(packet: bytes) -> Echo | None:
    if len(packet) < 48 or packet[0] >> 4 != 6 or packet[6] != 58:
        return None
    length = struct.unpack_from("!H", packet, 4)[0]
    src, dst = packet[8:24], packet[24:40]
    icmp = packet[40 : 40 + length]
    kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", icmp)
    return Echo(
        src=str(ipaddress.IPv6Address(src)),
        dst=str(ipaddress.IPv6Address(dst)),
        kind=kind,
        ident=ident,
        seq=seq,
        payload=icmp[8:],
        checksum_ok=inet_checksum(ipv6_pseudo_header(src, dst, length, 58) + icmp) == 0,
        ip_checksum_ok=True,  # IPv6 has no header checksum
    )
