"""Frames through two real TAPs on a Linux bridge (TAP-FACTS "bridge loop")."""

from __future__ import annotations

import time

import pytest
import vnetio

from tests.adapters import Background, recv_own, recv_until
from tests.conftest import BridgePair
from tests.packets import DST_MAC, SRC_MAC, frame_seq, make_frame

pytestmark = pytest.mark.privileged

Taps = tuple[vnetio.Tap, vnetio.Tap]


def sizes(count: int) -> list[int]:
    """Frame sizes spread over 60..1514 with both ends included."""
    return [60, 1514] + [60 + (i * 211) % (1514 - 60 + 1) for i in range(count - 2)]


def test_frames_cross_the_bridge_intact_and_in_order(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    sent = [make_frame(i, size) for i, size in enumerate(sizes(300))]
    for frame in sent:
        a.send(frame)
    assert recv_own(b, len(sent)) == sent


def test_frames_cross_in_the_other_direction(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    sent = [make_frame(i, size, src=SRC_MAC) for i, size in enumerate(sizes(100))]
    for frame in sent:
        b.send(memoryview(frame))
    assert recv_own(a, len(sent)) == sent


def test_send_batch_with_a_batch(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    sent = [make_frame(i, size) for i, size in enumerate(sizes(200))]
    assert a.send_batch(vnetio.Batch.from_frames(sent)) == len(sent)
    assert recv_own(b, len(sent)) == sent


def test_send_batch_with_a_list_of_bytes(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    sent = [make_frame(i, size) for i, size in enumerate(sizes(200))]
    assert a.send_batch(sent) == len(sent)
    assert a.send_batch([]) == 0
    assert recv_own(b, len(sent)) == sent


def test_recv_batch_returns_a_batch_with_timestamps(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    sent = [make_frame(i, 100 + i) for i in range(20)]
    before = time.time_ns()
    a.send_batch(sent)
    batches = []
    received = 0
    deadline = time.monotonic() + 5
    while received < len(sent) and time.monotonic() < deadline:
        batch = b.recv_batch(max_frames=7, timeout=0.5)
        assert isinstance(batch, vnetio.Batch)
        assert len(batch) <= 7
        batches.append(batch)
        received += sum(frame_seq(f) is not None for f in batch)
    after = time.time_ns()
    frames = [bytes(f) for batch in batches for f in batch if frame_seq(f) is not None]
    assert frames == sent
    stamps = [ts for batch in batches for ts in batch.timestamps_ns]
    assert stamps
    assert all(before <= ts <= after for ts in stamps)
    # Frames are views into the batch's arena.
    first = batches[0]
    assert bytes(first) == b"".join(bytes(f) for f in first)


def test_received_batch_forwards_unchanged(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    sent = [make_frame(i, 64 + 50 * i) for i in range(10)]
    a.send_batch(sent)
    got, _ = recv_until([b], lambda f: frame_seq(f) is not None, len(sent))
    batch = vnetio.Batch.from_frames(got)
    assert b.send_batch(batch) == len(sent)
    assert recv_own(a, len(sent)) == sent


def test_stats_match_what_was_sent_and_received(bridge_pair: BridgePair, bridge_taps: Taps) -> None:
    a, b = bridge_taps
    ns = bridge_pair.ns
    sent = [make_frame(i, size) for i, size in enumerate(sizes(150))]
    for frame in sent[:50]:
        a.send(frame)
    a.send_batch(sent[50:])
    own, everything = recv_until([b], lambda f: frame_seq(f) is not None, len(sent))
    assert own == sent
    time.sleep(0.1)
    everything += b.recv_batch(timeout=0).to_list()
    sa, sb = a.stats(), b.stats()
    assert (sa.tx_frames, sa.tx_bytes) == (len(sent), sum(map(len, sent)))
    assert (sb.rx_frames, sb.rx_bytes) == (len(everything), sum(map(len, everything)))
    assert (sa.rx_errors, sa.tx_errors, sb.rx_errors, sb.tx_errors) == (0, 0, 0, 0)
    assert sb.rx_dropped == 0
    # The kernel saw the same: A received what vnetio wrote, B sent what vnetio read.
    kernel_a, kernel_b = ns.link(bridge_pair.a)["stats64"], ns.link(bridge_pair.b)["stats64"]
    assert kernel_a["rx"]["packets"] == len(sent)
    assert kernel_a["rx"]["bytes"] == sum(map(len, sent))
    assert kernel_b["tx"]["packets"] == len(everything)


def test_kernel_drop_counter_when_the_reader_falls_behind(bridge_pair: BridgePair) -> None:
    """B's ring holds txqueuelen frames; the rest are dropped and counted (pitfall 1)."""
    ns, ring = bridge_pair.ns, 16
    ns.ip("link", "set", "dev", bridge_pair.b, "txqueuelen", str(ring))
    with (
        vnetio.Tap(bridge_pair.a, netns=ns.name) as a,
        vnetio.Tap(bridge_pair.b, netns=ns.name) as b,
    ):
        bridge_pair.wait_forwarding()
        sent = [make_frame(i, 200) for i in range(200)]
        a.send_batch(sent)  # nobody reads B meanwhile
        time.sleep(0.2)
        kernel_before = ns.link(bridge_pair.b)["stats64"]["tx"]["dropped"]
        stats = b.stats()
        kernel_after = ns.link(bridge_pair.b)["stats64"]["tx"]["dropped"]
        own = recv_own(b, len(sent), timeout=1)
    assert len(own) <= ring
    assert own == sent[: len(own)]  # the ring keeps the first frames, drops the tail
    assert kernel_before >= len(sent) - len(own)
    assert kernel_before <= stats.rx_dropped <= kernel_after
    assert stats.rx_dropped + len(own) >= len(sent)


def test_drop_counter_counts_since_this_open(bridge_pair: BridgePair) -> None:
    ns = bridge_pair.ns
    ns.ip("link", "set", "dev", bridge_pair.b, "txqueuelen", "8")
    with vnetio.Tap(bridge_pair.a, netns=ns.name) as a:
        with vnetio.Tap(bridge_pair.b, netns=ns.name) as b:
            bridge_pair.wait_forwarding()
            a.send_batch([make_frame(i, 100) for i in range(50)])
            time.sleep(0.2)
            assert b.stats().rx_dropped > 0
        kernel = ns.link(bridge_pair.b)["stats64"]["tx"]["dropped"]
        assert kernel > 0
        with vnetio.Tap(bridge_pair.b, netns=ns.name) as again:
            assert again.stats().rx_dropped == 0
            assert again.stats().rx_frames == 0


def test_vlan_tagged_frame_may_carry_four_more_bytes(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    mtu = a.mtu
    # 802.1Q tag (TPID 0x8100, VID 5) in front of our EtherType: MTU + 18 bytes in all.
    tagged = DST_MAC + SRC_MAC + bytes.fromhex("81000005") + make_frame(7, mtu + 14)[12:]
    assert len(tagged) == mtu + 18
    a.send(tagged)
    got, _ = recv_until([b], lambda f: f[12:16] == tagged[12:16], 1)
    assert got == [tagged]
    with pytest.raises(ValueError):
        a.send(tagged + b"\0")
    with pytest.raises(ValueError):
        a.send(make_frame(8, mtu + 15))  # untagged: MTU + 14 is the limit


def test_blocked_recv_wakes_when_a_frame_arrives(bridge_taps: Taps) -> None:
    a, b = bridge_taps
    job = Background(lambda: recv_own(b, 1, timeout=30))
    time.sleep(0.3)
    sent_at = time.monotonic()
    a.send(make_frame(1, 60))
    assert job.join(5)
    assert job.value == [make_frame(1, 60)]
    assert job.done_at is not None
    assert job.done_at - sent_at < 1.0


def test_blocked_reader_does_not_block_a_writer_on_the_same_tap(bridge_taps: Taps) -> None:
    a, b = bridge_taps

    def read_until_closed() -> None:
        while True:  # nothing should come back to A; ends with AdapterClosedError
            a.recv_batch(timeout=None)

    job = Background(read_until_closed)
    time.sleep(0.2)
    sender = Background(lambda: a.send_batch([make_frame(i, 80) for i in range(20)]))
    assert sender.join(5), "send blocked behind a receive on the same adapter"
    assert sender.value == 20
    assert recv_own(b, 20) == [make_frame(i, 80) for i in range(20)]
    a.close()
    assert job.join(5)
    assert isinstance(job.error, vnetio.AdapterClosedError)
