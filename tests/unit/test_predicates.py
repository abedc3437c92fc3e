"""Python predicates on scapy packets (scapy's `lfilter`) for what BPF cannot express:
`Batch.filter(callable)` and `VnetioSocket(lfilter=...)` / `sniff(lfilter=...)`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import vnetio
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.sendrecv import sniff
from vnetio.inspect import VnetioSocket, filter_batch, send_packets

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def frames() -> list[Any]:
    eth = Ether(src=A, dst=B)
    return [
        eth / ARP(pdst="192.0.2.9"),
        eth
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / UDP(dport=53)
        / DNS(qd=DNSQR(qname="a.example.")),
        eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=53) / DNS(qd=DNSQR(qname="b.test.")),
        eth / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(dport=80) / b"GET /needle HTTP/1.1\r\n",
        eth / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(dport=80) / b"GET /hay HTTP/1.1\r\n",
        eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(data=b"needle"),
    ]


@pytest.fixture
def received() -> Iterator[vnetio.Batch]:
    """The frames above as a batch received from an adapter (with receive times)."""
    a, b = vnetio.loopback_pair(kind="tap")
    with a, b:
        send_packets(a, frames())
        batch = b.recv_batch(timeout=1.0)
        assert len(batch) == 6 and all(batch.timestamps_ns)
        yield batch


def test_predicate_on_the_dissected_packet(received: vnetio.Batch) -> None:
    dns = received.filter(lambda p: p.haslayer(DNS) and p[DNSQR].qname.endswith(b".example."))
    assert len(dns) == 1
    assert Ether(bytes(dns[0]))[DNSQR].qname == b"a.example."
    assert dns.timestamps_ns == [received.timestamps_ns[1]]
    # A substring anywhere in the payload: no BPF program says that.
    needle = received.filter(lambda p: b"needle" in bytes(p.lastlayer()))
    assert [bytes(f) for f in needle] == [bytes(received[3]), bytes(received[5])]
    assert needle.timestamps_ns == [received.timestamps_ns[3], received.timestamps_ns[5]]
    assert len(received.filter(lambda p: False)) == 0
    assert len(received.filter(lambda p: p)) == 6  # truthiness, as lfilter


def test_chained_after_a_bpf_filter(received: vnetio.Batch) -> None:
    tcp = received.filter("tcp port 80")
    assert len(tcp) == 2
    got = tcp.filter(lambda p: p[Raw].load.startswith(b"GET /hay"))
    assert [bytes(f) for f in got] == [bytes(received[4])]
    assert got.timestamps_ns == [received.timestamps_ns[4]]


def test_tun_packets_are_ip() -> None:
    batch = vnetio.Batch.from_frames(
        [
            bytes(IP(dst="192.0.2.2") / ICMP()),
            bytes(IPv6(dst="2001:db8::2") / ICMPv6EchoRequest()),
            bytes(IP(dst="192.0.2.3") / UDP()),
        ]
    )
    seen: list[str] = []

    def v6(p: Any) -> bool:
        seen.append(type(p).__name__)
        return isinstance(p, IPv6)

    assert len(batch.filter(v6, "tun")) == 1
    assert seen == ["IP", "IPv6", "IP"]
    assert len(batch.filter(lambda p: p.dst == "192.0.2.3", kind="tun")) == 1


def test_offload_metadata_is_kept() -> None:
    frame = bytes(Ether(src=A, dst=B) / IP() / TCP() / (b"x" * 3000))
    meta = {"gso_type": "tcpv4", "gso_size": 1448, "hdr_len": 54, "needs_csum": True,
            "csum_start": 34, "csum_offset": 16}  # fmt: skip
    batch = vnetio.Batch.from_frames([frame, frame], offload=[meta, None])
    kept = batch.filter(lambda p: True)
    assert kept.offload_info(0) == batch.offload_info(0)
    assert kept.offload_info(1) is None


def test_errors(received: vnetio.Batch) -> None:
    def boom(p: Any) -> bool:
        raise KeyError("from the predicate")

    with pytest.raises(KeyError, match="from the predicate"):
        received.filter(boom)
    calls: list[Any] = []
    with pytest.raises(ValueError, match="kind must be"):
        received.filter(calls.append, "eth")  # type: ignore[arg-type]
    assert calls == []
    with pytest.raises(TypeError, match="predicate"):
        received.filter(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        filter_batch(received, "tcp")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="out of range"):
        received._take([6])
    assert [bytes(f) for f in received._take([-1, 0, 0])] == [
        bytes(received[5]),
        bytes(received[0]),
        bytes(received[0]),
    ]


def test_socket_lfilter_applies_to_every_use() -> None:
    a, b = vnetio.loopback_pair(kind="tap")
    with a, b, VnetioSocket(b, lfilter=lambda p: p.haslayer(TCP)) as sock:
        send_packets(a, frames())
        got = sock.sniff(count=2, timeout=1.0)
        assert [bytes(p[Raw].load)[:8] for p in got] == [b"GET /nee", b"GET /hay"]
        assert (sock.filtered, sock.pending) == (3, 1)  # ARP and 2 DNS; IPv6 still queued
        assert sock.recv() is None  # the IPv6 frame is turned away too
        assert (sock.filtered, sock.pending) == (4, 0)
        with pytest.raises(TypeError, match="lfilter must be"):
            VnetioSocket(b, lfilter="tcp")  # type: ignore[arg-type]


def test_scapy_sniff_lfilter_and_raw_filter_together() -> None:
    a, b = vnetio.loopback_pair(kind="tap")
    with a, b, VnetioSocket(b, filter=lambda f: f[12:14] == b"\x08\x00") as sock:  # IPv4
        send_packets(a, frames())
        got = sniff(
            opened_socket=sock,
            lfilter=lambda p: p.haslayer(UDP),
            count=2,
            timeout=1.0,
        )
        assert [p[DNSQR].qname for p in got] == [b"a.example.", b"b.test."]
        assert sock.filtered == 2  # ARP and IPv6, turned away by the raw filter
