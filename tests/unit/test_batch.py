"""vnetio.Batch: one arena, zero-copy read-only frame views, buffer protocol."""

from __future__ import annotations

import array
import ctypes
import gc
import random
from collections.abc import Callable

import pytest
import vnetio
from typing_extensions import Buffer
from vnetio import Batch

FRAMES = [random.Random(n).randbytes(size) for n, size in enumerate([60, 1, 1514, 333, 0, 64])]


@pytest.mark.parametrize(
    "convert",
    [bytes, bytearray, memoryview, lambda f: memoryview(bytearray(f))],
    ids=["bytes", "bytearray", "memoryview", "writable-memoryview"],
)
def test_from_frames_accepts_buffers(convert: Callable[[bytes], Buffer]) -> None:
    batch = Batch.from_frames([convert(f) for f in FRAMES])
    assert len(batch) == len(FRAMES)
    assert batch.to_list() == FRAMES


def test_from_frames_mixed_buffer_types_and_generator() -> None:
    batch = Batch.from_frames(
        (bytes(f), bytearray(f), memoryview(f))[i % 3] for i, f in enumerate(FRAMES)
    )
    assert batch.to_list() == FRAMES


class _Header(ctypes.BigEndianStructure):
    _pack_ = 1
    _fields_ = [("kind", ctypes.c_uint16), ("length", ctypes.c_uint32)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: array.array("I", range(16)),
        lambda: array.array("H", range(40)),
        lambda: memoryview(bytes(range(64))).cast("I"),
        lambda: _Header(0x88B5, 1514),
        lambda: (ctypes.c_uint8 * 30)(*range(30)),
    ],
    ids=["array-I", "array-H", "memoryview-cast-I", "ctypes-structure", "ctypes-array"],
)
def test_from_frames_accepts_any_contiguous_buffer(make: Callable[[], Buffer]) -> None:
    """Anything `bytes()` / `os.write` take as bytes-like is a frame: the contract is Buffer."""
    obj = make()
    assert Batch.from_frames([obj]).to_list() == [bytes(obj)]  # type: ignore[call-overload]


def test_from_frames_copies_strided_views_logically() -> None:
    source = bytes(range(100))
    assert Batch.from_frames([memoryview(source)[::3]]).to_list() == [source[::3]]


def test_from_frames_copies_the_input() -> None:
    source = bytearray(b"\x01" * 64)
    batch = Batch.from_frames([source])
    source[:] = b"\x02" * 64
    assert bytes(batch[0]) == b"\x01" * 64


def test_indexing_including_negative() -> None:
    batch = Batch.from_frames(FRAMES)
    for i, frame in enumerate(FRAMES):
        assert bytes(batch[i]) == frame
        assert bytes(batch[i - len(FRAMES)]) == frame
    assert bytes(batch[-1]) == FRAMES[-1]


@pytest.mark.parametrize("index", [len(FRAMES), len(FRAMES) + 10, -len(FRAMES) - 1, -100])
def test_index_out_of_range(index: int) -> None:
    batch = Batch.from_frames(FRAMES)
    with pytest.raises(IndexError):
        batch[index]


@pytest.mark.parametrize("index", [2**63, 2**70, -(2**70)])
def test_huge_index_is_an_index_error_like_any_sequence(index: int) -> None:
    """list, bytes and memoryview all raise IndexError here, not OverflowError."""
    with pytest.raises(IndexError):
        FRAMES[index]
    batch = Batch.from_frames(FRAMES)
    with pytest.raises(IndexError):
        batch[index]


@pytest.mark.parametrize("index", ["0", 1.0, None, slice(0, 1)])
def test_non_integer_index_is_a_type_error(index: object) -> None:
    with pytest.raises(TypeError):
        Batch.from_frames(FRAMES)[index]  # type: ignore[index]


def test_iteration_yields_read_only_memoryviews_equal_to_input() -> None:
    batch = Batch.from_frames(FRAMES)
    views = list(batch)
    assert len(views) == len(FRAMES)
    for view, frame in zip(views, FRAMES, strict=True):
        assert isinstance(view, memoryview)
        assert view.readonly
        assert view == frame
        assert view.nbytes == len(frame)
    with pytest.raises(TypeError):
        views[0][0] = 0


def test_indexed_view_is_read_only() -> None:
    batch = Batch.from_frames(FRAMES)
    view = batch[0]
    assert view.readonly
    with pytest.raises(TypeError):
        view[:1] = b"x"
    assert bytes(batch[0]) == FRAMES[0]


def test_frame_view_keeps_batch_alive() -> None:
    view = Batch.from_frames([b"\xab" * 100, b"\xcd" * 50])[1]
    gc.collect()
    assert bytes(view) == b"\xcd" * 50


def test_nbytes_and_lengths() -> None:
    batch = Batch.from_frames(FRAMES)
    assert batch.nbytes == sum(map(len, FRAMES))
    assert batch.lengths == [len(f) for f in FRAMES]


def test_timestamps_are_zero_for_frames_built_in_memory() -> None:
    batch = Batch.from_frames(FRAMES)
    assert batch.timestamps_ns == [0] * len(FRAMES)


def test_to_list_returns_bytes() -> None:
    out = Batch.from_frames(FRAMES).to_list()
    assert all(type(f) is bytes for f in out)
    assert out == FRAMES


def test_buffer_protocol_exports_the_whole_arena() -> None:
    batch = Batch.from_frames(FRAMES)
    arena = memoryview(batch)
    assert arena.readonly
    assert arena.nbytes == batch.nbytes
    assert arena.format == "B"
    assert arena.tobytes() == b"".join(FRAMES)
    with pytest.raises(TypeError):
        arena[0] = 1
    assert bytes(batch) == b"".join(FRAMES)
    arena.release()


def test_frame_views_are_slices_of_the_arena() -> None:
    batch = Batch.from_frames(FRAMES)
    arena = bytes(batch)
    offset = 0
    for view, length in zip(batch, batch.lengths, strict=True):
        assert view == arena[offset : offset + length]
        offset += length
    assert offset == len(arena)


@pytest.mark.parametrize("bad", [42, "a string", None, 3.5, [1, 2, 3]])
def test_non_buffer_frame_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        Batch.from_frames([b"\x00" * 20, bad])


def test_empty_batch() -> None:
    batch = Batch.from_frames([])
    assert len(batch) == 0
    assert list(batch) == []
    assert batch.nbytes == 0
    assert batch.lengths == []
    assert batch.timestamps_ns == []
    assert batch.to_list() == []
    assert bytes(batch) == b""
    assert memoryview(batch).nbytes == 0
    with pytest.raises(IndexError):
        batch[0]
    with pytest.raises(IndexError):
        batch[-1]


def test_batch_is_exported_from_vnetio() -> None:
    assert vnetio.Batch is vnetio._core.Batch
