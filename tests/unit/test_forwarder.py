"""vnetio.Forwarder over in-memory loopback pairs: outer_a <-> [a <-> Forwarder <-> b] <-> outer_b."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import vnetio
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.packets import make_frame


@pytest.fixture
def rig() -> Iterator[tuple[vnetio.Loopback, vnetio.Loopback, vnetio.Forwarder]]:
    outer_a, a = vnetio.loopback_pair(4096)
    outer_b, b = vnetio.loopback_pair(4096, mtu=1000)
    fwd = vnetio.Forwarder(a, b)
    try:
        yield outer_a, outer_b, fwd
    finally:
        fwd.close()
        for end in (outer_a, a, outer_b, b):
            end.close()


def settled(fwd: vnetio.Forwarder, direction: str, frames: int) -> dict[str, int]:
    """The direction's counters once every frame taken is accounted for (the receiver can
    see a frame a moment before the forwarder counts it delivered)."""
    deadline = time.monotonic() + 2.0
    while True:
        stats = fwd.stats()[direction]
        done = (
            stats["frames"] >= frames and stats["delivered"] + stats["dropped"] == stats["frames"]
        )
        if done or time.monotonic() > deadline:
            return stats


def drain(end: vnetio.Loopback, want: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(bytes(f) for f in end.recv_batch(256, timeout=0.1))
    return got


def test_frames_cross_both_ways_in_order_and_are_counted(
    rig: tuple[vnetio.Loopback, vnetio.Loopback, vnetio.Forwarder],
) -> None:
    outer_a, outer_b, fwd = rig
    there = [make_frame(i, 60 + i) for i in range(300)]
    back = [make_frame(1000 + i, 900) for i in range(120)]
    assert outer_a.send_batch(there) == 300
    assert outer_b.send_batch(back) == 120
    assert drain(outer_b, 300) == there
    assert drain(outer_a, 120) == back
    ab, ba = settled(fwd, "a_to_b", 300), settled(fwd, "b_to_a", 120)
    assert (ab["frames"], ab["delivered"], ab["dropped"]) == (300, 300, 0)
    assert ab["bytes"] == sum(map(len, there))
    assert (ba["frames"], ba["delivered"], ba["dropped"]) == (120, 120, 0)
    assert 1 <= ab["batches"] <= 300
    assert fwd.running and fwd.state == "running" and fwd.reason is None


def test_frames_the_destination_refuses_are_dropped_and_counted(
    rig: tuple[vnetio.Loopback, vnetio.Loopback, vnetio.Forwarder],
) -> None:
    outer_a, outer_b, fwd = rig
    frames = [make_frame(1, 100), make_frame(2, 1400), make_frame(3, 200)]  # b's MTU is 1000
    outer_a.send_batch(frames)
    assert drain(outer_b, 2) == [frames[0], frames[2]]
    ab = settled(fwd, "a_to_b", 3)
    assert (ab["frames"], ab["delivered"], ab["dropped"], ab["refused"]) == (3, 2, 1, 1)
    assert fwd.last_error is not None and "refused" in fwd.last_error
    assert fwd.running  # a refused frame does not stop it


def test_close_is_prompt_and_leaves_the_adapters_open() -> None:
    outer_a, a = vnetio.loopback_pair()
    _outer_b, b = vnetio.loopback_pair()
    with vnetio.Forwarder(a, b) as fwd:
        assert fwd.a is a and fwd.b is b
        time.sleep(0.1)
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    assert fwd.state == "closed" and not fwd.running
    assert fwd.reason == "close() was called"
    assert fwd.wait(0) is True
    assert not a.closed and not b.closed
    # The adapters work on without it.
    outer_a.send(make_frame(7, 80))
    assert bytes(a.recv_batch(timeout=1.0)[0]) == make_frame(7, 80)
    fwd.close()  # idempotent
    assert "closed" in repr(fwd)


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_closed_adapter_stops_the_forwarder(side: str) -> None:
    _outer_a, a = vnetio.loopback_pair()
    _outer_b, b = vnetio.loopback_pair()
    fwd = vnetio.Forwarder(a, b)
    try:
        assert fwd.wait(0.05) is False
        started = time.monotonic()
        (a if side == "a" else b).close()
        assert fwd.wait(2.0) is True
        assert time.monotonic() - started < 0.5
        assert fwd.state == "stopped" and not fwd.running
        # Both ends are called "loop1": the reason says which side too.
        name = (a if side == "a" else b).name
        assert fwd.reason == f"{side} ({name}) was closed"
        assert not (b if side == "a" else a).closed  # the other side is left open
    finally:
        fwd.close()
    assert fwd.state == "stopped"  # close() after the fact keeps the reason


def test_bad_arguments_are_refused_with_the_fix() -> None:
    a, _ = vnetio.loopback_pair()
    t, _ = vnetio.loopback_pair(kind="tun")
    with pytest.raises(ValueError, match="same kind"):
        vnetio.Forwarder(a, t)
    with pytest.raises(ValueError, match="same adapter"):
        vnetio.Forwarder(a, a)
    with pytest.raises(TypeError, match="must be a vnetio adapter"):
        vnetio.Forwarder(a, "eth0")  # type: ignore[arg-type]
    b, _ = vnetio.loopback_pair()
    with pytest.raises(ValueError, match="batch"):
        vnetio.Forwarder(a, b, batch=0)
    b.close()
    with pytest.raises(ValueError, match="is closed"):
        vnetio.Forwarder(a, b)


def test_superframes_sent_into_a_loopback_cross_as_their_segments() -> None:
    """A loopback end keeps no offload metadata (it splits a super-frame when it is sent),
    so the forwarder sees and moves plain segments; super-frames crossing whole are tested
    over two TAPs (tests/privileged/test_forwarder_taps.py)."""
    pkt = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / TCP(sport=1000, dport=2000, flags="A")
        / (bytes(range(256)) * 16)
    )
    offload = vnetio.Offload(
        "tcpv4", gso_size=1000, hdr_len=54, csum_start=34, csum_offset=16, needs_csum=True
    )
    superframe = vnetio.Batch.from_frames([bytes(pkt)], [offload])
    segments = [bytes(f) for f in superframe.segment()]
    assert len(segments) == 5
    outer_a, a = vnetio.loopback_pair()
    outer_b, b = vnetio.loopback_pair()
    with vnetio.Forwarder(a, b) as fwd:
        outer_a.send_batch(superframe)
        assert drain(outer_b, len(segments)) == segments
        ab = settled(fwd, "a_to_b", 5)
        assert (ab["frames"], ab["superframes"], ab["delivered"]) == (5, 0, 5)
