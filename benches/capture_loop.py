#!/usr/bin/env python3
"""Capture benchmark on the bridge loop: frames written into TAP A, captured from TAP B to a
pcap/pcapng file.

Each (frame size, implementation) runs in a fresh private namespace
(``vnetio._topology.BridgeLoop``), with two child processes inside it: the reader under test
on B, and one unpaced writer on A (a vnetio ``send_batch`` loop, the same for every reader).
The reader attaches first and says ``ready``; the writer then floods for ``--seconds``; the
reader drains for a moment and is stopped with SIGINT, closes its file and reports.

Readers (every capture writes into a temporary directory; ``--dir`` picks another):

* ``vnetio-none``: vnetio ``recv_batch`` loop that keeps nothing: what vnetio delivers
  without capturing, the reference for the ratio;
* ``vnetio``: ``Writer.capture`` (the Rust loop: read, write, GIL released), pcapng;
* ``vnetio-pyloop``: a Python loop of ``recv_batch`` + ``Writer.write_batch``, pcapng;
* ``native``: Rust ``read()`` one frame per call + ``BufWriter`` (1 MiB) pcap records
  (``examples/native_bridge.rs``, command ``capture``; built when missing), the issue's
  "native read + buffered write" reference;
* ``scapy``: scapy ``sniff`` on a ``TunTapInterface`` + ``PcapWriter``;
* ``os-scapy``: ``os.read`` one frame per call + scapy ``PcapWriter.write(bytes)``.

Reported: frames written by the writer, frames in the file (ours: size and source MAC;
counted by reading the file back) per second of flood, the loss ``1 - kept / sent``, B's
kernel ``TX dropped`` (frames refused because the reader's ring was full) and the share of
both CPUs that work other than the reader and the writer took during the run.

Every reader runs with B's queue (txqueuelen) at each of ``--queues``: the kernel's default
(1000) and the length vnetio's captures raise it to (``CAPTURE_QUEUE_LENGTH``, 8192; like
libpcap's capture buffer).

Pairs (``benches/harness/pairing.py``): every reader is paired with ``vnetio-none`` at the
same queue and size, one run of each back to back, the order alternating; the ratio of
kept/s is one per pair, and the report gives the median of the ratios with their range.
The comparisons are interleaved (one pair of each in turn). A pair is noisy, discarded and
replaced (up to ``--max-pairs``), when other work took more than ``--max-other-cpu`` of the
CPUs during either run, or the two runs' shares differ by more than
``--max-other-cpu-diff``. ``--json`` keeps every run of every pair; ``--benchmarks-md``
rewrites this script's section of BENCHMARKS.md.

Usage (root): ``python benches/capture_loop.py [--seconds 3] [--sizes 64,1514]
[--queues 1000,8192] [--repeat 5] [--max-pairs 10] [--out F] [--json F]
[--benchmarks-md BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from harness import cli
from harness.child import open_tuntap, reply, restore_sigint
from harness.pairing import (
    Comparison,
    OtherCpuRule,
    Pair,
    add_pairing_arguments,
    check_pairing_arguments,
    interleave,
    uptime_line,
)
from harness.procs import EXAMPLES, BenchError, Child, OtherCpu, build_example, log
from harness.report import (
    command_line,
    emit,
    relative,
    run_record,
    table_head,
    table_row,
    write_section,
)
from vnetio._topology import DST_MAC, ETHERTYPE, SRC_MAC, BridgeLoop, TopologyError, mac_bytes

IMPLS = ["vnetio-none", "vnetio", "vnetio-pyloop", "native", "scapy", "os-scapy"]
NATIVE_BIN = EXAMPLES / "native_bridge"
#: A run that fails with one of these counts as a failed pair of its comparison.
RUN_ERRORS = (BenchError, TimeoutError, TopologyError)


def frame(size: int) -> bytes:
    """Our MACs and EtherType (``vnetio._topology``), then zeros."""
    return mac_bytes(DST_MAC) + mac_bytes(SRC_MAC) + ETHERTYPE.to_bytes(2, "big") + bytes(size - 14)


# -- children (run inside the namespace) ---------------------------------------------------


def child_writer(tap: str, size: int, seconds: float) -> None:
    import vnetio
    from harness.child import flood

    with vnetio.Tap(tap) as a:
        flood(a, vnetio.Batch.from_frames([frame(size)] * 256), seconds)


def _read_none(tap: str, path: str) -> int:
    import vnetio

    delivered = 0
    with vnetio.Tap(tap) as b:
        reply({"event": "ready"})
        try:
            while True:
                delivered += len(b.recv_batch(256, timeout=0.05))
        except KeyboardInterrupt:
            return delivered


def _read_vnetio(tap: str, path: str, *, rust_loop: bool) -> int:
    import vnetio
    from vnetio.capture import Writer

    with vnetio.Tap(tap) as b, Writer(path, interface=b) as w:
        reply({"event": "ready"})
        try:
            if rust_loop:
                w.capture(b)
            while True:
                w.write_batch(b.recv_batch(256, timeout=0.05))
        except KeyboardInterrupt:
            pass
    return 0


def _read_scapy(tap: str, path: str) -> int:
    from scapy.layers.tuntap import TunTapInterface
    from scapy.sendrecv import sniff
    from scapy.utils import PcapWriter

    sock = TunTapInterface(tap, mode_tun=False)  # type: ignore[no-untyped-call]
    with PcapWriter(path, linktype=1, sync=False) as pw:
        reply({"event": "ready"})
        sniff(opened_socket=sock, prn=pw.write, store=False)  # returns on SIGINT
    return 0


def _read_os_scapy(tap: str, path: str) -> int:
    import select

    from scapy.utils import PcapWriter

    fd = open_tuntap(tap, nonblocking=True)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        with PcapWriter(path, linktype=1, sync=False) as pw:
            reply({"event": "ready"})
            read, write = os.read, pw.write
            try:
                while True:
                    try:
                        write(read(fd, 2048))
                    except BlockingIOError:
                        poller.poll(50)
            except KeyboardInterrupt:
                pass
    finally:
        os.close(fd)
    return 0


def child_reader(impl: str, tap: str, path: str) -> None:
    restore_sigint()  # the parent stops readers with SIGINT
    readers: dict[str, Callable[[str, str], int]] = {
        "vnetio-none": _read_none,
        "vnetio": functools.partial(_read_vnetio, rust_loop=True),
        "vnetio-pyloop": functools.partial(_read_vnetio, rust_loop=False),
        "scapy": _read_scapy,
        "os-scapy": _read_os_scapy,
    }
    if impl not in readers:
        raise SystemExit(f"unknown implementation {impl}")
    delivered = readers[impl](tap, path)
    reply({"event": "done", "delivered": delivered})


# -- parent --------------------------------------------------------------------------------


def ours_in_file(path: str, size: int) -> tuple[int, bool]:
    """Our frames in the capture file (size and source MAC), and whether its last record was
    cut short (a reader stopped by SIGINT inside a write: scapy's ``PcapWriter``); then the
    complete records before it are counted."""
    from vnetio.capture import Reader

    src = mac_bytes(SRC_MAC)

    def ours(batch: Any) -> int:
        return sum(1 for f in batch if len(f) == size and bytes(f[6:12]) == src)

    n = whole = 0
    try:
        with Reader(path) as r:
            while len(batch := r.read_batch(4096)):
                n, whole = n + ours(batch), whole + len(batch)
        return n, False
    except ValueError as exc:
        if "cut short" not in str(exc):
            raise
    with Reader(path) as r:  # again: the batches read whole, then record by record
        skipped = 0
        while skipped < whole:
            skipped += len(r.read_batch(min(4096, whole - skipped)))
        with contextlib.suppress(ValueError):
            while len(batch := r.read_batch(1)):
                n += ours(batch)
    return n, True


def run_one(
    impl: str, size: int, seconds: float, workdir: str, queue: int | None = None
) -> dict[str, Any]:
    path = os.path.join(workdir, f"{impl}-{size}.pcap{'ng' if impl.startswith('vnetio') else ''}")
    me = [sys.executable, os.path.abspath(__file__)]
    with BridgeLoop("capture") as loop:
        if queue is not None:
            loop.set_txqueuelen(loop.tap_b, queue)
        native = impl == "native"
        argv = (
            [str(NATIVE_BIN), "--reader-only", "--tap-b", loop.tap_b, "--size", str(size)]
            if native
            else [*me, "--child-reader", impl, "--tap", loop.tap_b, "--file", path]
        )
        with Child(loop.ns_argv(argv), f"{impl} reader") as reader:
            reader.expect("ready", timeout=60)
            if native:  # starts reading into the file at once
                reader.send(f"capture {path}")
            argv = [*me, "--child-writer", "--tap", loop.tap_a, "--size", str(size),
                    "--seconds", str(seconds)]  # fmt: skip
            with Child(loop.ns_argv(argv), "writer") as writer:
                writer.expect("ready", timeout=60)
                loop.wait_forwarding()
                dropped0 = loop.counters(loop.tap_b)["tx_dropped"]
                other = OtherCpu([reader.proc.pid, writer.proc.pid])
                writer.send("go")
                sent = writer.expect("done", timeout=seconds + 60)["sent"]
                time.sleep(0.5)  # let the reader drain B's ring
                other_cpu = other.share()  # both still run: their time is theirs
                dropped = loop.counters(loop.tap_b)["tx_dropped"] - dropped0
                if native:
                    reader.send("stop")
                else:
                    reader.proc.send_signal(signal.SIGINT)
                done = reader.expect("done", timeout=60)
                if native:
                    reader.send("quit")
    kept, cut = (done["delivered"], False) if impl == "vnetio-none" else ours_in_file(path, size)
    if os.path.exists(path):
        os.unlink(path)
    return {
        "impl": impl,
        "queue": queue,
        "size": size,
        "seconds": seconds,
        "sent": sent,
        "kept": kept,
        "rate": kept / seconds,
        "loss": 1 - kept / sent if sent else 0.0,
        "kernel_dropped": dropped,
        "other_cpu": other_cpu,
        "file_cut_short": cut,
    }


# -- pairs and the report ------------------------------------------------------------------

BASE = IMPLS[0]  # vnetio-none: every reader is paired with it
LABELS = {
    "vnetio-none": "vnetio-none: `recv_batch`, keeps nothing (the reference)",
    "vnetio": "vnetio `Writer.capture` (Rust loop), pcapng",
    "vnetio-pyloop": "vnetio `recv_batch` + `Writer.write_batch` (Python loop), pcapng",
    "native": "native Rust `read()` + `BufWriter` (1 MiB), pcap",
    "scapy": "scapy `sniff` + `PcapWriter`",
    "os-scapy": "`os.read` + scapy `PcapWriter`",
}


def comparisons(args: argparse.Namespace) -> list[Comparison]:
    """One comparison per (queue, size, reader): the reader against vnetio-none."""
    return [
        Comparison(impl, BASE, ("rate",), args.repeat, args.max_pairs, tag=(queue, size))
        for queue in args.queues
        for size in args.sizes
        for impl in args.impls
        if impl != BASE
    ]


def run_all(args: argparse.Namespace, comps: list[Comparison]) -> None:
    with tempfile.TemporaryDirectory(prefix="vnetio-capture-bench-", dir=args.dir) as workdir:

        def run(c: Comparison, impl: str) -> dict[str, Any]:
            queue, size = c.tag
            row = run_one(impl, size, args.seconds, workdir, queue)
            log(
                f"q{queue:<5d} {size:5d} B {impl:14s} kept {row['rate'] / 1e3:9,.0f} k/s  "
                f"loss {row['loss'] * 100:5.2f}%  kernel dropped {row['kernel_dropped']:,}  "
                f"other CPU {row['other_cpu'] * 100:.0f}%"
            )
            return row

        def progress(c: Comparison, p: Pair) -> None:
            status = f"DISCARDED ({p.noise})" if p.noise else "kept"
            log(
                f"  q{c.tag[0]} {c.tag[1]} B {c.a} vs {c.b}, pair {len(c.pairs)} "
                f"({len(c.kept())}/{c.want} kept), {p.first} first: "
                f"{p.ratios.get('rate', 0):.2f}×, {status}"
            )

        rule = OtherCpuRule.from_args(args)
        interleave(
            comps, run, rule.noisy, errors=RUN_ERRORS, progress=progress, uneven=rule.uneven()
        )


def _pct(values: list[float]) -> str:
    """Median percentage, with the range when the values differ."""
    med = statistics.median(values) * 100
    lo, hi = min(values) * 100, max(values) * 100
    return f"{med:.2f}%" if hi - lo < 0.005 else f"{med:.2f}% ({lo:.2f}–{hi:.2f})"


def table(comps: list[Comparison], queue: int, size: int) -> list[str]:
    """One row per reader at (queue, size): medians of its runs in the kept pairs."""
    mine = [c for c in comps if c.tag == (queue, size)]
    if not mine:
        return []
    lines = table_head(
        [
            "reader",
            "pairs kept / run",
            "sent",
            "kept/s",
            "loss (range)",
            "B TX dropped",
            "other CPU",
            f"kept/s vs {BASE} (kept pairs)",
            "all pairs",
        ],
        "lrrrrrrrr",
    )
    base_runs = [r for c in mine for r in c.side_runs(BASE)]
    rows = [(BASE, base_runs, None)] + [(c.a, c.side_runs(c.a), c) for c in mine]
    for impl, runs, c in rows:
        if not runs:
            lines.append(table_row([LABELS[impl], "0", "—", "—", "—", "—", "—", "—", "—"]))
            continue
        med = statistics.median
        lines.append(
            table_row(
                [
                    LABELS[impl],
                    "(the base of every pair)"
                    if c is None
                    else f"{len(c.kept())} / {len(c.pairs)}",
                    f"{med(r['sent'] for r in runs):,.0f}",
                    f"{med(r['rate'] for r in runs) / 1e3:,.0f} k",
                    _pct([r["loss"] for r in runs]),
                    f"{med(r['kernel_dropped'] for r in runs):,.0f}",
                    f"{med(r['other_cpu'] for r in runs) * 100:.0f}%",
                    "1 (baseline)" if c is None else c.cell("rate"),
                    "" if c is None else c.all_pairs_cell("rate"),
                ]
            )
        )
    return lines


def fs_type(path: str | None) -> str:
    """The file system type of ``path`` (default: the temporary directory), e.g. ``ext4``."""
    where = path or tempfile.gettempdir()
    out = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "-T", where], check=False, capture_output=True, text=True
    )
    return out.stdout.strip() or "an unknown file system"


def render(
    args: argparse.Namespace, command: str, comps: list[Comparison], load: tuple[str, str]
) -> str:
    out = [
        "## Capture to a file, in paired runs",
        "",
        (
            f"`{command}` (as root; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"kernel {platform.release()}, {os.cpu_count()} cores; load (`uptime`) at the "
            f"start {load[0]}, at the end {load[1]}). The bridge loop: one unpaced vnetio "
            f"`send_batch` writer process on TAP A for {args.seconds:g} s, the reader under "
            "test in a process of its own on TAP B writing a file (in a temporary directory "
            f"under {args.dir or tempfile.gettempdir()}, on {fs_type(args.dir)}); a fresh "
            "namespace per run. *kept/s* = our frames in the file (read back) per second of flood; *loss* = "
            "1 − kept ÷ sent; *B TX dropped* = frames B's full ring refused (the kernel's "
            "counter); *other CPU* = the share of both CPUs used by anything but the reader "
            "and the writer during the run. Each reader is paired with "
            f"`{BASE}` (a reader that keeps nothing): one run of each back to back, the order "
            "alternating; *vs* = median of the per-pair ratios of kept/s, with their range. "
            "The row's figures are medians over its runs in the kept pairs (the reference's: "
            "over every comparison at that queue and size). B's queue (txqueuelen): 1000 is "
            "the kernel's default, 8192 what vnetio's captures raise it to "
            "(`CAPTURE_QUEUE_LENGTH`). The per-run figures of every pair are in the `--json` "
            "file."
        ),
        "",
    ]
    for queue in args.queues:
        for size in args.sizes:
            out += [f"### Queue {queue}, {size}-byte frames", "", *table(comps, queue, size), ""]
    out += [
        OtherCpuRule.from_args(args).report_line(
            "work other than the reader and the writer", comps, args
        ),
        "",
        *(f"- queue {c.tag[0]}, {c.tag[1]} B, {c.a} vs {c.b}: {c.discard_note()}" for c in comps),
        "",
    ]
    return "\n".join(out)


def main() -> int:
    p = cli.parser(
        __doc__,
        repeat=5,
        repeat_help="pairs (reader, vnetio-none) kept per reader, queue and size",
        sizes="64,1514",
        benchmarks_md=True,
    )
    p.add_argument("--impls", type=cli.str_list, default=IMPLS, help=",".join(IMPLS))
    p.add_argument(
        "--queues",
        type=cli.int_list,
        default=[1000, 8192],
        help="B's txqueuelen for each set of runs (1000: the kernel's default; 8192: what "
        "vnetio captures raise it to)",
    )
    add_pairing_arguments(p)
    p.add_argument("--dir", help="where the capture files go (default: a temporary directory)")
    p.add_argument("--child-reader", help=argparse.SUPPRESS)
    p.add_argument("--child-writer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tap", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_writer:
        child_writer(args.tap, args.size, args.seconds)
        return 0
    if args.child_reader:
        child_reader(args.child_reader, args.tap, args.file)
        return 0
    unknown = [i for i in args.impls if i not in IMPLS]
    if unknown:
        p.error(f"unknown reader(s): {', '.join(unknown)}; known: {', '.join(IMPLS)}")
    if BASE not in args.impls or len(args.impls) < 2:
        p.error(f"--impls must include {BASE} and another reader: every reader is paired with it")
    check_pairing_arguments(p, args)
    cli.require_privileges("capture_loop")
    if "native" in args.impls:
        build_example("native_bridge")
    command = command_line(relative(sys.executable), relative(sys.argv[0]))
    load_start = uptime_line()
    comps = comparisons(args)
    run_all(args, comps)
    text = render(args, command, comps, (load_start, uptime_line()))
    raw = {
        **run_record(command, load_start, uptime_line()),
        "comparisons": [c.to_json() for c in comps],
    }
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
