"""Receive helpers shared by the adapter tests (any vnetio adapter or queue)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tests.packets import frame_seq


class Receiver(Protocol):
    def recv_batch(self, max_frames: int = ..., timeout: float | None = ...) -> Any: ...


def recv_until(
    ends: Sequence[Receiver],
    keep: Callable[[bytes], bool],
    count: int,
    timeout: float = 5.0,
) -> tuple[list[bytes], list[bytes]]:
    """Read from ``ends`` until ``count`` frames pass ``keep`` or ``timeout`` passes.

    Returns (kept frames in arrival order, every frame read including noise)."""
    kept: list[bytes] = []
    everything: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(kept) < count and time.monotonic() < deadline:
        for end in ends:
            for frame in end.recv_batch(timeout=0.05 if len(ends) > 1 else 0.2).to_list():
                everything.append(frame)
                if keep(frame):
                    kept.append(frame)
    return kept, everything


def recv_own(end: Receiver, count: int, timeout: float = 5.0) -> list[bytes]:
    """Our test frames (see tests.packets.make_frame) read from ``end``, noise skipped."""
    return recv_until([end], lambda f: frame_seq(f) is not None, count, timeout)[0]


def drain(end: Receiver) -> list[bytes]:
    """Everything queued right now."""
    out: list[bytes] = []
    while batch := end.recv_batch(timeout=0).to_list():
        out.extend(batch)
    return out


class Background:
    """Run ``fn`` in a daemon thread; remember its result or exception and when it ended."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self.done_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        self.done_at = time.monotonic()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def blocked_then_closed(recv: Callable[[], object], close: Callable[[], None]) -> Background:
    """Start ``recv`` in a thread, check it blocks, call ``close`` and check it returns
    within a second; returns the finished job (its ``error`` is what recv raised)."""
    job = Background(recv)
    time.sleep(0.3)
    assert job.running, f"receive returned early: {job.value!r} {job.error!r}"
    closed_at = time.monotonic()
    close()
    assert job.join(5), "receive still blocked 5 s after close()"
    assert job.done_at is not None
    assert job.done_at - closed_at < 1.0
    return job
