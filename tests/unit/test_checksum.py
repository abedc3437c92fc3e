"""The checksum engine agrees with scapy on generated packets (issue: VirtIO offload path).

scapy computes each checksum when it serialises a packet (``raw(pkt)``); vnetio must accept
every such frame, refuse it once a covered byte changes, and recompute exactly scapy's
values from zeroed fields.
"""

from __future__ import annotations

import doctest

import pytest
import vnetio
import vnetio.checksum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, raw
from vnetio import checksum

V4 = st.sampled_from(["192.0.2.1", "192.0.2.77", "198.51.100.9"])
V6 = st.sampled_from(["2001:db8::1", "2001:db8:0:1::ff", "2001:db8::abcd:1"])
PAYLOAD = st.binary(min_size=0, max_size=1400)


@st.composite
def packets(draw: st.DrawFn) -> tuple[bytes, str, int, int]:
    """(frame, kind, offset of the IP header, offset of the L4 checksum field)."""
    v6 = draw(st.booleans())
    l4 = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    payload = draw(PAYLOAD)
    if v6:
        ip: Packet = IPv6(src=draw(V6), dst=draw(V6), hlim=draw(st.integers(1, 255)))
    else:
        ip = IP(src=draw(V4), dst=draw(V4), id=draw(st.integers(0, 65535)), ttl=64)
        if draw(st.booleans()):
            ip.options = b"\x01" * 4  # four NOPs: IHL 6
    if l4 == "tcp":
        seg: Packet = TCP(
            sport=draw(st.integers(1, 65535)),
            dport=80,
            seq=draw(st.integers(0, 2**32 - 1)),
            flags="PA",
        )
        field = 16
    elif l4 == "udp":
        seg = UDP(sport=draw(st.integers(1, 65535)), dport=53)
        field = 6
    else:
        seg = ICMPv6EchoRequest(id=7, seq=draw(st.integers(0, 65535))) if v6 else ICMP(id=7)
        field = 2
    pkt = ip / seg / payload
    kind = draw(st.sampled_from(["tap", "tun"]))
    if kind == "tap":
        link: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        if draw(st.booleans()):
            link = link / Dot1Q(vlan=draw(st.integers(1, 4094)))
        pkt = link / pkt
    frame = raw(pkt)
    l3 = 0 if kind == "tun" else (18 if frame[12:14] == b"\x81\x00" else 14)
    ihl = 40 if v6 else (frame[l3] & 0x0F) * 4
    return frame, kind, l3, l3 + ihl + field


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets())
def test_scapy_frames_verify(case: tuple[bytes, str, int, int]) -> None:
    frame, kind, _, _ = case
    ip_ok, l4_ok = checksum.verify(frame, kind)
    assert ip_ok in (True, None)
    assert l4_ok is True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets())
def test_fix_recomputes_scapys_checksums(case: tuple[bytes, str, int, int]) -> None:
    frame, kind, l3, field = case
    zeroed = bytearray(frame)
    zeroed[field : field + 2] = b"\0\0"
    if zeroed[l3] >> 4 == 4:
        zeroed[l3 + 10 : l3 + 12] = b"\0\0"
    checksum.fix(zeroed, kind)
    assert bytes(zeroed) == frame


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets(), st.data())
def test_a_changed_byte_is_caught(case: tuple[bytes, str, int, int], data: st.DataObject) -> None:
    frame, kind, _, field = case
    # Flip one bit anywhere from just before the L4 checksum field to the end: the L4 check
    # must not pass (a one-bit change always changes a one's-complement sum; an IPv4 UDP
    # checksum flipped to 0 reads as "no checksum", hence "not True" rather than False).
    at = data.draw(st.integers(field - 1, len(frame) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(frame)
    bad[at] ^= 1 << bit
    assert checksum.verify(bytes(bad), kind)[1] is not True


def test_batch_verify_and_fix() -> None:
    good = raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"hello")
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    batch = vnetio.Batch.from_frames([good, bad, b"\x02" * 14])  # the last is not IP
    assert batch.verify_checksums() == [True, False, True]
    fixed = batch.fix_checksums()
    assert fixed.verify_checksums() == [True, True, True]
    assert bytes(fixed[0]) == good and bytes(batch[1]) == bytes(bad)  # the original is unchanged


def test_ipv4_udp_without_checksum_and_ipv6_udp_zero() -> None:
    v4 = bytearray(raw(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"x"))
    v4[26:28] = b"\0\0"
    assert checksum.verify(bytes(v4), "tun") == (True, None)  # "no checksum" is allowed
    v6 = bytearray(raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"x"))
    v6[46:48] = b"\0\0"
    assert checksum.verify(bytes(v6), "tun") == (None, False)  # mandatory over IPv6


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        checksum.verify(b"\x45" * 20, "eth")
    with pytest.raises(ValueError, match="cannot parse"):
        checksum.verify(b"\x45\x00\x00\xff" + bytes(16), "tun")
    with pytest.raises(TypeError):
        checksum.verify(12, "tun")  # type: ignore[arg-type]


def test_module_docstring_example() -> None:
    failures, _ = doctest.testmod(vnetio.checksum)
    assert failures == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets(), st.data())
def test_incremental_update_matches_a_full_recompute(
    case: tuple[bytes, str, int, int], data: st.DataObject
) -> None:
    """Rewrite the IPv4 source address (as a NAT does) or the TTL word: RFC 1624's update of
    the header checksum equals recomputing it."""
    frame, kind, l3, _ = case
    if frame[l3] >> 4 != 4:
        return
    f = bytearray(frame)
    check = int.from_bytes(f[l3 + 10 : l3 + 12], "big")
    if data.draw(st.booleans()):
        old = int.from_bytes(f[l3 + 12 : l3 + 16], "big")
        new = data.draw(st.integers(0, 2**32 - 1))
        f[l3 + 12 : l3 + 16] = new.to_bytes(4, "big")
        updated = checksum.update32(check, old, new)
    else:
        old = int.from_bytes(f[l3 + 8 : l3 + 10], "big")
        f[l3 + 8] = data.draw(st.integers(1, 255))
        updated = checksum.update(check, old, int.from_bytes(f[l3 + 8 : l3 + 10], "big"))
    f[l3 + 10 : l3 + 12] = updated.to_bytes(2, "big")
    assert checksum.verify(bytes(f), kind)[0] is True
