"""Bridge-loop child: vnetio batches driven from Python.

The writer thread calls ``a.send_batch(batch)`` with one prebuilt
``vnetio.Batch.from_frames([frame] * 256)``; the reader thread calls
``b.recv_batch(256, timeout=0.1)``. Both calls release the GIL while in the kernel, so the
two threads run in parallel. The process already runs inside the benchmark's namespace, so
``vnetio.Tap(name)`` attaches to the existing persistent TAP there.

Counting our own frames must not cost a Python loop per frame, or the benchmark would
measure the counting: ``_topology.count_own_frames`` checks the signature bytes of a whole
batch as strided columns of its arena (C-level slicing and comparison) and falls back to a
frame-by-frame check only for a batch with foreign frames mixed in.
"""

from __future__ import annotations

import os
import sys
import time

import vnetio
from vnetio import _topology as topology

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/
from harness.child import Flag, Impl, serve

BATCH = 256


class VnetioBatch(Impl):
    name = "vnetio"
    a: vnetio.Tap | None = None
    b: vnetio.Tap | None = None

    def open_reader(self, tap: str) -> None:
        self.b = vnetio.Tap(tap)
        self.on_close.append(self.b.close)

    def open_writer(self, tap: str) -> None:
        self.a = vnetio.Tap(tap)
        self.on_close.append(self.a.close)
        self.batch = vnetio.Batch.from_frames([self.frame] * BATCH)

    def count_own(self, batch: vnetio.Batch) -> int:
        return int(topology.count_own_frames(batch, self.size, self.sig))

    def write_until(self, stop: Flag) -> tuple[int, int]:
        assert self.a is not None
        send, batch = self.a.send_batch, self.batch
        written = errors = 0
        while not stop.value:
            try:
                written += send(batch)
            except OSError as exc:
                written += getattr(exc, "sent", 0)
                errors += 1
        return written, errors

    def write_count(self, count: int) -> tuple[int, int]:
        assert self.a is not None
        send, batch = self.a.send_batch, self.batch
        written = errors = 0
        while written < count and errors <= count:
            todo = count - written
            try:
                written += send(batch if todo >= BATCH else [self.frame] * todo)
            except OSError as exc:
                written += getattr(exc, "sent", 0)
                errors += 1
        return written, errors

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        assert self.b is not None
        recv, count_own, clock = self.b.recv_batch, self.count_own, time.perf_counter
        own = other = 0
        fresh, t_end = True, clock()
        while True:
            finished = done.value
            t_call = clock()
            try:
                batch = recv(BATCH, timeout=0 if finished else 0.1)
            except TimeoutError:
                batch = None
            if not batch:
                if fresh:  # first time the ring was found empty since the last frame
                    fresh, t_end = False, t_call
                if finished:
                    break
                continue
            fresh = True
            k = count_own(batch)
            own += k
            other += len(batch) - k
        return own, other, t_end

    def drain(self, count: int) -> tuple[int, int]:
        assert self.b is not None
        recv, count_own = self.b.recv_batch, self.count_own
        own = other = 0
        while own < count:
            try:
                batch = recv(min(BATCH, count - own), timeout=1.0)
            except TimeoutError:
                break
            if not batch:
                break
            k = count_own(batch)
            own += k
            other += len(batch) - k
        return own, other


if __name__ == "__main__":
    sys.exit(serve(VnetioBatch))
