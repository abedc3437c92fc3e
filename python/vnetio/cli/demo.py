"""``vnetio demo``: pump frames from one adapter to another and show the rate live.

As root it builds a private "bridge loop" (a network namespace holding a bridge and two TAP
adapters, :class:`vnetio.KernelLoop`) and sends real frames through the kernel; without the
privileges for that, or with ``--loopback``, it runs the same pump over an in-memory
``vnetio.loopback_pair()`` and says why in one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from vnetio.cli.running import ctrl_c_interrupts

__all__ = ["COMMANDS", "add_parsers", "demo"]

BATCH = 256
SAMPLES = 3


def add_parsers(sub: Any) -> None:
    """Add ``demo`` to the subcommands."""
    parser = sub.add_parser(
        "demo",
        help="pump frames between two adapters and show the rate",
        description=(
            "Pump frames A -> B through vnetio batches for a few seconds, with a live rate, "
            "then decode a few received frames. As root: two TAP adapters on a bridge in a "
            "private network namespace, removed afterwards. Otherwise (or with --loopback): "
            "an in-memory loopback pair."
        ),
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to pump (3)")
    parser.add_argument("--size", type=int, default=1514, help="frame size in bytes (1514)")
    parser.add_argument(
        "--loopback", action="store_true", help="use the in-memory loopback pair even as root"
    )


def _cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not 60 <= args.size <= 1514:
        parser.error("--size must be between 60 and 1514 (an Ethernet frame at MTU 1500)")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    try:
        with ctrl_c_interrupts():
            return demo(seconds=args.seconds, size=args.size, loopback=args.loopback)
    except KeyboardInterrupt:
        print("\ninterrupted; adapters and namespace removed", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vnetio demo | head`; cleanup has already run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


@dataclass
class _Counters:
    written: int = 0
    write_errors: int = 0
    backpressure: int = 0  # QueueFullError from an in-memory queue (not a loss)
    delivered: int = 0  # our own frames
    foreign: int = 0  # anything else the reader saw
    delivered_bytes: int = 0
    samples: list[bytes] = field(default_factory=list)
    foreign_samples: list[bytes] = field(default_factory=list)
    error: BaseException | None = None


def demo(*, seconds: float = 3.0, size: int = 1514, loopback: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    from vnetio import _topology as topo

    out = sys.stdout
    if loopback:
        reason = "--loopback was given"
    else:
        ok, reason = topo.have_privileges()
        if ok:
            try:
                return _demo_tap(seconds, size, out)
            except (topo.TopologyError, PermissionError) as exc:
                reason = f"could not build the bridge loop ({exc})"
    print(f"vnetio demo: using an in-memory loopback pair because {reason}.", file=out)
    return _demo_loopback(seconds, size, out)


def _demo_tap(seconds: float, size: int, out: TextIO) -> int:
    from vnetio.kernel_loop import KernelLoop

    with KernelLoop(purpose="demo") as loop:
        print(
            f"vnetio demo: TAP {loop.a.name} -> bridge -> TAP {loop.b.name} in network "
            f"namespace {loop.netns}, {size}-byte frames, {seconds:g} s",
            file=out,
        )
        before = loop.kernel_counters("b")
        counters = _pump(loop.a, loop.b, seconds, size, out)
        after = loop.kernel_counters("b")
    dropped = after["tx_dropped"] - before["tx_dropped"]
    extra = f"; the kernel dropped {dropped:,} at the receiving TAP (its queue was full)"
    return _report(counters, seconds, size, out, extra)


def _demo_loopback(seconds: float, size: int, out: TextIO) -> int:
    import vnetio

    # overflow="error": a full queue pushes back on the writer (QueueFullError) instead of
    # dropping, so the rate shown is what the reader keeps up with.
    a, b = vnetio.loopback_pair(capacity=4096, overflow="error")
    with a, b:
        print(
            f"vnetio demo: loopback pair (capacity {a.capacity} frames, the writer waits when "
            f"it is full), {size}-byte frames, {seconds:g} s",
            file=out,
        )
        counters = _pump(a, b, seconds, size, out)
    extra = f"; the writer found the queue full {counters.backpressure:,} times and waited"
    return _report(counters, seconds, size, out, extra)


def _pump(a: Any, b: Any, seconds: float, size: int, out: TextIO) -> _Counters:
    """Writer thread: a.send_batch; reader thread: b.recv_batch; main thread: the rate line."""
    pump = _Pump(a, b, size)
    threads = [
        threading.Thread(target=pump.reader, name="vnetio-demo-reader", daemon=True),
        threading.Thread(target=pump.writer, name="vnetio-demo-writer", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        _live(pump.counters, seconds, size, out)
    finally:
        pump.stop.set()
        for t in threads:
            t.join(timeout=5)
    return pump.counters


class _Pump:
    def __init__(self, a: Any, b: Any, size: int) -> None:
        import vnetio
        from vnetio import _topology as topo

        self.a, self.b, self.size = a, b, size
        self.sig = topo.frame_signature()
        self.batch = vnetio.Batch.from_frames(topo.build_frame(size, seq=i) for i in range(BATCH))
        self.count_own = topo.count_own_frames
        self.counters = _Counters()
        self.stop = threading.Event()
        self.writer_done = threading.Event()

    def writer(self) -> None:
        from vnetio import QueueFullError

        c, send, batch = self.counters, self.a.send_batch, self.batch
        try:
            while not self.stop.is_set():
                try:
                    c.written += send(batch)
                except QueueFullError as exc:  # loopback: wait for the reader, then go on
                    c.written += exc.sent
                    c.backpressure += 1
                    time.sleep(0.0002)
                except OSError as exc:
                    c.written += int(getattr(exc, "sent", 0) or 0)
                    c.write_errors += 1
                    if c.write_errors > 100:
                        raise
        except Exception as exc:  # noqa: BLE001 - reported by _report
            c.error = exc
        finally:
            self.writer_done.set()

    def reader(self) -> None:
        c, recv, size, sig = self.counters, self.b.recv_batch, self.size, self.sig
        try:
            while True:
                finished = self.writer_done.is_set()
                try:
                    got = recv(BATCH, timeout=0 if finished else 0.1)
                except TimeoutError:
                    got = None
                if not got:
                    if finished:  # the writer had stopped and the queue is empty
                        return
                    continue
                own = self.count_own(got, size, sig)
                c.delivered += own
                c.delivered_bytes += own * size
                c.foreign += len(got) - own
                if len(c.samples) < SAMPLES or (own < len(got) and len(c.foreign_samples) < 2):
                    _keep_samples(got, size, sig, c)
        except Exception as exc:  # noqa: BLE001 - reported by _report
            c.error = exc


def _keep_samples(got: Any, size: int, sig: bytes, c: _Counters) -> None:
    for f in got:
        raw = bytes(f)
        if len(raw) == size and raw[6:14] == sig:
            if len(c.samples) < SAMPLES:
                c.samples.append(raw)
        elif len(c.foreign_samples) < 2:
            c.foreign_samples.append(raw)


def _live(c: _Counters, seconds: float, size: int, out: TextIO) -> None:
    """Show the rate: a carriage-return line ~4x/s on a terminal, else a line per second."""
    tty = out.isatty()
    interval = 0.25 if tty else 1.0
    start = last_t = time.monotonic()
    last_n = 0
    for now in _ticks(start, seconds, interval):
        n = c.delivered
        dt = now - last_t
        rate = (n - last_n) / dt if dt > 0 else 0.0
        last_t, last_n = now, n
        written = c.written
        loss = 1 - n / written if written else 0.0
        line = (
            f"{now - start:5.2f} s  {_human(rate)} frames/s  {rate * size * 8 / 1e9:6.2f} Gbit/s  "
            f"loss {max(loss, 0.0) * 100:5.2f}%  delivered {n:,} of {written:,}"
        )
        if tty:
            out.write("\r" + line + "\x1b[K")
        else:
            out.write(line + "\n")
        out.flush()
        if c.error is not None:
            break
    if tty:
        out.write("\n")


def _ticks(start: float, seconds: float, interval: float) -> Iterator[float]:
    """Yield the time every ``interval`` seconds, and once more at the end (no later)."""
    end = start + seconds
    while True:
        time.sleep(max(0.0, min(interval, end - time.monotonic())))
        now = time.monotonic()
        yield now
        if now >= end:
            return


def _human(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:6.2f} M"
    return f"{rate / 1e3:6.1f} k"


def _report(c: _Counters, seconds: float, size: int, out: TextIO, extra: str) -> int:
    from vnetio import _topology as topo

    if c.error is not None:
        print(f"vnetio demo: failed: {type(c.error).__name__}: {c.error}", file=out)
        return 1
    loss = 1 - c.delivered / c.written if c.written else 0.0
    print(
        f"sent {c.written:,} frames, received {c.delivered:,} "
        f"({c.delivered / seconds:,.0f} frames/s, {c.delivered_bytes * 8 / seconds / 1e9:.2f} "
        f"Gbit/s), loss {loss * 100:.2f}%{extra}",
        file=out,
    )
    if c.foreign:
        print(f"also received {c.foreign:,} frames that were not ours", file=out)
    if c.samples:
        print("first frames received:", file=out)
        for raw in c.samples:
            print("  " + topo.decode_frame(raw), file=out)
    for raw in c.foreign_samples:
        print("  not ours: " + topo.decode_frame(raw), file=out)
    if c.delivered == 0:
        print("vnetio demo: no frame arrived", file=out)
        return 1
    return 0


#: The subcommands of this module and what runs each (see ``vnetio.cli.main``).
COMMANDS = {"demo": _cmd_demo}
