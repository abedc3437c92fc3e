"""Bridge-loop child: python-pytun ``TunTapDevice.write`` / ``read``, one frame per call.

``TunTapDevice(name, flags=IFF_TAP | IFF_NO_PI)`` attaches to the existing persistent TAP.
python-pytun's ``read`` blocks and cannot be interrupted, so the reader's fd is switched to
non-blocking with ``fcntl`` and waits in ``select.poll`` when its ring is empty.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import time

import pytun
from _driver import Flag, Impl, serve

READ_SIZE = 2048


class PyTun(Impl):
    name = "pytun"
    reader: pytun.TunTapDevice | None = None
    writer: pytun.TunTapDevice | None = None

    def open_reader(self, tap: str) -> None:
        self.reader = pytun.TunTapDevice(name=tap, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        os.set_blocking(self.reader.fileno(), False)
        self.poller = select.poll()
        self.poller.register(self.reader.fileno(), select.POLLIN)

    def open_writer(self, tap: str) -> None:
        self.writer = pytun.TunTapDevice(name=tap, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)

    def write_until(self, stop: Flag) -> tuple[int, int]:
        assert self.writer is not None
        write, frame = self.writer.write, self.frame
        written = errors = 0
        while not stop.value:
            try:
                write(frame)
                written += 1
            except pytun.Error:
                errors += 1
        return written, errors

    def write_count(self, count: int) -> tuple[int, int]:
        assert self.writer is not None
        write, frame = self.writer.write, self.frame
        written = errors = 0
        while written < count and errors <= count:
            try:
                write(frame)
                written += 1
            except pytun.Error:
                errors += 1
        return written, errors

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        assert self.reader is not None
        read, size, sig, poll = self.reader.read, self.size, self.sig, self.poller.poll
        own = other = 0
        fresh, t_end = True, time.perf_counter()
        while True:
            try:
                f = read(READ_SIZE)
            except pytun.Error as exc:
                if exc.args[0] != errno.EAGAIN:
                    raise
                if fresh:
                    fresh, t_end = False, time.perf_counter()
                if done.value:
                    break
                poll(100)
                continue
            fresh = True
            if len(f) == size and f[6:14] == sig:
                own += 1
            else:
                other += 1
        return own, other, t_end

    def drain(self, count: int) -> tuple[int, int]:
        assert self.reader is not None
        read, size, sig, poll = self.reader.read, self.size, self.sig, self.poller.poll
        own = other = 0
        idle_since = 0.0
        while own < count:
            try:
                f = read(READ_SIZE)
            except pytun.Error as exc:
                if exc.args[0] != errno.EAGAIN:
                    raise
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since > 1.0:
                    break
                poll(100)
                continue
            idle_since = 0.0
            if len(f) == size and f[6:14] == sig:
                own += 1
            else:
                other += 1
        return own, other

    def close(self) -> None:
        for dev in (self.reader, self.writer):
            if dev is not None:
                dev.close()


if __name__ == "__main__":
    sys.exit(serve(PyTun))
