"""``vnetio capture`` and ``vnetio replay``: tcpdump's and tcpreplay's habits on TUN/TAP.

``capture`` opens the adapter (or creates it with ``--create``) and runs the Rust capture
loop (:meth:`vnetio.capture.Writer.capture`) in slices of at most a quarter second, so it
can rotate files (``-C`` size, ``-G`` time, as tcpdump names them), refresh the status
line on a terminal, and stop cleanly on SIGINT or SIGTERM: the file is flushed and closed
complete, and a summary goes to stderr. Without ``-w`` it prints one line per frame,
decoded in Rust (:func:`vnetio.capture.summarize`).

``replay`` sends a capture into an adapter: at the capture's own pace (default), at a fixed
``--rate`` or as fast as the adapter takes frames (``--topspeed``).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

from vnetio.cli.running import ctrl_c_interrupts

if TYPE_CHECKING:
    from vnetio import Adapter
    from vnetio.capture import Writer

__all__ = ["COMMANDS", "add_parsers", "cmd_capture", "cmd_replay"]

STATUS_INTERVAL = 0.25


class Terminated(Exception):
    """SIGTERM arrived (raised by the handler, between capture slices)."""


def add_parsers(sub: Any) -> None:
    """Add ``capture`` and ``replay`` to the subcommands."""
    cap = sub.add_parser(
        "capture",
        help="capture frames from a TUN/TAP adapter to a pcapng/pcap file (like tcpdump)",
        description=(
            "Capture the frames that reach a TUN/TAP adapter, tcpdump style: -w writes a "
            "pcapng (or -F pcap) file that Wireshark reads; without -w one line per frame is "
            "printed. EXPRESSION is a tcpdump filter. The adapter is opened (attached): it "
            "must exist (vnetio create, ip tuntap add) and not be held by another process, "
            "unless --create makes a new one. Ctrl-C or SIGTERM stops with a summary and a "
            "complete file."
        ),
    )
    cap.add_argument("-i", dest="interface", required=True, metavar="IFACE", help="adapter name")
    cap.add_argument(
        "-w", dest="file", metavar="FILE", help="write frames to FILE (-: the standard output)"
    )
    cap.add_argument("-c", dest="count", type=int, metavar="COUNT", help="stop after COUNT frames")
    cap.add_argument(
        "-G",
        dest="rotate_seconds",
        type=float,
        metavar="SECONDS",
        help="start a new file every SECONDS (FILE may hold strftime patterns, e.g. %%H%%M%%S)",
    )
    cap.add_argument(
        "-C",
        dest="rotate_mb",
        type=float,
        metavar="MEGABYTES",
        help="start a new file when one reaches MEGABYTES x 1,000,000 bytes: FILE, FILE1, …",
    )
    cap.add_argument(
        "-s", dest="snaplen", type=int, default=262144, metavar="SNAPLEN", help="bytes kept"
    )
    cap.add_argument(
        "-F", dest="format", choices=("pcapng", "pcap"), default="pcapng", help="file format"
    )
    cap.add_argument(
        "--queue",
        type=int,
        metavar="FRAMES",
        help="raise the adapter's kernel queue (txqueuelen) to at least FRAMES while capturing, "
        "like tcpdump -B (default: 8192 when permitted; 0 leaves it alone)",
    )
    cap.add_argument(
        "--no-direct-io",
        dest="direct_io",
        action="store_false",
        help="write through the page cache (default: whole pages with O_DIRECT where the "
        "filesystem allows it; see the README)",
    )
    cap.add_argument("--create", action="store_true", help="create the adapter (removed at exit)")
    cap.add_argument("--tun", action="store_true", help="with --create: a TUN (default TAP)")
    cap.add_argument("--netns", metavar="NS", help="the adapter is in network namespace NS")
    cap.add_argument("expression", nargs="*", help="tcpdump filter expression")

    rep = sub.add_parser(
        "replay",
        help="send a pcapng/pcap file into a TUN/TAP adapter (like tcpreplay)",
        description=(
            "Send every frame of FILE into adapter IFACE: at the capture's own pace "
            "(default), at --rate frames per second, or --topspeed. The file's link type must "
            "match the adapter (Ethernet for a TAP, raw IP for a TUN)."
        ),
    )
    rep.add_argument("-i", dest="interface", required=True, metavar="IFACE", help="adapter name")
    rep.add_argument("file", metavar="FILE")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, metavar="PPS", help="frames per second")
    pace.add_argument("--topspeed", action="store_true", help="as fast as possible")
    rep.add_argument("--create", action="store_true", help="create the adapter (removed at exit)")
    rep.add_argument("--netns", metavar="NS", help="the adapter is in network namespace NS")


# -- shared --------------------------------------------------------------------------------


def _fail(command: str, message: str) -> int:
    print(f"vnetio {command}: {message}", file=sys.stderr)
    return 1


def _open_adapter(name: str, *, netns: str | None, create: bool, kind: str) -> Adapter:
    """Attach to adapter ``name`` (its kind from the kernel), or create it (``create``)."""
    import vnetio

    if create:
        cls = vnetio.Tun if kind == "tun" else vnetio.Tap
        adapter = cls(name, netns=netns)
        if adapter.created:
            adapter.up()
        return adapter
    found = [a for a in vnetio.list_adapters(netns=netns) if a.name == name]
    if not found:
        where = f" in namespace {netns}" if netns else ""
        raise LookupError(
            f"no TUN/TAP adapter named {name}{where}; create one with --create (or "
            f"`vnetio create {name} --tap`), or pick one from `vnetio list`"
        )
    cls = vnetio.Tun if found[0].mode == "tun" else vnetio.Tap
    return cls(name, netns=netns)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated (between capture slices), like Ctrl-C's KeyboardInterrupt."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _rate(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{n:.0f} "


class _Status:
    """The live one-line status on stderr: only on a terminal, a few times a second."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.start = self.last_t = time.monotonic()
        self.last = (0, 0)
        self.shown = False

    def update(self, frames: int, nbytes: int, tail: str, *, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        dt = now - self.last_t
        if dt < STATUS_INTERVAL and not force:
            return
        fps = (frames - self.last[0]) / dt if dt > 0 else 0.0
        mbps = (nbytes - self.last[1]) * 8 / dt / 1e6 if dt > 0 else 0.0
        self.last_t, self.last = now, (frames, nbytes)
        line = f"{now - self.start:7.1f} s  {_rate(fps)}frames/s  {mbps:8.1f} Mbit/s  {tail}"
        self.out.write("\r" + line + "\x1b[K")
        self.out.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()


# -- capture -------------------------------------------------------------------------------


@dataclass
class _Totals:
    written: int = 0
    nbytes: int = 0
    filtered: int = 0
    files: list[str] | None = None


class _Rotation:
    """File names as tcpdump makes them: strftime on FILE when -G is given; with -C a
    count suffix (FILE, FILE1, FILE2, …; with -G the count restarts each period)."""

    def __init__(self, pattern: str, *, seconds: float | None, megabytes: float | None) -> None:
        self.pattern = pattern
        self.seconds = seconds
        self.max_bytes = None if megabytes is None else max(1, int(megabytes * 1_000_000))
        self.index = 0
        self.period_start = time.time()

    def name(self) -> str:
        base = self.pattern
        if self.seconds is not None:
            base = time.strftime(base, time.localtime(self.period_start))
        return base if self.index == 0 else f"{base}{self.index}"

    def next_by_size(self) -> None:
        self.index += 1

    def next_by_time(self) -> None:
        self.index = 0
        self.period_start = time.time()

    def period_left(self) -> float | None:
        if self.seconds is None:
            return None
        return self.period_start + self.seconds - time.time()


def _check_capture_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.count is not None and args.count < 1:
        parser.error("-c COUNT must be at least 1")
    for flag, value in (("-G", args.rotate_seconds), ("-C", args.rotate_mb)):
        if value is not None and (not math.isfinite(value) or value <= 0):
            parser.error(f"{flag} must be a positive number")
        if value is not None and (not args.file or args.file == "-"):
            parser.error(f"{flag} rotates files: it needs -w FILE (not -w -)")
    if args.snaplen == 0:  # tcpdump's -s 0: whole frames
        args.snaplen = 262144
    if not 1 <= args.snaplen <= 262144:
        parser.error("-s SNAPLEN must be 1 to 262144 (libpcap's maximum), or 0 for 262144")
    if args.tun and not args.create:
        parser.error("--tun goes with --create (an existing adapter's kind comes from the kernel)")
    if args.queue is not None and args.queue < 0:
        parser.error("--queue FRAMES must be at least 1 (0 leaves the adapter's queue alone)")


def cmd_capture(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_capture_args(args, parser)
    queue: int | Literal["auto"] | None = "auto" if args.queue is None else (args.queue or None)
    expression = " ".join(args.expression) or None
    try:
        adapter = _open_adapter(
            args.interface, netns=args.netns, create=args.create, kind="tun" if args.tun else "tap"
        )
    except (OSError, ValueError, LookupError) as exc:
        return _fail("capture", f"{type(exc).__name__}: {exc}")
    from vnetio.capture import raised_queue

    with adapter, _stop_on_sigterm(), ctrl_c_interrupts():
        problem = _set_filter(adapter, expression)
        if problem is not None:
            return _fail("capture", problem)
        try:
            with raised_queue(adapter, queue):
                if args.file:
                    return _capture_to_files(adapter, args, expression)
                return _print_frames(adapter, args, expression)
        except OSError as exc:  # --queue N without CAP_NET_ADMIN
            return _fail("capture", f"{type(exc).__name__}: {exc}")


def _set_filter(adapter: Adapter, expression: str | None) -> str | None:
    """Put the capture filter on the adapter: in the kernel on a TAP (rejected frames
    never cross into userspace), else vnetio's interpreter; rejects are counted apart
    either way (rx_filtered). Returns what went wrong, or None."""
    if expression:
        try:
            adapter.set_filter(expression)
        except (OSError, ValueError) as exc:
            return f"filter {expression!r}: {exc}"
    return None


def _rejected(adapter: Adapter) -> int:
    """Frames the adapter's filter rejected so far (None, for a classic kernel filter, is
    reported as 0: those rejects are inside the kernel's drop count)."""
    return adapter.stats().rx_filtered or 0


def _summary(totals: _Totals, dropped: int, reason: str, out: TextIO) -> None:
    print(
        f"{totals.written} frames captured, {totals.filtered} filtered out, {dropped} dropped "
        f"by the kernel (queue full) — {reason}",
        file=out,
    )
    if dropped:
        print("  (a longer queue absorbs bursts: --queue FRAMES)", file=out)
    for name in totals.files or []:
        print(f"  {name}", file=out)


class _FileCapture:
    """The -w loop: a writer per file, rotated by size or time, totals across files."""

    def __init__(self, adapter: Adapter, args: argparse.Namespace, expression: str | None):
        self.adapter = adapter
        self.args = args
        self.expression = expression
        self.rotation = _Rotation(args.file, seconds=args.rotate_seconds, megabytes=args.rotate_mb)
        self.totals = _Totals(files=[])
        self.writer: Writer | None = None

    def open_next(self) -> Writer:
        from vnetio.capture import Writer

        # -w -: the standard output, as tcpdump (`vnetio capture -i vn0 -w - | tshark -r -`).
        name = "-" if self.args.file == "-" else self.rotation.name()
        self.writer = Writer(
            "/dev/stdout" if name == "-" else name,
            format=self.args.format,
            snaplen=self.args.snaplen,
            interface=self.adapter,
            filter=self.expression,
            direct_io=self.args.direct_io,
        )
        assert self.totals.files is not None
        self.totals.files.append(name)
        return self.writer

    def close(self) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            w.close()
            self.totals.written += w.frames
            self.totals.nbytes += w.bytes
            self.totals.filtered += w.filtered

    def run(self, status: _Status, base_dropped: int, base_filtered: int) -> str:
        """Capture until -c is reached (or an exception); returns why it stopped."""
        writer = self.open_next()
        rotation, count = self.rotation, self.args.count
        while True:
            left = None if count is None else count - self.totals.written - writer.frames
            if left is not None and left <= 0:
                return f"{count} frames"
            period = rotation.period_left()
            timeout = STATUS_INTERVAL if period is None else max(0.0, min(STATUS_INTERVAL, period))
            _, _, why = writer.capture(
                self.adapter, count=left, max_bytes=rotation.max_bytes, timeout=timeout
            )
            if why == "size":
                self.close()
                rotation.next_by_size()
                writer = self.open_next()
            elif period is not None and (rotation.period_left() or 0.0) <= 0:
                self.close()
                rotation.next_by_time()
                writer = self.open_next()
            t = self.totals
            stats = self.adapter.stats()
            dropped = stats.rx_dropped - base_dropped
            filtered = t.filtered + writer.filtered + (stats.rx_filtered or 0) - base_filtered
            status.update(
                t.written + writer.frames,
                t.nbytes + writer.bytes,
                f"written {t.written + writer.frames:,}  filtered {filtered:,}  lost {dropped:,}",
            )


def _capture_to_files(adapter: Adapter, args: argparse.Namespace, expression: str | None) -> int:
    job = _FileCapture(adapter, args, expression)
    status = _Status(sys.stderr)
    base_dropped, base_filtered = adapter.stats().rx_dropped, _rejected(adapter)
    code = 0
    try:
        reason = job.run(status, base_dropped, base_filtered)
    except KeyboardInterrupt:
        reason = "interrupted (SIGINT)"
    except Terminated:
        reason = "terminated (SIGTERM)"
    except (OSError, ValueError) as exc:
        reason = f"stopped by an error: {exc}"
        code = 1
    finally:
        try:
            job.close()
        except OSError as exc:
            reason = f"stopped by an error: {exc}"
            code = 1
    status.done()
    job.totals.filtered += _rejected(adapter) - base_filtered
    _summary(job.totals, adapter.stats().rx_dropped - base_dropped, reason, sys.stderr)
    return code


def _print_frames(adapter: Adapter, args: argparse.Namespace, expression: str | None) -> int:
    from vnetio.capture import summarize

    totals = _Totals()
    base_dropped, base_filtered = adapter.stats().rx_dropped, _rejected(adapter)
    reason = "done"
    out = sys.stdout
    offset = time.localtime().tm_gmtoff
    try:
        while args.count is None or totals.written < args.count:
            want = 256 if args.count is None else min(256, args.count - totals.written)
            batch = adapter.recv_batch(max_frames=want, timeout=STATUS_INTERVAL)
            if len(batch) == 0:
                continue
            if len(batch):
                out.write(summarize(batch, adapter.kind, offset))
                out.flush()
                totals.written += len(batch)
        reason = f"{args.count} frames"
    except KeyboardInterrupt:
        reason = "interrupted (SIGINT)"
    except Terminated:
        reason = "terminated (SIGTERM)"
    except BrokenPipeError:  # `vnetio capture -i vn0 | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        reason = "output closed"
    totals.filtered = _rejected(adapter) - base_filtered
    _summary(totals, adapter.stats().rx_dropped - base_dropped, reason, sys.stderr)
    return 0


# -- replay --------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vnetio.capture import Reader

    if args.rate is not None and (not math.isfinite(args.rate) or args.rate <= 0):
        parser.error("--rate must be a positive number of frames per second")
    try:
        reader = Reader(args.file)
    except (OSError, ValueError) as exc:
        return _fail("replay", f"{type(exc).__name__}: {exc}")
    with reader:
        kind = reader.kind
        if kind is None:
            return _fail(
                "replay",
                f"{args.file} holds link type {reader.linktype}; an adapter carries Ethernet "
                "(1, TAP) or raw IP (101, TUN) frames",
            )
        try:
            adapter = _open_adapter(args.interface, netns=args.netns, create=args.create, kind=kind)
        except (OSError, ValueError, LookupError) as exc:
            return _fail("replay", f"{type(exc).__name__}: {exc}")
        with adapter, _stop_on_sigterm(), ctrl_c_interrupts():
            if adapter.kind != kind:
                return _fail(
                    "replay",
                    f"{args.file} holds {'Ethernet' if kind == 'tap' else 'raw IP'} frames but "
                    f"{args.interface} is a {adapter.kind.upper()}; replay it into a "
                    f"{kind.upper()}",
                )
            return _replay(reader, adapter, args)


class _Sender:
    """Sends into the adapter and counts what went out, also when an error stops a call
    part-way (the error's ``sent``)."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.sent = self.nbytes = 0

    def send(self, frames: Any, frames_bytes: int) -> None:
        n = 0
        try:
            n = self.adapter.send_batch(frames)
        except OSError as exc:
            n = getattr(exc, "sent", 0) or 0
            raise
        finally:
            self.sent += n
            whole = n == len(frames)
            self.nbytes += frames_bytes if whole else sum(len(frames[k]) for k in range(n))

    def send_on_time(self, batch: Any, start: float, first_ts: int) -> None:
        """Send runs of frames that are due together; sleep until the next is due."""
        # A frame without a time (pcapng Simple Packet Block) goes with the one before it.
        times: list[int] = []
        for t in batch.timestamps_ns:
            times.append(t if t is not None else times[-1] if times else first_ts)
        i = 0
        while i < len(batch):
            _sleep_until(start + (times[i] - first_ts) / 1e9)
            now_rel = (time.monotonic() - start) * 1e9 + first_ts
            j = i + 1
            while j < len(batch) and times[j] <= now_rel:
                j += 1
            run = [batch[k] for k in range(i, j)]
            self.send(run, sum(len(f) for f in run))
            i = j


def _replay(reader: Any, adapter: Adapter, args: argparse.Namespace) -> int:
    status = _Status(sys.stderr)
    out = _Sender(adapter)
    reason = "end of file"
    code = 0
    start = time.monotonic()
    first_ts: int | None = None
    # --rate: small batches so the pace is smooth; otherwise what the file gives.
    chunk = 256 if args.rate is None else max(1, min(256, int(args.rate / 100)))
    try:
        while True:
            batch = reader.read_batch(chunk)
            if len(batch) == 0:
                break
            if args.rate is not None:
                _sleep_until(start + out.sent / args.rate)
                out.send(batch, batch.nbytes)
            elif args.topspeed:
                out.send(batch, batch.nbytes)
            else:
                if first_ts is None:  # the first frame with a time (0 when none has one)
                    first_ts = next((t for t in batch.timestamps_ns if t is not None), None)
                out.send_on_time(batch, start, first_ts or 0)
            status.update(out.sent, out.nbytes, f"sent {out.sent:,}")
    except KeyboardInterrupt:
        reason = "interrupted (SIGINT)"
    except Terminated:
        reason = "terminated (SIGTERM)"
    except (OSError, ValueError) as exc:
        reason = f"stopped by an error: {exc}"
        code = 1
    status.done()
    seconds = time.monotonic() - start
    print(
        f"{out.sent} frames sent ({out.nbytes} bytes) in {seconds:.2f} s into {adapter.name} "
        f"— {reason}",
        file=sys.stderr,
    )
    return code


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


#: The subcommands of this module and what runs each (see ``vnetio.cli.main``).
COMMANDS = {"capture": cmd_capture, "replay": cmd_replay}
