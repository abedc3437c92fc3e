"""Bridge-loop child: python-pytun ``TunTapDevice.write`` / ``read``, one frame per call.

``TunTapDevice(name, flags=IFF_TAP | IFF_NO_PI)`` attaches to the existing persistent TAP.
python-pytun's ``read`` blocks and cannot be interrupted, so the reader's fd is switched to
non-blocking with ``fcntl`` and waits in ``select.poll`` when its ring is empty (``read``
then raises ``pytun.Error``, an ``OSError`` with ``EAGAIN``). The loops are
``harness.child.FrameImpl``'s, calling ``TunTapDevice.read(dev, 2048)`` and
``TunTapDevice.write(dev, frame)`` (the unbound C methods: the same call as ``dev.read``).
"""

from __future__ import annotations

import os
import select
import sys

import pytun  # type: ignore[import-not-found]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/
from harness.child import FrameImpl, serve


class PyTun(FrameImpl):
    name = "pytun"

    def attach(self, tap: str) -> pytun.TunTapDevice:
        dev = pytun.TunTapDevice(name=tap, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        self.on_close.append(dev.close)
        return dev

    def open_reader(self, tap: str) -> None:
        dev = self.attach(tap)
        os.set_blocking(dev.fileno(), False)
        poller = select.poll()
        poller.register(dev.fileno(), select.POLLIN)
        self.read, self.src, self.wait = pytun.TunTapDevice.read, dev, poller.poll

    def open_writer(self, tap: str) -> None:
        dev = self.attach(tap)
        self.write, self.dst, self.payload = pytun.TunTapDevice.write, dev, self.frame


if __name__ == "__main__":
    sys.exit(serve(PyTun))
