"""A receive call on a TAP stops filling its batch at about 512 KiB of frames (the byte
budget that keeps two batches in a 1 MiB L2 cache; see ``RECV_BUDGET`` in src/batch.rs),
and nothing queued behind it is lost: the next calls return the rest, in order."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
import vnetio

from tests.conftest import BridgePair
from tests.packets import SRC_MAC, TCP_ACK, frame_seq, make_frame, tcp4_superframe

pytestmark = pytest.mark.privileged

#: What RECV_BUDGET and MAX_FRAME (src/batch.rs) are; README and the stubs quote the first.
BUDGET = 512 * 1024
MAX_FRAME = 65_535 + 14 + 8 + 12


def superframe(seq: int, payload: int = 65_000) -> tuple[bytes, dict[str, Any]]:
    """An Ethernet/IPv4/TCP super-frame (gso_size 1448, partial checksum) carrying TCP
    sequence number ``seq``, and its offload metadata."""
    return tcp4_superframe(bytes([seq % 251]) * payload, seq=seq, ident=seq, flags=TCP_ACK)


def tcp_seq(frame: bytes | memoryview) -> int | None:
    f = bytes(frame[:42])
    if f[6:12] != SRC_MAC or f[12:14] != b"\x08\x00" or len(f) < 42:
        return None
    return int(struct.unpack_from("!I", f, 38)[0])


def cut_by_budget(batch: vnetio.Batch) -> bool:
    """The batch holds at most BUDGET bytes, and one more frame of the largest size would
    not have fitted: the budget, not an empty ring, ended it."""
    total = sum(batch.lengths)
    return total <= BUDGET < total + MAX_FRAME


def test_superframes_come_in_batches_within_the_budget_and_none_is_lost(
    bridge_pair: BridgePair,
) -> None:
    sent = [superframe(seq) for seq in range(20)]
    ns = bridge_pair.ns.name
    with (
        vnetio.Tap(bridge_pair.b, netns=ns, offload=True, rx_mode="superframes") as b,
        vnetio.Tap(bridge_pair.a, netns=ns, offload=True) as a,
    ):
        bridge_pair.wait_forwarding()
        # A TAP write crosses the bridge into B's ring before it returns (tun_get_user
        # hands the frame to netif_receive_skb), so all 20 are queued now.
        batch = vnetio.Batch.from_frames([f for f, _ in sent], offload=[m for _, m in sent])
        assert a.send_batch(batch) == 20
        first = b.recv_batch(256, timeout=1)
        # 8 super-frames of 65 054 bytes (508 KiB), not the 20 queued (a stray frame of
        # the bridge's, if any, would be one more in the batch, not one of ours fewer).
        got = [tcp_seq(f) for f in first]
        assert sum(s is not None for s in got) == 8, list(first.lengths)
        assert cut_by_budget(first), list(first.lengths)
        deadline = time.monotonic() + 5
        while len(got) < 20 and time.monotonic() < deadline:
            rx = b.recv_batch(256, timeout=0.2)
            assert sum(rx.lengths) <= BUDGET
            got += [tcp_seq(f) for f in rx]
    assert [s for s in got if s is not None] == list(range(20))
    assert all(first.offload_info(i) is not None for i in range(len(first)))


def test_mtu_frames_fill_the_default_batch_and_the_budget_cuts_larger_ones(
    bridge_pair: BridgePair,
) -> None:
    sent = [make_frame(i, 1514) for i in range(700)]
    ns = bridge_pair.ns.name
    with vnetio.Tap(bridge_pair.b, netns=ns) as b, vnetio.Tap(bridge_pair.a, netns=ns) as a:
        bridge_pair.wait_forwarding()
        assert a.send_batch(sent) == 700  # all queued on B when this returns (see above)
        default = b.recv_batch(timeout=1)  # max_frames=256: 388 KiB, under the budget
        assert len(default) == 256 and sum(default.lengths) < BUDGET
        large = b.recv_batch(1000, timeout=1)  # 444 queued: 303 fit the budget
        assert cut_by_budget(large) and len(large) >= 300, list(large.lengths)
        got = [frame_seq(f) for f in default] + [frame_seq(f) for f in large]
        deadline = time.monotonic() + 5
        while sum(s is not None for s in got) < 700 and time.monotonic() < deadline:
            got += [frame_seq(f) for f in b.recv_batch(1000, timeout=0.2)]
    assert [s for s in got if s is not None] == list(range(700))
