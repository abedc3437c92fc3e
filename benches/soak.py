#!/usr/bin/env python3
"""Soak: 10^8 frames through the bridge loop and 10^8 through an in-memory loopback pair,
with a receive-side filter and capture on, watching memory, descriptors and every frame.

Each pair runs in this one process: a writer thread sends one prebuilt Batch of 256
64-byte frames (sequence numbers 0..255) into the first adapter over and over until
``--frames`` were sent; the main thread captures from the second adapter with
``Writer.capture`` (the Rust loop ``capture_to`` runs) into a new pcapng file every
``--rotate`` seconds. The adapter's filter (``set_filter``: in the kernel on the TAP, vnetio's
interpreter on the loopback) passes the quarter of our frames whose sequence number is a
multiple of 4, and every frame that is not ours (the kernel's own, if any); the capture
raises B's kernel queue as ``capture_to`` does. A helper thread reads each finished file
back (``Reader``: its frame count must be what the writer said; ours and others counted)
and deletes it.

After each file, with no file being read back, the process's RSS (``VmRSS``,
``/proc/self/status``) and open descriptors (``/proc/self/fd``) are sampled. Pass
criteria, after the warm-up (the first ``--warmup`` of the frames, at least two files):

* RSS grows by no more than 1 MiB: the median of the last fifth of the samples after the
  warm-up against the median of the first fifth (a sample now and then is a few MiB off
  either way, with the capture buffers the allocator keeps at that moment), with the band
  of all samples reported beside it;
* the number of descriptors does not change at all;
* every frame is accounted for: frames ours in the files + frames the filter rejected
  (``rx_filtered``) + frames dropped for a full queue (``rx_dropped``) = frames sent, the
  files hold every frame the capture read (``rx_frames``), and when nothing was dropped
  exactly a quarter of the frames sent are in the files.

The writer is paced by default (it keeps at most ``--window`` frames in flight, so the
capture path sees every frame rather than a full ring's drops); ``--unpaced`` floods, and
the kernel's drops (or the loopback's) then carry most of the accounting.

Usage (root for the bridge loop): ``python benches/soak.py [--frames 100000000]
[--pairs bridge,loopback] [--out F] [--json F]``; ``make soak`` runs it with 10^8.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import vnetio
from harness import cli
from harness.procs import log
from harness.report import command_line, emit, table_head, table_row
from vnetio._topology import SRC_MAC, BridgeLoop, build_frame
from vnetio.capture import Reader, Writer, raised_queue

SIZE = 64
BATCH = 256
#: Ours whose sequence number is a multiple of 4, and whatever is not ours.
FILTER = f"not ether src {SRC_MAC} or ether[21] & 3 = 0"
OURS = f"ether src {SRC_MAC}"
RSS_LIMIT_KIB = 1024


def frames_batch() -> vnetio.Batch:
    return vnetio.Batch.from_frames(build_frame(SIZE, seq=i) for i in range(BATCH))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> dict[int, str]:
    """This process's open descriptors and what they are (``/proc/self/fd``)."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the one listdir itself used is gone by now
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


@dataclass
class Sample:
    """One sample, taken after a file was finished and read back."""

    t: float
    sent: int
    rss_kib: int
    fds: int


