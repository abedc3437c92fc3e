"""Multi-queue adapters: one fd per queue; the kernel spreads flows over the queues."""

from __future__ import annotations

import errno
import os

import pytest
import vnetio

from tests.adapters import recv_until
from tests.netutil import Netns
from tests.packets import ICMP_ECHO_REPLY, ipv4_echo_request, parse_ipv4_echo

pytestmark = pytest.mark.privileged

IDENT = os.getpid() & 0xFFFF


@pytest.mark.parametrize("cls", [vnetio.Tap, vnetio.Tun], ids=["tap", "tun"])
def test_queues_are_distinct_fds(netns: Netns, cls: type[vnetio.Tap | vnetio.Tun]) -> None:
    with cls("vnmq0", queues=2, netns=netns.name) as adapter:
        queues = adapter.queues
        assert len(queues) == 2
        assert all(isinstance(q, vnetio.Queue) for q in queues)
        assert [q.index for q in queues] == [0, 1]
        assert len({q.fileno() for q in queues}) == 2
        assert all(q.name == adapter.name for q in queues)
        assert all(q.kind == adapter.kind for q in queues)
        assert netns.link("vnmq0")["linkinfo"]["info_data"]["multi_queue"] is True
        assert netns.link("vnmq0")["num_tx_queues"] >= 2
    assert all(q.closed for q in queues)


def test_frames_from_the_kernel_arrive_on_some_queue(netns: Netns) -> None:
    """Echo replies to many flows come back spread over the queues; none is lost."""
    with vnetio.Tun("vnmq0", queues=2, netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
        q0, q1 = tun.queues
        expected = set()
        for i in range(40):
            src = f"192.0.2.{10 + i}"
            request = ipv4_echo_request(src, "192.0.2.1", IDENT, i, b"mq" * 16)
            (q0 if i % 2 else q1).send(request)
            expected.add((src, i))

        def keep(packet: bytes) -> bool:
            echo = parse_ipv4_echo(packet)
            return echo is not None and echo.kind == ICMP_ECHO_REPLY and echo.ident == IDENT

        replies, _ = recv_until([q0, q1], keep, len(expected))
        got = set()
        for packet in replies:
            echo = parse_ipv4_echo(packet)
            assert echo is not None
            assert echo.checksum_ok
            got.add((echo.dst, echo.seq))
        assert got == expected
        assert q0.stats().rx_frames + q1.stats().rx_frames >= len(expected)
        assert q0.stats().tx_frames + q1.stats().tx_frames == len(expected)


def test_opening_a_multi_queue_adapter_without_queues_is_einval(netns: Netns) -> None:
    netns.ip("tuntap", "add", "dev", "vnmq1", "mode", "tap", "multi_queue")
    with pytest.raises(OSError) as info:
        vnetio.Tap("vnmq1", netns=netns.name)
    assert info.value.errno == errno.EINVAL
    message = str(info.value)
    assert "vnmq1 is a multi-queue TAP" in message, message
    assert "open it with queues=2 or more" in message, message
    with vnetio.Tap("vnmq1", queues=2, netns=netns.name) as tap:
        assert not tap.created
        assert len(tap.queues) == 2
    assert netns.has_link("vnmq1")


def test_opening_a_single_queue_adapter_with_queues_is_einval(netns: Netns) -> None:
    netns.ip("tuntap", "add", "dev", "vnsq1", "mode", "tap")
    with pytest.raises(OSError) as info:
        vnetio.Tap("vnsq1", queues=2, netns=netns.name)
    assert info.value.errno == errno.EINVAL
    assert "vnsq1 is a single-queue TAP" in str(info.value), str(info.value)
    assert "open it with queues=1" in str(info.value), str(info.value)
