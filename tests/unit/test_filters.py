"""Filters: libpcap compiles; vnetio's Rust BPF interpreter must agree with libpcap's own.

The oracle is libpcap's C interpreter (``pcap_offline_filter``, i.e. ``bpf_filter``) from
the same bundled library, run on the same program and frames: thousands of generated
frames (valid packets of many kinds, random bytes, truncations) against a set of
expressions, frame by frame.
"""

from __future__ import annotations

import ctypes
import doctest

import pytest
import vnetio
import vnetio.filters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, raw
from vnetio import filters

EXPRESSIONS = [
    "udp",
    "tcp and dst port 80",
    "udp and dst port 53",
    "icmp or icmp6",
    "ip host 192.0.2.1",
    "ip6 and net 2001:db8::/32",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
    "vlan and udp",
    "arp",
    "len > 200",
    "ip[8] < 64",
    "portrange 1000-2000",
    "not ip and not ip6",
]
TUN_EXPRESSIONS = ["udp", "tcp port 80", "icmp6", "ip6 and udp", "ip[9] == 1", "len < 100"]


class _PktHdr(ctypes.Structure):
    _fields_ = [
        ("sec", ctypes.c_long),
        ("usec", ctypes.c_long),
        ("caplen", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
    ]


def libpcap_verdicts(expression: str, kind: str, frames: list[bytes]) -> list[bool]:
    """libpcap's own interpreter on the same compiled program."""
    lib = filters._library()
    lib.pcap_offline_filter.restype = ctypes.c_int
    lib.pcap_offline_filter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    insns = filters.compile(expression, kind)  # type: ignore[arg-type]
    arr = (filters._Insn * len(insns))(*(filters._Insn(*i) for i in insns))
    prog = filters._Program(len(insns), ctypes.cast(arr, ctypes.POINTER(filters._Insn)))
    out = []
    for f in frames:
        hdr = _PktHdr(0, 0, len(f), len(f))
        out.append(lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), f) != 0)
    return out


def vnetio_verdicts(expression: str, kind: str, frames: list[bytes]) -> list[bool]:
    """Which frames survive Batch.filter (frames are tagged by index to find them)."""
    tagged = vnetio.Batch.from_frames(frames)
    kept = tagged.filter(expression, kind)  # type: ignore[arg-type]
    survivors = [bytes(f) for f in kept]
    out, j = [], 0
    for f in frames:
        if j < len(survivors) and survivors[j] == f:
            out.append(True)
            j += 1
        else:
            out.append(False)
    assert j == len(survivors)
    return out


ADDR4 = st.sampled_from(["192.0.2.1", "192.0.2.9", "198.51.100.3"])
ADDR6 = st.sampled_from(["2001:db8::1", "2001:db8:1::2", "2002::1"])


@st.composite
def frames(draw: st.DrawFn, kind: str) -> bytes:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(min_size=0, max_size=120))  # junk
    port = draw(st.sampled_from([53, 80, 1500, 4000]))
    l4 = draw(
        st.sampled_from(
            [
                UDP(sport=port, dport=port),
                TCP(sport=port, dport=port, flags=draw(st.sampled_from(["S", "A", "FA", "PA"]))),
                ICMP(),
            ]
        )
    )
    if draw(st.booleans()):
        pkt: Packet = IP(src=draw(ADDR4), dst=draw(ADDR4), ttl=draw(st.integers(1, 255))) / l4
    else:
        pkt = IPv6(src=draw(ADDR6), dst=draw(ADDR6)) / (
            ICMPv6EchoRequest() if isinstance(l4, ICMP) else l4
        )
    pkt = pkt / draw(st.binary(max_size=300))
    if kind == "tap":
        link: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        if draw(st.booleans()):
            link = link / Dot1Q(vlan=7)
        pkt = link / (ARP(psrc="192.0.2.1", pdst="192.0.2.2") if choice == 1 else pkt)
    data = raw(pkt)
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]  # truncated
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames("tap"), min_size=1, max_size=60))
def test_tap_verdicts_match_libpcap(batch: list[bytes]) -> None:
    for expression in EXPRESSIONS:
        assert vnetio_verdicts(expression, "tap", batch) == libpcap_verdicts(
            expression, "tap", batch
        ), expression


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames("tun"), min_size=1, max_size=60))
def test_tun_verdicts_match_libpcap(batch: list[bytes]) -> None:
    for expression in TUN_EXPRESSIONS:
        assert vnetio_verdicts(expression, "tun", batch) == libpcap_verdicts(
            expression, "tun", batch
        ), expression


def test_bad_expressions_and_programs_are_value_errors() -> None:
    batch = vnetio.Batch.from_frames([b"\x00" * 60])
    with pytest.raises(ValueError, match="syntax error"):
        batch.filter("udp and and")
    with pytest.raises(ValueError, match="kind must be"):
        filters.compile("udp", "eth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end with a ret"):
        batch.filter([(0x28, 0, 0, 12)])
    with pytest.raises(ValueError, match="jump"):
        batch.filter([(0x15, 9, 0, 1), (0x06, 0, 0, 1)])
    with pytest.raises(TypeError, match="tcpdump expression"):
        batch.filter(42)  # type: ignore[arg-type]


def test_module_docstring_example() -> None:
    failures, _ = doctest.testmod(vnetio.filters)
    assert failures == 0


def test_loopback_set_filter_counts_rejects_and_can_be_removed() -> None:
    udp = raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=53))
    tcp = raw(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(dport=80))
    a, b = vnetio.loopback_pair()
    with a, b:
        assert (b.filter, b.filter_placement) == (None, None)
        assert b.set_filter("udp") == "userspace"
        assert b.set_filter("udp", placement="userspace") == "userspace"
        assert (b.filter, b.filter_placement) == ("udp", "userspace")
        a.send_batch([tcp, udp, tcp, tcp, udp])
        assert b.recv_batch(timeout=1).to_list() == [udp, udp]
        s = b.stats()
        assert (s.rx_frames, s.rx_filtered, s.rx_dropped) == (2, 3, 0)
        assert s.as_dict()["rx_filtered"] == 3
        # Only rejected frames waiting: the wait runs to its timeout, returns nothing.
        a.send_batch([tcp] * 3)
        assert len(b.recv_batch(timeout=0.05)) == 0
        assert b.stats().rx_filtered == 6
        assert b.set_filter(None) is None
        a.send_batch([tcp])
        assert b.recv_batch(timeout=1).to_list() == [tcp]
        assert a.stats().rx_filtered == 0


def test_a_program_returning_a_length_cuts_frames_like_the_kernel() -> None:
    """A socket filter's result is how many bytes to keep (libpcap's snaplen)."""
    a, b = vnetio.loopback_pair()
    with a, b:
        b.set_filter([(0x06, 0, 0, 20)])  # ret #20
        a.send_batch([bytes(range(60)), bytes(16)])
        assert b.recv_batch(timeout=1).to_list() == [bytes(range(20)), bytes(16)]


def test_kernel_only_rules_are_refused_by_the_validator() -> None:
    batch = vnetio.Batch.from_frames([b"\x00" * 60])
    with pytest.raises(ValueError, match="shift by a constant"):
        batch.filter([(0x64, 0, 0, 32), (0x16, 0, 0, 0)])  # lsh #32
    with pytest.raises(ValueError, match="bad return"):
        batch.filter([(0x0E, 0, 0, 0)])  # ret x