@dataclass
class Result:
    pair: str
    frames: int
    paced: bool
    seconds: float = 0.0
    sent: int = 0
    send_errors: int = 0
    rx_frames: int = 0
    rx_filtered: int = 0
    rx_dropped: int = 0
    written: int = 0
    ours_in_files: int = 0
    others_in_files: int = 0
    files: int = 0
    file_errors: list[str] = field(default_factory=list)
    #: Descriptors open at a sample but not at the end of the warm-up (or the reverse),
    #: and whether they were still so 0.1 s later.
    fd_events: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    warmup_index: int = 0

    # -- the verdicts ---------------------------------------------------------------------

    @property
    def after_warmup(self) -> list[Sample]:
        return self.samples[self.warmup_index :]

    @property
    def rss_growth_kib(self) -> int:
        """How much the typical RSS rose: the median of the last fifth of the samples after
        the warm-up minus the median of the first fifth (at least 3 samples each). Not
        single samples: the allocator keeps a few freed 1 MiB capture buffers for reuse at
        times and not at others, which moves a sample now and then by a few MiB either way
        and back; a leak moves the median."""
        s = [x.rss_kib for x in self.after_warmup]
        k = max(3, len(s) // 5)
        return int(statistics.median(s[-k:]) - statistics.median(s[:k])) if len(s) >= 2 else 0

    @property
    def rss_band_kib(self) -> tuple[int, int]:
        """Lowest and highest sample after the warm-up."""
        s = [x.rss_kib for x in self.after_warmup] or [0]
        return min(s), max(s)

    @property
    def fd_change(self) -> int:
        s = self.after_warmup
        return max(abs(x.fds - s[0].fds) for x in s) if s else 0

    @property
    def unaccounted(self) -> int:
        """Frames sent minus those in the files, filtered and dropped (0: all accounted)."""
        return self.sent - (self.ours_in_files + self.rx_filtered + self.rx_dropped)

    def failures(self) -> list[str]:
        why = []
        if len(self.after_warmup) < 2:
            why.append(f"only {len(self.after_warmup)} samples after the warm-up")
        if self.rss_growth_kib > RSS_LIMIT_KIB:
            why.append(f"the median RSS rose by {self.rss_growth_kib} KiB after the warm-up")
        if self.fd_change:
            why.append(f"open descriptors changed by {self.fd_change} after the warm-up")
        if self.unaccounted:
            why.append(f"{self.unaccounted:+,} frames sent but not accounted for")
        if self.written != self.rx_frames:
            why.append(f"files hold {self.written:,} frames, the capture read {self.rx_frames:,}")
        if self.rx_dropped == 0 and self.ours_in_files * 4 != self.sent:
            why.append(
                f"{self.ours_in_files:,} of ours in the files, not a quarter of {self.sent:,}"
            )
        if self.sent < self.frames:
            why.append(f"sent {self.sent:,} of {self.frames:,}")
        why += self.file_errors
        return why

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            rss_growth_kib=self.rss_growth_kib,
            rss_band_kib=self.rss_band_kib,
            fd_change=self.fd_change,
            unaccounted=self.unaccounted,
            failures=self.failures(),
        )
        return d


# -- the pairs -------------------------------------------------------------------------------


@contextlib.contextmanager
def bridge_pair() -> Iterator[tuple[vnetio.Tap, vnetio.Tap]]:
    with BridgeLoop("soak") as loop:
        b = vnetio.Tap(loop.tap_b, netns=loop.netns)  # the reader first (TAP-FACTS pitfall 4)
        a = vnetio.Tap(loop.tap_a, netns=loop.netns)
        try:
            loop.wait_forwarding()
            yield a, b
        finally:
            a.close()
            b.close()


@contextlib.contextmanager
def loopback_pair() -> Iterator[tuple[vnetio.Loopback, vnetio.Loopback]]:
    a, b = vnetio.loopback_pair(capacity=8192, kind="tap", overflow="drop")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


class Sender(threading.Thread):
    """Sends the batch into ``a`` until ``frames`` were sent; paced: at most ``window``
    frames sent and not yet taken by ``b``'s reader, its filter or a drop."""

    def __init__(
        self, a: vnetio.Adapter, b: vnetio.Adapter, frames: int, window: int | None
    ) -> None:
        super().__init__(name="soak-sender", daemon=True)
        self.a, self.b, self.frames, self.window = a, b, frames, window
        self.sent = self.errors = 0
        self.error: BaseException | None = None
        self.stop = False

    def taken(self, base: dict[str, int]) -> int:
        s = self.b.stats()
        return (
            s.rx_frames - base["rx_frames"]
            + (s.rx_filtered or 0) - base["rx_filtered"]
            + s.rx_dropped - base["rx_dropped"]
        )  # fmt: skip

    def run(self) -> None:
        batch, send = frames_batch(), self.a.send_batch
        base = counters(self.b)
        taken = 0  # as last read: stats() reads kernel counters, not done per batch
        try:
            while self.sent < self.frames and not self.stop:
                if self.window is not None and self.sent - taken > self.window:
                    taken = self.taken(base)
                    if self.sent - taken > self.window:
                        time.sleep(0.0002)
                        continue
                try:
                    self.sent += send(batch)
                except OSError as exc:  # e.g. ENOBUFS: count what went out, go on
                    self.sent += getattr(exc, "sent", 0)
                    self.errors += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


