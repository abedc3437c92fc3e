"""The hand-built packets the privileged tests send: checked against scapy and RFC vectors.

If these helpers were wrong, the kernel would silently drop our echo requests and the
ICMP tests would fail for the wrong reason.
"""

from __future__ import annotations

import pytest
from scapy.layers import inet, inet6

from tests.packets import (
    ICMP_ECHO_REQUEST,
    ICMPV6_ECHO_REQUEST,
    frame_seq,
    inet_checksum,
    ipv4_echo_request,
    ipv6_echo_request,
    make_frame,
    parse_ipv4_echo,
    parse_ipv6_echo,
)


def test_inet_checksum_known_vector() -> None:
    # The IPv4 header example from RFC 1071's companion literature (checksum 0xb861).
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert inet_checksum(header) == 0xB861
    assert inet_checksum(header[:10] + b"\xb8\x61" + header[12:]) == 0
    assert inet_checksum(b"\x01") == inet_checksum(b"\x01\x00")


def test_ipv4_echo_request_matches_scapy() -> None:
    packet = ipv4_echo_request("192.0.2.2", "192.0.2.1", 0x1234, 7, b"hello world")
    parsed = inet.IP(packet)
    rebuilt = inet.IP(bytes(parsed))
    del rebuilt.chksum
    del rebuilt[inet.ICMP].chksum
    assert bytes(rebuilt) == packet  # scapy recomputes both checksums identically
    assert (parsed.src, parsed.dst, parsed[inet.ICMP].type) == ("192.0.2.2", "192.0.2.1", 8)
    echo = parse_ipv4_echo(packet)
    assert echo is not None
    assert (echo.kind, echo.ident, echo.seq, echo.payload) == (
        ICMP_ECHO_REQUEST, 0x1234, 7, b"hello world",
    )  # fmt: skip
    assert echo.checksum_ok and echo.ip_checksum_ok


def test_ipv6_echo_request_matches_scapy() -> None:
    packet = ipv6_echo_request("2001:db8::2", "2001:db8::1", 0x4321, 9, b"x" * 33)
    parsed = inet6.IPv6(packet)
    rebuilt = inet6.IPv6(bytes(parsed))
    del rebuilt[inet6.ICMPv6EchoRequest].cksum
    assert bytes(rebuilt) == packet
    echo = parse_ipv6_echo(packet)
    assert echo is not None
    assert (echo.kind, echo.ident, echo.seq, echo.payload) == (
        ICMPV6_ECHO_REQUEST, 0x4321, 9, b"x" * 33,
    )  # fmt: skip
    assert echo.checksum_ok


def test_corrupted_packets_fail_the_checksum() -> None:
    v4 = bytearray(ipv4_echo_request("192.0.2.2", "192.0.2.1", 1, 1, b"abc"))
    v4[-1] ^= 1
    assert not parse_ipv4_echo(bytes(v4)).checksum_ok  # type: ignore[union-attr]
    v6 = bytearray(ipv6_echo_request("2001:db8::2", "2001:db8::1", 1, 1, b"abc"))
    v6[8] ^= 1  # source address: covered by the pseudo-header
    assert not parse_ipv6_echo(bytes(v6)).checksum_ok  # type: ignore[union-attr]


def test_test_frames() -> None:
    frame = make_frame(42, 100)
    assert len(frame) == 100
    assert frame_seq(frame) == 42
    assert frame_seq(memoryview(frame)) == 42
    assert make_frame(42, 100) == frame
    assert make_frame(43, 100) != frame
    assert frame_seq(b"\xff" * 60) is None
    with pytest.raises(ValueError):
        make_frame(1, 20)
