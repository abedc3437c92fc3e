"""Bridge-loop child: Python ``os.write`` / ``os.read`` on fds attached with TUNSETIFF by hand.

One frame per system call. The fds are opened on ``/dev/net/tun`` and attached to the
existing persistent TAPs with ``fcntl.ioctl(fd, TUNSETIFF, ifreq)`` (IFF_TAP | IFF_NO_PI);
the reader's fd is non-blocking and waits in ``select.poll`` when its ring is empty.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import sys
import time

from _driver import Flag, Impl, serve, topology

READ_SIZE = 2048  # a full 1514-byte frame plus room for VLAN tags


def attach_tap(name: str, *, nonblocking: bool) -> int:
    """Open /dev/net/tun and attach it to the TAP ``name`` (IFF_TAP | IFF_NO_PI)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifreq = struct.pack("16sH22x", name.encode(), topology.IFF_TAP | topology.IFF_NO_PI)
        fcntl.ioctl(fd, topology.TUNSETIFF, ifreq)
        os.set_blocking(fd, not nonblocking)
    except BaseException:
        os.close(fd)
        raise
    return fd


class OsFd(Impl):
    name = "os"
    rfd = -1
    wfd = -1

    def open_reader(self, tap: str) -> None:
        self.rfd = attach_tap(tap, nonblocking=True)
        self.poller = select.poll()
        self.poller.register(self.rfd, select.POLLIN)

    def open_writer(self, tap: str) -> None:
        self.wfd = attach_tap(tap, nonblocking=False)

    def write_until(self, stop: Flag) -> tuple[int, int]:
        fd, frame, write = self.wfd, self.frame, os.write
        written = errors = 0
        while not stop.value:
            try:
                write(fd, frame)
                written += 1
            except OSError:
                errors += 1
        return written, errors

    def write_count(self, count: int) -> tuple[int, int]:
        fd, frame, write = self.wfd, self.frame, os.write
        written = errors = 0
        while written < count and errors <= count:
            try:
                write(fd, frame)
                written += 1
            except OSError:
                errors += 1
        return written, errors

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        fd, size, sig, read, poll = self.rfd, self.size, self.sig, os.read, self.poller.poll
        own = other = 0
        fresh, t_end = True, time.perf_counter()
        while True:
            try:
                f = read(fd, READ_SIZE)
            except BlockingIOError:
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
        fd, size, sig, read, poll = self.rfd, self.size, self.sig, os.read, self.poller.poll
        own = other = 0
        idle_since = 0.0
        while own < count:
            try:
                f = read(fd, READ_SIZE)
            except BlockingIOError:
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
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                os.close(fd)


if __name__ == "__main__":
    sys.exit(serve(OsFd))
