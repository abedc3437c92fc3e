"""Bridge-loop child: scapy ``TunTapInterface`` ``send`` / ``recv``.

This is how scapy users drive a TAP: ``send`` builds the packet object into bytes on every
call and ``recv`` dissects every frame into an ``Ether`` object. The frame is prebuilt once
as ``Ether(frame_bytes)``. The reader waits with ``select.poll`` before each ``recv`` so that it
can stop when the writer is done (scapy's ``recv`` itself blocks).
"""

from __future__ import annotations

import logging
import select
import sys
import time

from _driver import Flag, Impl, serve

# Quiet scapy's "tap devices on Linux do not include packet info" warning, before import.
logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.layers.l2 import Ether
from scapy.layers.tuntap import TunTapInterface


class Scapy(Impl):
    name = "scapy"
    reader: TunTapInterface | None = None
    writer: TunTapInterface | None = None

    def open_reader(self, tap: str) -> None:
        self.reader = TunTapInterface(tap, mode_tun=False)
        self.poller = select.poll()
        self.poller.register(self.reader.fileno(), select.POLLIN)

    def open_writer(self, tap: str) -> None:
        self.writer = TunTapInterface(tap, mode_tun=False)
        self.packet = Ether(self.frame)

    def write_until(self, stop: Flag) -> tuple[int, int]:
        assert self.writer is not None
        send, packet = self.writer.send, self.packet
        written = errors = 0
        while not stop.value:
            # scapy logs and returns None instead of raising when a write fails.
            if send(packet) is None:
                errors += 1
            else:
                written += 1
        return written, errors

    def write_count(self, count: int) -> tuple[int, int]:
        assert self.writer is not None
        send, packet = self.writer.send, self.packet
        written = errors = 0
        while written < count and errors <= count:
            if send(packet) is None:
                errors += 1
            else:
                written += 1
        return written, errors

    def _own(self, pkt: object) -> bool:
        raw = getattr(pkt, "original", None) or b""
        return len(raw) == self.size and raw[6:14] == self.sig

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        assert self.reader is not None
        recv, poll = self.reader.recv, self.poller.poll
        own = other = 0
        fresh, t_end = True, time.perf_counter()
        while True:
            if not poll(0):
                if fresh:
                    fresh, t_end = False, time.perf_counter()
                if done.value:
                    break
                poll(100)
                continue
            fresh = True
            if self._own(recv()):
                own += 1
            else:
                other += 1
        return own, other, t_end

    def drain(self, count: int) -> tuple[int, int]:
        assert self.reader is not None
        recv, poll = self.reader.recv, self.poller.poll
        own = other = 0
        idle_since = 0.0
        while own < count:
            if not poll(0):
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since > 1.0:
                    break
                poll(100)
                continue
            idle_since = 0.0
            if self._own(recv()):
                own += 1
            else:
                other += 1
        return own, other

    def close(self) -> None:
        for dev in (self.reader, self.writer):
            if dev is not None:
                dev.close()


if __name__ == "__main__":
    sys.exit(serve(Scapy))
