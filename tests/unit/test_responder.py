"""The echo responder (vnetio.responder.EchoResponder) against scapy's dissection.

Requests are built with scapy; each reply is dissected by scapy and its fields compared
with what RFC 826 / RFC 792 / RFC 4443 / RFC 4861 require. A checksum is right when
scapy, asked to recompute it from the other fields, writes the same value. Random and
mutated frames (hypothesis) never raise and every frame is counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import vnetio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw
from vnetio import checksum
from vnetio.responder import EchoResponder

MAC = "02:00:00:00:00:22"
PEER_MAC = "02:00:00:00:00:11"
IP4, PEER4 = "192.0.2.2", "192.0.2.1"
IP6, PEER6 = "2001:db8::2", "2001:db8::1"
SOLICITED = "ff02::1:ff00:2"  # solicited-node multicast group of 2001:db8::2
SOLICITED_MAC = "33:33:ff:00:00:02"


@pytest.fixture
def tap() -> EchoResponder:
    return EchoResponder(kind="tap", ipv4=IP4, ipv6=IP6, mac=MAC)


def one_reply(responder: EchoResponder, request: Packet | bytes) -> bytes:
    replies = responder.answer([bytes(request)])
    assert len(replies) == 1, responder.stats()
    return bytes(replies[0])


def no_reply(responder: EchoResponder, request: Packet | bytes) -> None:
    assert len(responder.answer([bytes(request)])) == 0


def checksums_recomputed(packet: Packet, *fields: tuple[type[Packet], str]) -> Packet:
    """``packet`` rebuilt by scapy with the given checksum fields recomputed."""
    copy = packet.copy()
    for layer, name in fields:
        setattr(copy[layer], name, None)
    return type(packet)(bytes(copy))


def test_arp_request_gets_a_reply(tap: EchoResponder) -> None:
    request = Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(
        hwsrc=PEER_MAC, psrc=PEER4, pdst=IP4
    )
    reply = Ether(one_reply(tap, request))
    assert (reply.dst, reply.src, reply.type) == (PEER_MAC, MAC, 0x0806)
    arp = reply[ARP]
    assert arp.op == 2  # is-at
    assert (arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (MAC, IP4, PEER_MAC, PEER4)
    no_reply(tap, Ether(src=PEER_MAC) / ARP(hwsrc=PEER_MAC, psrc=PEER4, pdst="192.0.2.3"))
    no_reply(tap, Ether(src=PEER_MAC) / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER4, pdst=IP4))
    assert tap.stats()["arp"] == 1
    assert tap.stats()["ignored"] == 2


def test_icmp_echo_reply(tap: EchoResponder) -> None:
    payload = bytes(range(56))
    request = (
        Ether(dst=MAC, src=PEER_MAC)
        / IP(src=PEER4, dst=IP4, id=777, tos=0x10)
        / ICMP(id=0x1234, seq=7)
        / payload
    )
    reply = Ether(one_reply(tap, request))
    assert (reply.dst, reply.src) == (PEER_MAC, MAC)
    ip, icmp = reply[IP], reply[ICMP]
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.tos) == (IP4, PEER4, 64, 1, 0x10)
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 0x1234, 7)
    assert bytes(icmp.payload) == payload
    fixed = checksums_recomputed(reply, (IP, "chksum"), (ICMP, "chksum"))
    assert (fixed[IP].chksum, fixed[ICMP].chksum) == (ip.chksum, icmp.chksum)
    assert tap.stats()["echo4"] == 1


def test_icmp_echo_checks(tap: EchoResponder) -> None:
    good = Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER4, dst=IP4) / ICMP() / b"abcd"
    bad = bytearray(bytes(good))
    bad[-1] ^= 0xFF
    no_reply(tap, bytes(bad))
    no_reply(tap, Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER4, dst="192.0.2.9") / ICMP())
    no_reply(tap, Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER4, dst=IP4) / ICMP(type=0))
    no_reply(tap, Ether(dst="02:00:00:00:00:99", src=PEER_MAC) / IP(src=PEER4, dst=IP4) / ICMP())
    no_reply(tap, Ether(dst=MAC, src=PEER_MAC) / IP(src=PEER4, dst=IP4, flags="MF") / ICMP())
    stats = tap.stats()
    assert (stats["malformed"], stats["ignored"], stats["answered"]) == (1, 4, 0)


def test_vlan_tags_are_kept(tap: EchoResponder) -> None:
    request = (
        Ether(dst=MAC, src=PEER_MAC)
        / Dot1Q(vlan=10, prio=3)
        / IP(src=PEER4, dst=IP4)
        / ICMP(id=1, seq=2)
        / b"tagged"
    )
    reply = Ether(one_reply(tap, request))
    assert (reply[Dot1Q].vlan, reply[Dot1Q].prio) == (10, 3)
    assert (reply[ICMP].type, reply[IP].dst, reply[Raw].load) == (0, PEER4, b"tagged")
    arp = Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=5) / ARP(psrc=PEER4, pdst=IP4)
    reply = Ether(one_reply(tap, arp))
    assert (reply[Dot1Q].vlan, reply[ARP].op) == (5, 2)


def test_icmpv6_echo_reply(tap: EchoResponder) -> None:
    request = (
        Ether(dst=MAC, src=PEER_MAC)
        / IPv6(src=PEER6, dst=IP6, hlim=64)
        / ICMPv6EchoRequest(id=0x4242, seq=3, data=b"ping6 payload")
    )
    reply = Ether(one_reply(tap, request))
    ip = reply[IPv6]
    assert (ip.src, ip.dst, ip.hlim, ip.nh) == (IP6, PEER6, 64, 58)
    echo = reply[ICMPv6EchoReply]
    assert (echo.id, echo.seq, echo.data) == (0x4242, 3, b"ping6 payload")
    fixed = checksums_recomputed(reply, (ICMPv6EchoReply, "cksum"))
    assert fixed[ICMPv6EchoReply].cksum == echo.cksum
    multicast = Ether(dst="33:33:00:00:00:01", src=PEER_MAC) / IPv6(src=PEER6, dst="ff02::1")
    no_reply(tap, multicast / ICMPv6EchoRequest())
    assert tap.stats()["echo6"] == 1


def test_neighbour_solicitation_gets_an_advertisement(tap: EchoResponder) -> None:
    request = (
        Ether(dst=SOLICITED_MAC, src=PEER_MAC)
        / IPv6(src=PEER6, dst=SOLICITED, hlim=255)
        / ICMPv6ND_NS(tgt=IP6)
        / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
    )
    reply = Ether(one_reply(tap, request))
    assert (reply.dst, reply.src) == (PEER_MAC, MAC)
    ip = reply[IPv6]
    assert (ip.src, ip.dst, ip.hlim) == (IP6, PEER6, 255)
    na = reply[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 1, 1, IP6)
    assert reply[ICMPv6NDOptDstLLAddr].lladdr == MAC
    fixed = checksums_recomputed(reply, (ICMPv6ND_NA, "cksum"))
    assert fixed[ICMPv6ND_NA].cksum == na.cksum
    # RFC 4861 §7.1.1: a hop limit below 255 means it came from off-link: discarded.
    no_reply(
        tap,
        Ether(dst=SOLICITED_MAC, src=PEER_MAC)
        / IPv6(src=PEER6, dst=SOLICITED, hlim=64)
        / ICMPv6ND_NS(tgt=IP6),
    )
    # Another target.
    no_reply(
        tap,
        Ether(dst="33:33:ff:00:00:03", src=PEER_MAC)
        / IPv6(src=PEER6, dst="ff02::1:ff00:3", hlim=255)
        / ICMPv6ND_NS(tgt="2001:db8::3"),
    )
    assert (tap.stats()["ns"], tap.stats()["malformed"], tap.stats()["ignored"]) == (1, 1, 1)


def test_duplicate_address_detection_is_defended(tap: EchoResponder) -> None:
    probe = (
        Ether(dst=SOLICITED_MAC, src=PEER_MAC)
        / IPv6(src="::", dst=SOLICITED, hlim=255)
        / ICMPv6ND_NS(tgt=IP6)
    )
    reply = Ether(one_reply(tap, probe))
    assert reply.dst == "33:33:00:00:00:01"
    assert (reply[IPv6].src, reply[IPv6].dst) == (IP6, "ff02::1")
    na = reply[ICMPv6ND_NA]
    assert (na.S, na.O, na.tgt) == (0, 1, IP6)
    assert reply[ICMPv6NDOptDstLLAddr].lladdr == MAC
    # From :: with a source link-layer option: invalid (RFC 4861 §7.1.1).
    no_reply(tap, probe / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC))


def test_tun_answers_echo_only() -> None:
    tun = EchoResponder(kind="tun", ipv4=IP4, ipv6=IP6)
    assert tun.mac == "00:00:00:00:00:00"
    reply = IP(one_reply(tun, IP(src=PEER4, dst=IP4) / ICMP(id=9, seq=1) / (b"x" * 100)))
    assert (reply.src, reply.dst, reply[ICMP].type, reply[ICMP].id) == (IP4, PEER4, 0, 9)
    assert checksum.verify(bytes(reply), "tun") == (True, True)
    reply6 = IPv6(one_reply(tun, IPv6(src=PEER6, dst=IP6) / ICMPv6EchoRequest(seq=5)))
    assert (reply6.dst, reply6[ICMPv6EchoReply].seq) == (PEER6, 5)
    no_reply(tun, IPv6(src=PEER6, dst=SOLICITED, hlim=255) / ICMPv6ND_NS(tgt=IP6))
    assert tun.stats()["ignored"] == 1


def test_one_address_family_only() -> None:
    v4 = EchoResponder(kind="tap", ipv4=IP4, ipv6=None, mac=MAC)
    no_reply(v4, Ether(dst=MAC, src=PEER_MAC) / IPv6(src=PEER6, dst=IP6) / ICMPv6EchoRequest())
    assert v4.ipv6 is None
    v6 = EchoResponder(kind="tap", ipv4=None, ipv6=IP6, mac=MAC)
    no_reply(v6, Ether(src=PEER_MAC) / ARP(psrc=PEER4, pdst=IP4))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not an IPv4 address"):
        EchoResponder(kind="tap", ipv4="192.0.2.2/24")
    with pytest.raises(ValueError, match="unicast"):
        EchoResponder(kind="tap", ipv4="224.0.0.1")
    with pytest.raises(ValueError, match="not an IPv6 address"):
        EchoResponder(kind="tap", ipv6="2001:db8::zz")
    with pytest.raises(ValueError, match="unicast"):
        EchoResponder(kind="tap", ipv6="ff02::1")
    with pytest.raises(ValueError, match="give the responder an address"):
        EchoResponder(kind="tap", ipv4=None, ipv6=None)
    with pytest.raises(ValueError, match="unicast MAC"):
        EchoResponder(kind="tap", mac="01:00:5e:00:00:01")
    with pytest.raises(ValueError, match="kind must be"):
        EchoResponder(kind="eth")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an adapter"):
        EchoResponder()
    with pytest.raises(ValueError, match="needs mac="):
        vnetio.responder._CoreResponder(None, ipv4=IP4)

    class FakeTap:
        kind = "tap"
        name = "vn0"
        mac = "02:aa:bb:cc:dd:ee"

    with pytest.raises(ValueError, match="TAP's own MAC"):
        EchoResponder(FakeTap(), mac="02:AA:BB:CC:DD:EE")  # type: ignore[arg-type]
    random = EchoResponder(FakeTap())  # type: ignore[arg-type]
    first = int(random.mac.split(":")[0], 16)
    assert first & 0b11 == 0b10, "locally administered unicast"
    with pytest.raises(TypeError, match="needs the adapter"):
        EchoResponder(kind="tap").start()


# -- serving an adapter ------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[vnetio.Loopback, vnetio.Loopback]]:
    a, b = vnetio.loopback_pair(kind="tap")
    with a, b:
        yield a, b


def test_serves_a_loopback_end(pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    a, b = pair
    with EchoResponder(b, mac=MAC) as responder:
        assert responder.serving
        a.send_batch(
            [
                bytes(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=PEER4, pdst=IP4)),
                bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=PEER4, dst=IP4) / ICMP(seq=1)),
                bytes(Ether(src=PEER_MAC, dst=MAC, type=0x88B5)) + bytes(46),  # not for it
            ]
        )
        got: list[Any] = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            got += [Ether(bytes(f)) for f in a.recv_batch(timeout=0.5)]
    assert not responder.serving
    assert [p.haslayer(ARP) for p in got] == [True, False]
    assert got[1][ICMP].type == 0
    stats = responder.stats()
    assert {k: stats[k] for k in ("arp", "echo4", "ignored", "received", "sent")} == {
        "arp": 1,
        "echo4": 1,
        "ignored": 1,
        "received": 3,
        "sent": 2,
    }


def test_stops_promptly_and_survives_a_closed_adapter(
    pair: tuple[vnetio.Loopback, vnetio.Loopback],
) -> None:
    _, b = pair
    responder = EchoResponder(b).start()
    time.sleep(0.1)
    started = time.monotonic()
    responder.stop()
    assert time.monotonic() - started < 0.5
    responder.start()
    b.close()  # the serving thread ends quietly
    deadline = time.monotonic() + 2
    while responder.serving and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not responder.serving
    responder.stop()


def test_replies_that_do_not_fit_are_counted() -> None:
    a, b = vnetio.loopback_pair(capacity=1, kind="tap", overflow="error")
    with a, b:
        requests = [
            bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=PEER4, dst=IP4) / ICMP(seq=i))
            for i in range(3)
        ]
        with EchoResponder(b, mac=MAC) as responder:
            deadline = time.monotonic() + 5
            for n, request in enumerate(requests, 1):
                a.send(request)  # b's queue holds one frame too: one request at a time
                while responder.stats()["received"] < n and time.monotonic() < deadline:
                    time.sleep(0.01)
        stats = responder.stats()
        assert (stats["echo4"], stats["sent"], stats["send_failed"]) == (3, 1, 2)
        assert a.pending == 1


# -- junk never breaks it ----------------------------------------------------------------

VALID = [
    bytes(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=PEER4, pdst=IP4)),
    bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=PEER4, dst=IP4) / ICMP() / (b"x" * 20)),
    bytes(Ether(src=PEER_MAC, dst=MAC) / IPv6(src=PEER6, dst=IP6) / ICMPv6EchoRequest()),
    bytes(
        Ether(dst=SOLICITED_MAC, src=PEER_MAC)
        / IPv6(src=PEER6, dst=SOLICITED, hlim=255)
        / ICMPv6ND_NS(tgt=IP6)
        / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)
    ),
]


def check_batch(responder: EchoResponder, frames: list[bytes]) -> None:
    before = responder.stats()
    replies = responder.answer(frames)
    after = responder.stats()
    delta = {k: after[k] - before[k] for k in after}
    assert delta["answered"] + delta["ignored"] + delta["malformed"] == len(frames)
    assert len(replies) == delta["answered"]
    for reply in replies:
        assert checksum.verify(bytes(reply), responder.kind) != (False, None)
        ip_ok, l4_ok = checksum.verify(bytes(reply), responder.kind)
        assert ip_ok is not False and l4_ok is not False
        assert len(responder.answer([reply])) == 0, "a reply was answered"


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.binary(max_size=120), max_size=8), st.sampled_from(["tap", "tun"]))
def test_random_bytes(frames: list[bytes], kind: str) -> None:
    responder = EchoResponder(kind=kind, mac=MAC)  # type: ignore[arg-type]
    check_batch(responder, frames)


@settings(max_examples=300)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 200),
)
def test_mutated_requests(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(frame)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    responder = EchoResponder(kind="tap", mac=MAC)
    check_batch(responder, [bytes(data), bytes(data[:cut])])
