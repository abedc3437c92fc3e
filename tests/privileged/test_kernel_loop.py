"""KernelLoop: two TAPs on a bridge in a private namespace, opened with vnetio, frames
cross from A to B; the namespace is gone afterwards, also after an exception; options
reach both adapters."""

from __future__ import annotations

import os
import time

import pytest
from vnetio.kernel_loop import KernelLoop

from tests.netutil import NETNS_PREFIX, random_suffix

pytestmark = pytest.mark.privileged


def ns_name() -> str:
    return f"{NETNS_PREFIX}{random_suffix()}"


def exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def receive(loop: KernelLoop, size: int, want: int, timeout: float = 5.0) -> int:
    got = 0
    deadline = time.monotonic() + timeout
    while got < want and time.monotonic() < deadline:
        got += loop.own_frames(loop.b.recv_batch(timeout=0.2), size)
    return got


def test_frames_cross_from_a_to_b() -> None:
    name = ns_name()
    with KernelLoop(netns=name) as loop:
        assert loop.netns == name and exists(name)
        assert loop.topology.port_states() == {
            loop.a.name: "forwarding",
            loop.b.name: "forwarding",
        }
        before = loop.kernel_counters("b")
        assert loop.a.send_batch(loop.batch(200, 64)) == 200
        assert receive(loop, 64, 200) == 200
        after = loop.kernel_counters("b")
        assert after["tx_packets"] - before["tx_packets"] >= 200
        assert after["tx_dropped"] == before["tx_dropped"]
        a, b = loop.a, loop.b
    assert loop.closed and a.closed and b.closed
    assert not exists(name)


def test_cleanup_after_an_exception() -> None:
    name = ns_name()
    with pytest.raises(ZeroDivisionError), KernelLoop(netns=name) as loop:
        assert exists(loop.netns)
        _ = 1 / 0
    assert not exists(name)


def test_options_reach_both_adapters() -> None:
    with KernelLoop(netns=ns_name(), offload=True, mtu=9000, queues=2) as loop:
        for tap in (loop.a, loop.b):
            assert tap.offload and "csum" in tap.offloads
            assert tap.mtu == 9000
            assert len(tap.queues) == 2
        frame = loop.frame(8000)
        loop.a.send(frame)
        got = 0
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            for q in loop.b.queues:  # the kernel picks the queue
                got += loop.own_frames(q.recv_batch(timeout=0.1), 8000)
        assert got == 1
