"""Hand-built frames and packets for the tests (no scapy: every byte is visible here)."""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass

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


def ipv4_header(src: str, dst: str, proto: int, payload_len: int, ident: int = 0x1234) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, IHL 5
        0,
        20 + payload_len,
        ident,
        0x4000,  # DF
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]


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
