"""Bridge-loop child: Python ``os.write`` / ``os.read`` on fds attached with TUNSETIFF by hand.

One frame per system call. The fds are opened on ``/dev/net/tun`` and attached to the
existing persistent TAPs with ``fcntl.ioctl(fd, TUNSETIFF, ifreq)`` (IFF_TAP | IFF_NO_PI,
``harness.child.open_tuntap``); the reader's fd is non-blocking and waits in
``select.poll`` when its ring is empty. The loops are ``harness.child.FrameImpl``'s, calling
``os.read(fd, 2048)`` and ``os.write(fd, frame)``.
"""

from __future__ import annotations

import functools
import os
import select
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/
from harness.child import FrameImpl, open_tuntap, serve


class OsFd(FrameImpl):
    name = "os"

    def open_reader(self, tap: str) -> None:
        fd = open_tuntap(tap, nonblocking=True)
        self.on_close.append(functools.partial(os.close, fd))
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        self.read, self.src, self.wait = os.read, fd, poller.poll

    def open_writer(self, tap: str) -> None:
        fd = open_tuntap(tap)
        self.on_close.append(functools.partial(os.close, fd))
        self.write, self.dst, self.payload = os.write, fd, self.frame


if __name__ == "__main__":
    sys.exit(serve(OsFd))
