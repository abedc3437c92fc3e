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
counted by reading the file back) per second of flood, the loss ``1 - kept / sent`` and B's
kernel ``TX dropped`` (frames refused because the reader's ring was full), and for vnetio
the ratio to ``vnetio-none`` in the same round.

Every reader runs with B's queue (txqueuelen) at each of ``--queues``: the kernel's default
(1000) and the length vnetio's captures raise it to (``CAPTURE_QUEUE_LENGTH``, 8192; like
libpcap's capture buffer). ``--repeat N`` runs every reader N times, round by round (all
readers once, then again), and reports medians: the kept/s and loss of the N runs, and the
ratio of each round's vnetio rate to that round's ``vnetio-none``.

Usage (root): ``python benches/capture_loop.py [--seconds 3] [--sizes 64,1514]
[--queues 1000,8192] [--repeat 3] [--out F]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from harness import cli
from harness.child import open_tuntap, reply, restore_sigint
from harness.procs import EXAMPLES, Child, build_example, log
from harness.report import emit, per_round_ratios, ratio_cell
from vnetio._topology import DST_MAC, ETHERTYPE, SRC_MAC, BridgeLoop, mac_bytes

IMPLS = ["vnetio-none", "vnetio", "vnetio-pyloop", "native", "scapy", "os-scapy"]
NATIVE_BIN = EXAMPLES / "native_bridge"


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


def ours_in_file(path: str, size: int) -> int:
    from vnetio.capture import Reader

    src = mac_bytes(SRC_MAC)
    n = 0
    with Reader(path) as r:
        for batch in r:
            n += sum(1 for f in batch if len(f) == size and bytes(f[6:12]) == src)
    return n


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
                writer.send("go")
                sent = writer.expect("done", timeout=seconds + 60)["sent"]
                time.sleep(0.5)  # let the reader drain B's ring
                dropped = loop.counters(loop.tap_b)["tx_dropped"] - dropped0
                if native:
                    reader.send("stop")
                else:
                    reader.proc.send_signal(signal.SIGINT)
                done = reader.expect("done", timeout=60)
                if native:
                    reader.send("quit")
    kept = done["delivered"] if impl == "vnetio-none" else ours_in_file(path, size)
    if os.path.exists(path):
        os.unlink(path)
    return {
        "impl": impl,
        "size": size,
        "seconds": seconds,
        "sent": sent,
        "kept": kept,
        "rate": kept / seconds,
        "loss": 1 - kept / sent if sent else 0.0,
        "kernel_dropped": dropped,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """One line per (queue, size, reader): medians over the repeats."""
    lines = [
        (
            "| queue | size | reader | runs | sent (median) | kept/s | loss | B TX dropped "
            "| vs vnetio-none (per round) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["queue"], r["size"], r["impl"]) for r in rows))
    for queue, size, impl in keys:
        runs = [r for r in rows if (r["queue"], r["size"], r["impl"]) == (queue, size, impl)]
        base = [r for r in rows if (r["queue"], r["size"], r["impl"]) == (queue, size, IMPLS[0])]
        ratio = ratio_cell(per_round_ratios(runs, base, "rate"))
        med = statistics.median
        lines.append(
            f"| {queue or 'default'} | {size} B | {impl} | {len(runs)} | "
            f"{med(r['sent'] for r in runs):,.0f} | {med(r['rate'] for r in runs) / 1e3:,.0f} k | "
            f"{med(r['loss'] for r in runs) * 100:.2f}% | "
            f"{med(r['kernel_dropped'] for r in runs):,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vnetio-capture-bench-", dir=args.dir) as workdir:
        for queue in args.queues:
            for size in args.sizes:
                for round_, impls in cli.rounds(args.repeat, args.impls, rotate=True):
                    for impl in impls:
                        row = run_one(impl, size, args.seconds, workdir, queue)
                        row["queue"], row["round"] = queue, round_
                        log(
                            f"q{queue:<5d} {size:5d} B {impl:14s} kept "
                            f"{row['rate'] / 1e3:9,.0f} k/s  loss {row['loss'] * 100:5.2f}%  "
                            f"kernel dropped {row['kernel_dropped']:,}"
                        )
                        rows.append(row)
    return rows


def main() -> int:
    p = cli.parser(
        __doc__, repeat=1, repeat_help="rounds of every reader (medians)", sizes="64,1514"
    )
    p.add_argument("--impls", type=cli.str_list, default=IMPLS, help=",".join(IMPLS))
    p.add_argument(
        "--queues",
        type=cli.int_list,
        default=[1000, 8192],
        help="B's txqueuelen for each set of runs (1000: the kernel's default; 8192: what "
        "vnetio captures raise it to)",
    )
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
    cli.require_privileges("capture_loop")
    if "native" in args.impls:
        build_example("native_bridge")
    rows = run_all(args)
    emit(table(rows), args.out, args.json, rows)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