def counters(adapter: vnetio.Adapter) -> dict[str, int]:
    s = adapter.stats()
    return {
        "rx_frames": s.rx_frames,
        "rx_filtered": s.rx_filtered or 0,
        "rx_dropped": s.rx_dropped,
    }


class Checker(threading.Thread):
    """Reads finished files back (frame count, ours and others) and deletes them."""

    def __init__(self, result: Result) -> None:
        super().__init__(name="soak-checker", daemon=True)
        self.result = result
        self.todo: queue.Queue[tuple[str, int] | None] = queue.Queue()

    def check(self, path: str, frames: int) -> None:
        self.todo.put((path, frames))

    def wait_idle(self) -> None:
        """Until every file handed over was read back and deleted."""
        self.todo.join()

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            try:
                self.read_back(*item)
            finally:
                self.todo.task_done()

    def read_back(self, path: str, frames: int) -> None:
        total = ours = 0
        try:
            with Reader(path) as r:
                for batch in r:
                    total += len(batch)
                    ours += len(batch.filter(OURS))
        except (OSError, ValueError) as exc:
            self.result.file_errors.append(f"{path}: {exc}")
        if total != frames:
            self.result.file_errors.append(f"{path}: {total} frames read, {frames} written")
        self.result.ours_in_files += ours
        self.result.others_in_files += total - ours
        os.unlink(path)


def fd_event(
    result: Result, sent: int, warm: dict[int, str], now: dict[int, str]
) -> dict[int, str]:
    """Record how the descriptors differ from the warm-up's; look again 0.1 s later (what
    the sample keeps): a leak stays, a descriptor some thread holds for a moment does not."""
    time.sleep(0.1)
    again = open_fds()

    def diff(fds: dict[int, str]) -> str:
        new = {fd: t for fd, t in fds.items() if warm.get(fd) != t}
        gone = sorted(set(warm) - set(fds))
        return f"new {new}, closed {gone}"

    later = "as at the end of the warm-up" if again == warm else diff(again)
    result.fd_events.append(f"after {sent:,} frames: {diff(now)}; 0.1 s later: {later}")
    log(f"descriptors: {result.fd_events[-1]}")
    return again


