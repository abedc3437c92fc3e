"""Bridge-loop child: scapy ``TunTapInterface`` ``send`` / ``recv``.

This is how scapy users drive a TAP: ``send`` builds the packet object into bytes on every
call and ``recv`` dissects every frame into an ``Ether`` object. The frame is prebuilt once
as ``Ether(frame_bytes)``. The reader waits with ``select.poll`` before each ``recv`` so that it
can stop when the writer is done (scapy's ``recv`` itself blocks). The loops are
``harness.child.FrameImpl``'s; scapy needs the two small adapters below (a poll before
``recv``, and ``send`` returning None instead of raising), which cost nothing next to
scapy's own per-frame work.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/
from harness.child import FrameImpl, serve

# Quiet scapy's "tap devices on Linux do not include packet info" warning, before import.
logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.l2 import Ether
from scapy.layers.tuntap import TunTapInterface


class Scapy(FrameImpl):
    name = "scapy"

    def attach(self, tap: str) -> TunTapInterface:
        iface = TunTapInterface(tap, mode_tun=False)  # type: ignore[no-untyped-call]
        self.on_close.append(iface.close)
        return iface

    def open_reader(self, tap: str) -> None:
        iface = self.attach(tap)
        self.poller = select.poll()
        self.poller.register(iface.fileno(), select.POLLIN)
        self.read, self.src, self.wait = self._recv, iface, self.poller.poll

    def open_writer(self, tap: str) -> None:
        iface = self.attach(tap)
        self.write, self.dst, self.payload = self._send, iface, Ether(self.frame)

    def _recv(self, iface: TunTapInterface, _size: int) -> bytes:
        """The bytes of the next frame, dissected by ``recv``; EAGAIN when none is queued."""
        if not self.poller.poll(0):
            raise BlockingIOError(errno.EAGAIN, "no frame queued")
        return getattr(iface.recv(), "original", None) or b""

    @staticmethod
    def _send(iface: TunTapInterface, packet: Ether) -> None:
        # scapy logs and returns None instead of raising when a write fails.
        if iface.send(packet) is None:
            raise OSError("scapy send failed")


if __name__ == "__main__":
    sys.exit(serve(Scapy))
