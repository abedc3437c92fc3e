"""Child side of the benchmarks: what runs in a process of its own inside a benchmark's namespace.

**The bridge-loop protocol** (``serve``). Each implementation of ``benches/bridge_loop.py``
runs in its own process, started inside the benchmark's network namespace (``ip netns
exec``). It attaches its reader to TAP B first and its writer to TAP A, prints
``{"event": "ready", ...}`` and then answers one command per stdin line with one JSON line
on stdout:

``noise SECONDS``  read with the writer idle; count every frame and our own frames.
``run SECONDS``    the timed loop: an unpaced writer thread on A, a reader thread on B.
``write COUNT``    write COUNT frames (writer side; used to fill B's ring for the ceiling).
``drain COUNT``    time reading COUNT of our frames already queued on B (reader side).
``quit``           (or end of input) exit.

Interpreter start-up and imports happen before ``ready``, so they are never timed. A frame
counts as delivered only if it has the benchmark's size and carries our source MAC and
EtherType at bytes 6..14 (see ``vnetio._topology``); everything else is noise. The reader
keeps reading after the writer stops until its ring is empty, and the reader's seconds run
from the start of the phase to that moment: delivered/s is a receive rate.
``examples/native_bridge.rs --control`` speaks the same protocol.

**The read-and-count loop** of every one-frame-per-call peer (``os``, python-pytun, scapy)
is ``FrameImpl.read_until``; ``vnetio`` reads batches and has its own (``impls/vnetio_batch.py``).

Also here: ``open_tuntap`` (attach an fd to an existing adapter with TUNSETIFF, as a Python
program without a TUN/TAP library does), ``flood`` (the unpaced vnetio writer of the capture
and filter benchmarks), ``reply`` and ``restore_sigint``.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from vnetio import _topology as topology

#: Bytes asked of each read(): a full 1514-byte frame plus room for VLAN tags.
READ_SIZE = 2048
#: Not in ``_topology`` (it only builds TAPs); ``linux/if_tun.h``.
IFF_TUN = 0x0001


def reply(obj: dict[str, object]) -> None:
    """One JSON line on stdout, flushed: how every child answers its parent."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def restore_sigint() -> None:
    """Make SIGINT raise KeyboardInterrupt again, for a reader its parent stops with SIGINT.

    A shell that starts the benchmark in the background (no job control) hands its children
    SIGINT ignored, and the children inherit that.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def open_tuntap(name: str, *, tap: bool = True, nonblocking: bool = False) -> int:
    """Open /dev/net/tun and attach it to the existing adapter ``name`` (IFF_NO_PI).

    This is what a Python program without a TUN/TAP library writes: ``ioctl(TUNSETIFF)`` on
    a packed ``struct ifreq``. The caller owns (and closes) the returned fd.
    """
    flags = (topology.IFF_TAP if tap else IFF_TUN) | topology.IFF_NO_PI
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, topology.TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
        os.set_blocking(fd, not nonblocking)
    except BaseException:
        os.close(fd)
        raise
    return fd


def flood(tap: Any, batch: Any, seconds: float) -> None:
    """The unpaced writer of the capture and filter benchmarks (a vnetio ``Tap``).

    Says ``ready``, waits for any line on stdin (``go``), sends ``batch`` as fast as the
    kernel takes it for ``seconds`` and reports ``{"event": "done", "sent", "errors",
    "seconds"}``. A refused call counts the frames it did send (``OSError.sent``).
    """
    reply({"event": "ready"})
    sys.stdin.readline()
    send = tap.send_batch
    sent = errors = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        try:
            sent += send(batch)
        except OSError as exc:
            sent += getattr(exc, "sent", 0)
            errors += 1
    elapsed = time.perf_counter() - start
    reply({"event": "done", "sent": sent, "errors": errors, "seconds": elapsed})


class Flag:
    """A stop flag cheaper to test in a hot loop than ``threading.Event.is_set()``."""

    __slots__ = ("value",)

    def __init__(self, value: bool = False) -> None:
        self.value = value


class Impl:
    """One implementation under test; subclasses fill in the I/O methods.

    Counts are returned as tuples: writers ``(written, errors)``; ``read_until`` returns
    ``(own, other, t_end)`` where ``t_end`` is the ``time.perf_counter()`` at which the reader
    first found its ring empty after its last frame (so a final idle wait is not timed);
    ``drain`` returns ``(own, other)``.
    """

    name = "?"

    def __init__(self, size: int) -> None:
        self.size = size
        self.frame = topology.build_frame(size)
        self.sig = topology.frame_signature()
        #: what ``close`` calls, newest first: ``open_*`` register their device's close here
        self.on_close: list[Callable[[], object]] = []

    def open_reader(self, tap: str) -> None:
        raise NotImplementedError

    def open_writer(self, tap: str) -> None:
        raise NotImplementedError

    def write_until(self, stop: Flag) -> tuple[int, int]:
        raise NotImplementedError

    def write_count(self, count: int) -> tuple[int, int]:
        raise NotImplementedError

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        """Read until ``done`` is set *and* the ring is empty."""
        raise NotImplementedError

    def drain(self, count: int) -> tuple[int, int]:
        """Read until ``count`` own frames, or 1 s without any frame."""
        raise NotImplementedError

    def close(self) -> None:
        while self.on_close:
            self.on_close.pop()()


class FrameImpl(Impl):
    """A peer that moves one frame per call; ``open_reader``/``open_writer`` set:

    * ``read(src, READ_SIZE)``: one frame as bytes; raises ``OSError`` with ``EAGAIN`` when
      B's ring is empty (the reader's fd is non-blocking);
    * ``wait(ms)``: return when B is readable, or after ``ms`` milliseconds;
    * ``write(dst, payload)``: write one frame; raises ``OSError`` when the kernel refuses it.

    The calls are plain callables with their object passed explicitly (``os.read(fd, n)``,
    ``pytun.TunTapDevice.read(dev, n)``), so the timed loops make exactly the call the
    peer's own users write, with no Python wrapper in between.
    """

    read: Callable[[Any, int], bytes]
    src: Any
    wait: Callable[[int], object]
    write: Callable[[Any, Any], object]
    dst: Any
    payload: Any

    def write_until(self, stop: Flag) -> tuple[int, int]:
        write, dst, payload = self.write, self.dst, self.payload
        written = errors = 0
        while not stop.value:
            try:
                write(dst, payload)
                written += 1
            except OSError:
                errors += 1
        return written, errors

    def write_count(self, count: int) -> tuple[int, int]:
        # Not timed: fills B's ring before the ceiling's drain; gives up after `count` refusals.
        written = errors = 0
        while written < count and errors <= count:
            try:
                self.write(self.dst, self.payload)
            except OSError:
                errors += 1
            else:
                written += 1
        return written, errors

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        read, src, size, sig, wait = self.read, self.src, self.size, self.sig, self.wait
        own = other = 0
        fresh, t_end = True, time.perf_counter()
        while True:
            try:
                f = read(src, READ_SIZE)
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                if fresh:  # first time the ring was found empty since the last frame
                    fresh, t_end = False, time.perf_counter()
                if done.value:
                    break
                wait(100)
                continue
            fresh = True
            if len(f) == size and f[6:14] == sig:
                own += 1
            else:
                other += 1
        return own, other, t_end

    def drain(self, count: int) -> tuple[int, int]:
        # read_until with `done` already set reads what is queued and returns at the first
        # empty ring; frames still on their way get up to 1 s of silence to arrive.
        now_empty = Flag(True)
        own = other = 0
        idle_since = time.monotonic()
        while own < count:
            got, noise, _ = self.read_until(now_empty)
            own, other = own + got, other + noise
            if got or noise:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 1.0:
                break
            else:
                self.wait(100)
        return own, other


def _run(impl: Impl, seconds: float) -> dict[str, object]:
    stop, writer_done = Flag(), Flag()
    barrier = threading.Barrier(3)
    out: dict[str, object] = {}

    def writer() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        try:
            out["written"], out["write_errors"] = impl.write_until(stop)
        finally:
            out["write_seconds"] = time.perf_counter() - t0
            writer_done.value = True

    def reader() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        out["delivered"], out["noise"], t_end = impl.read_until(writer_done)
        out["seconds"] = t_end - t0

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(seconds)
    stop.value = True
    for t in threads:
        t.join()
    delivered = int(out["delivered"])  # type: ignore[call-overload]
    rate = delivered / float(out["seconds"])  # type: ignore[arg-type]
    return {"event": "run", "impl": impl.name, "size": impl.size, **out, "delivered_per_s": rate}


def _noise(impl: Impl, seconds: float) -> dict[str, object]:
    done = Flag()
    result: list[tuple[int, int, float]] = []
    t0 = time.perf_counter()
    t = threading.Thread(target=lambda: result.append(impl.read_until(done)))
    t.start()
    time.sleep(seconds)
    done.value = True
    t.join()
    own, other, _ = result[0]
    return {
        "event": "noise",
        "own": own,
        "frames": own + other,
        "seconds": time.perf_counter() - t0,
    }


def serve(impl_cls: type[Impl]) -> int:
    """Parse the common options, attach, print ``ready`` and obey commands until ``quit``."""
    parser = argparse.ArgumentParser(description=f"bridge-loop child: {impl_cls.name}")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tap-a", default="vnA")
    parser.add_argument("--tap-b", default="vnB")
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--reader-only", action="store_true")
    side.add_argument("--writer-only", action="store_true")
    args = parser.parse_args()

    impl = impl_cls(args.size)
    try:
        # Reader first: B needs an attached fd (carrier) before anything is written to A.
        if not args.writer_only:
            impl.open_reader(args.tap_b)
        if not args.reader_only:
            impl.open_writer(args.tap_a)
    except Exception as exc:  # noqa: BLE001 - reported as JSON, not as a traceback
        reply({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    reply({"event": "ready", "impl": impl.name, "pid": os.getpid()})
    for line in sys.stdin:
        words = line.split()
        cmd, arg = (words + ["", "0"])[:2]
        if cmd in ("quit", ""):
            break
        try:
            reply(_command(impl, cmd, arg))
        except Exception as exc:  # noqa: BLE001 - the parent reads errors as JSON lines
            reply({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
    impl.close()
    return 0


def _command(impl: Impl, cmd: str, arg: str) -> dict[str, object]:
    if cmd == "run":
        return _run(impl, float(arg))
    if cmd == "noise":
        return _noise(impl, float(arg))
    t0 = time.perf_counter()
    if cmd == "write":
        written, errors = impl.write_count(int(arg))
        seconds = time.perf_counter() - t0
        return {"event": "write", "written": written, "write_errors": errors, "seconds": seconds}
    if cmd == "drain":
        own, other = impl.drain(int(arg))
        seconds = time.perf_counter() - t0
        return {"event": "drain", "delivered": own, "noise": other, "seconds": seconds}
    return {"event": "error", "error": f"unknown command {cmd!r}"}
