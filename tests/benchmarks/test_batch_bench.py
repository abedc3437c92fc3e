"""pytest-benchmark micro-benchmarks of the in-memory paths (no privileges needed).

In `make test` they run once each as ordinary tests (``--benchmark-disable``), which checks
that they work; `make bench` runs them for real and prints the timings. Compare rows of
one run with each other (for example ``Batch.from_frames`` against building a list of
``bytes``), never against numbers from another machine or day.
"""

from __future__ import annotations

from typing import Any

import pytest
import vnetio

FRAME_SIZES = [64, 1514]


def frame(size: int) -> bytes:
    return b"\x02" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(size - 14)


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_batch_from_frames_256(benchmark: Any, size: int) -> None:
    frames = [frame(size)] * 256
    batch = benchmark(vnetio.Batch.from_frames, frames)
    assert len(batch) == 256 and batch.nbytes == 256 * size


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_list_of_bytes_256_baseline(benchmark: Any, size: int) -> None:
    """The pure-Python baseline for the row above: copying 256 frames into new bytes."""
    frames = [bytearray(frame(size))] * 256
    out = benchmark(lambda: [bytes(f) for f in frames])
    assert len(out) == 256


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_batch_iterate_256(benchmark: Any, size: int) -> None:
    batch = vnetio.Batch.from_frames([frame(size)] * 256)
    total = benchmark(lambda: sum(len(f) for f in batch))
    assert total == 256 * size


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_loopback_send_recv_batch_256(benchmark: Any, size: int) -> None:
    a, b = vnetio.loopback_pair(capacity=512)
    batch = vnetio.Batch.from_frames([frame(size)] * 256)

    def round_trip() -> int:
        a.send_batch(batch)
        return len(b.recv_batch(256, timeout=0))

    assert benchmark(round_trip) == 256
    assert b.stats().rx_dropped == 0
    a.close()
    b.close()


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_count_own_frames_256(benchmark: Any, size: int) -> None:
    """The bridge-loop reader's own-frame check per 256-frame batch (one 8-byte word column
    per frame). Native readers spend ~1 ns a frame on it; at ~40 ns (eight byte columns) it
    showed in the reader-only ceiling, so keep it far below that (BENCHMARKS.md)."""
    from vnetio import _topology

    batch = vnetio.Batch.from_frames([_topology.build_frame(size)] * 256)
    assert benchmark(_topology.count_own_frames, batch, size) == 256