def soak(pair: str, frames: int, args: argparse.Namespace, workdir: str) -> Result:
    result = Result(pair, frames, paced=not args.unpaced)
    opener = bridge_pair if pair == "bridge" else loopback_pair
    with opener() as (a, b):
        b.set_filter(FILTER)
        log(f"{pair}: filter {FILTER!r} placed: {b.filter_placement}")
        checker = Checker(result)
        checker.start()
        with raised_queue(b, "auto") as qlen:
            log(f"{pair}: reader queue {qlen}")
            base = counters(b)
            sender = Sender(a, b, frames, None if args.unpaced else args.window)
            start = time.monotonic()
            sender.start()
            idle_since: float | None = None
            warm_fds: dict[int, str] = {}
            while True:
                path = os.path.join(workdir, f"{pair}-{result.files:05d}.pcapng")
                with Writer(path, interface=b) as w:
                    w.capture(b, timeout=args.rotate)
                result.files += 1
                result.written += w.frames
                checker.check(path, w.frames)
                now = counters(b)
                taken = sum(now[k] - base[k] for k in base)
                done = not sender.is_alive() and taken >= sender.sent
                checker.wait_idle()  # sample with no file open for reading
                fds = open_fds()
                if result.warmup_index and fds != warm_fds:
                    fds = fd_event(result, sender.sent, warm_fds, fds)
                result.samples.append(
                    Sample(time.monotonic() - start, sender.sent, rss_kib(), len(fds))
                )
                s = result.samples[-1]
                log(
                    f"{pair}: {s.t:6.0f} s  sent {s.sent:>12,}  taken {taken:>12,}  "
                    f"RSS {s.rss_kib:>7,} KiB  fds {s.fds}"
                )
                if not result.warmup_index and s.sent >= frames * args.warmup and result.files >= 2:
                    result.warmup_index = len(result.samples) - 1
                    warm_fds = fds
                if done:
                    break
                if not sender.is_alive():  # drained? stop once nothing more arrives
                    if idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > 3 * args.rotate:
                        break
            result.seconds = time.monotonic() - start
        sender.join()
        if sender.error is not None:
            raise sender.error
        checker.todo.put(None)
        checker.join()
        end = counters(b)
        result.sent, result.send_errors = sender.sent, sender.errors
        result.rx_frames = end["rx_frames"] - base["rx_frames"]
        result.rx_filtered = end["rx_filtered"] - base["rx_filtered"]
        result.rx_dropped = end["rx_dropped"] - base["rx_dropped"]
    return result


# -- report ----------------------------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"Command: `{command_line()}`",
        "",
        *table_head(
            [
                "pair", "sent", "seconds", "frames/s", "in files (ours + others)", "filtered",
                "dropped", "unaccounted", "RSS growth, medians (band)", "fds change", "verdict",
            ],
            "lrrrrrrrrrl",
        ),
    ]  # fmt: skip
    for r in results:
        low, high = r.rss_band_kib
        rss = f"{r.rss_growth_kib:+,} KiB ({low:,}-{high:,} KiB)"
        fails = r.failures()
        lines.append(
            table_row(
                [
                    r.pair, f"{r.sent:,}", f"{r.seconds:.0f}", f"{r.sent / r.seconds / 1e3:,.0f} k",
                    f"{r.ours_in_files:,} + {r.others_in_files:,}", f"{r.rx_filtered:,}",
                    f"{r.rx_dropped:,}", f"{r.unaccounted:,}", rss, r.fd_change,
                    "pass" if not fails else "FAIL: " + "; ".join(fails),
                ]
            )
        )  # fmt: skip
    for r in results:
        lines += [f"\nDescriptor change after the warm-up, {r.pair}: {e}" for e in r.fd_events]
    pacing = "unpaced" if args.unpaced else f"paced (at most {args.window} frames in flight)"
    lines += [
        "",
        f"Writer {pacing}; a file every {args.rotate:g} s; warm-up: the first {args.warmup:.0%} "
        + "of the frames.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=float, default=1e8, help="frames per pair (1e8)")
    p.add_argument("--pairs", type=cli.str_list, default=["bridge", "loopback"])
    p.add_argument("--rotate", type=float, default=2.0, help="seconds per capture file (2)")
    p.add_argument("--warmup", type=float, default=0.1, help="share of the frames (0.1)")
    p.add_argument("--window", type=int, default=4096, help="frames in flight, paced (4096)")
    p.add_argument("--unpaced", action="store_true", help="flood: no pacing")
    p.add_argument("--dir", help="where capture files go (default: a temporary directory)")
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    p.add_argument("--json", type=Path, help="also write the raw figures here (JSON)")
    args = p.parse_args()
    if "bridge" in args.pairs:
        cli.require_privileges("soak")
    results = []
    with tempfile.TemporaryDirectory(prefix="vnetio-soak-", dir=args.dir) as workdir:
        for pair in args.pairs:
            results.append(soak(pair, int(args.frames), args, workdir))
    text = report(results, args)
    emit(text, args.out, args.json, [r.as_dict() for r in results])
    return 1 if any(r.failures() for r in results) else 0


if __name__ == "__main__":
    cli.run_main(main)
