"""A TUN adapter with an address: the kernel answers ICMP echo requests we write into it.

The requests are built by hand (tests/packets.py) with real checksums; the kernel drops a
request with a bad checksum, so a reply proves the whole path: our bytes reached the IP
stack unchanged and the kernel's reply came back out of the fd.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import vnetio

from tests.adapters import drain, recv_until
from tests.netutil import Netns
from tests.packets import (
    ICMP_ECHO_REPLY,
    ICMPV6_ECHO_REPLY,
    ipv4_echo_request,
    ipv6_echo_request,
    parse_ipv4_echo,
    parse_ipv6_echo,
)

pytestmark = pytest.mark.privileged

IDENT = os.getpid() & 0xFFFF


def echo_replies_v4(tun: vnetio.Tun, count: int, timeout: float = 5.0) -> list[bytes]:
    def keep(packet: bytes) -> bool:
        echo = parse_ipv4_echo(packet)
        return echo is not None and echo.kind == ICMP_ECHO_REPLY and echo.ident == IDENT

    return recv_until([tun], keep, count, timeout)[0]


def test_ipv4_echo_reply_from_the_kernel(netns: Netns) -> None:
    with vnetio.Tun("vn%d", netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
        payloads = [os.urandom(n) for n in (0, 1, 56, 1000, 1472)]
        for seq, payload in enumerate(payloads):
            tun.send(ipv4_echo_request("192.0.2.2", "192.0.2.1", IDENT, seq, payload))
        replies = [parse_ipv4_echo(p) for p in echo_replies_v4(tun, len(payloads))]
    assert len(replies) == len(payloads)
    for seq, (reply, payload) in enumerate(zip(replies, payloads, strict=True)):
        assert reply is not None
        assert (reply.src, reply.dst) == ("192.0.2.1", "192.0.2.2")
        assert (reply.ident, reply.seq) == (IDENT, seq)
        assert reply.payload == payload
        assert reply.checksum_ok
        assert reply.ip_checksum_ok


def test_ipv4_echo_batch(netns: Netns) -> None:
    with vnetio.Tun("vntun0", netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
        requests = [
            ipv4_echo_request(f"192.0.2.{2 + i % 200}", "192.0.2.1", IDENT, i, bytes([i]) * 32)
            for i in range(64)
        ]
        assert tun.send_batch(requests) == len(requests)
        replies = [parse_ipv4_echo(p) for p in echo_replies_v4(tun, len(requests))]
    assert sorted((r.seq, r.dst) for r in replies if r) == [
        (i, f"192.0.2.{2 + i % 200}") for i in range(64)
    ]
    assert all(
        r is not None and r.checksum_ok and r.payload == bytes([r.seq]) * 32 for r in replies
    )


def test_ipv4_bad_checksum_gets_no_reply(netns: Netns) -> None:
    """Guards the test above: a reply really depends on the bytes we wrote."""
    with vnetio.Tun("vntun0", netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
        good = ipv4_echo_request("192.0.2.2", "192.0.2.1", IDENT, 1, b"ok")
        bad = bytearray(ipv4_echo_request("192.0.2.2", "192.0.2.1", IDENT, 2, b"no"))
        bad[-1] ^= 0xFF  # payload changed, ICMP checksum not
        tun.send(bytes(bad))
        tun.send(good)
        # The good request went in last: once its reply is out, any reply to the bad one
        # would have come first. Wait a little more all the same.
        replies = [parse_ipv4_echo(p) for p in echo_replies_v4(tun, 1)]
        replies += [parse_ipv4_echo(p) for p in echo_replies_v4(tun, 1, timeout=0.3)]
    assert [r.seq for r in replies if r] == [1]


def wait_ipv6_ready(tun: vnetio.Tun, keep: Callable[[bytes], bool]) -> None:
    """IPv6 finishes configuring an address in a kernel work item after `up()` (even with
    DAD off): until then requests are dropped. Probe until one is answered."""
    deadline = time.monotonic() + 5
    probe = ipv6_echo_request("2001:db8::2", "2001:db8::1", IDENT, 0xFFFF, b"probe")
    while time.monotonic() < deadline:
        tun.send(probe)
        if recv_until([tun], keep, 1, timeout=0.1)[0]:
            drain(tun)
            return
    pytest.fail("2001:db8::1 never answered an echo request")


@pytest.mark.ipv6
def test_ipv6_echo_reply_from_the_kernel(netns: Netns) -> None:
    def keep(packet: bytes) -> bool:
        echo = parse_ipv6_echo(packet)
        return echo is not None and echo.kind == ICMPV6_ECHO_REPLY and echo.ident == IDENT

    with vnetio.Tun("vn%d", netns=netns.name) as tun:
        tun.add_address("2001:db8::1/64")
        tun.up()
        wait_ipv6_ready(tun, keep)
        payloads = [os.urandom(n) for n in (0, 7, 56, 1000, 1452)]
        requests = [
            ipv6_echo_request("2001:db8::2", "2001:db8::1", IDENT, seq, payload)
            for seq, payload in enumerate(payloads)
        ]
        assert tun.send_batch(requests) == len(requests)
        replies = [parse_ipv6_echo(p) for p in recv_until([tun], keep, len(payloads))[0]]
    assert len(replies) == len(payloads)
    for seq, (reply, payload) in enumerate(zip(replies, payloads, strict=True)):
        assert reply is not None
        assert (reply.src, reply.dst) == ("2001:db8::1", "2001:db8::2")
        assert (reply.ident, reply.seq) == (IDENT, seq)
        assert reply.payload == payload
        assert reply.checksum_ok
