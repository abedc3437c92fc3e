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
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ["vnetio-none", "vnetio", "vnetio-pyloop", "native", "scapy", "os-scapy"]
NATIVE_BIN = ROOT / "target" / "release" / "examples" / "native_bridge"
SRC_MAC = bytes.fromhex("02766e100001")
DST_MAC = bytes.fromhex("02766e100002")
ETHERTYPE = b"\x88\xb5"


def frame(size: int) -> bytes:
    return DST_MAC + SRC_MAC + ETHERTYPE + bytes(size - 14)


# -- children (run inside the namespace) ---------------------------------------------------


def child_writer(tap: str, size: int, seconds: float) -> None:
    import vnetio

    with vnetio.Tap(tap) as a:
        batch = vnetio.Batch.from_frames([frame(size)] * 256)
        print(json.dumps({"event": "ready"}), flush=True)
        sys.stdin.readline()  # "go"
        sent = errors = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                sent += a.send_batch(batch)
            except OSError as exc:
                sent += getattr(exc, "sent", 0)
                errors += 1
        print(json.dumps({"event": "done", "sent": sent, "errors": errors}), flush=True)


def attach_fd(name: str) -> int:
    import fcntl
    import struct

    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    ifreq = struct.pack("16sH22x", name.encode(), 0x0002 | 0x1000)  # IFF_TAP | IFF_NO_PI
    fcntl.ioctl(fd, 0x400454CA, ifreq)  # TUNSETIFF
    return fd


def _read_none(tap: str, path: str, ready: str) -> int:
    import vnetio

    delivered = 0
    with vnetio.Tap(tap) as b:
        print(ready, flush=True)
        try:
            while True:
                delivered += len(b.recv_batch(256, timeout=0.05))
        except KeyboardInterrupt:
            return delivered


def _read_vnetio(tap: str, path: str, ready: str, *, rust_loop: bool) -> int:
    import vnetio
    from vnetio.capture import Writer

    with vnetio.Tap(tap) as b, Writer(path, interface=b) as w:
        print(ready, flush=True)
        try:
            if rust_loop:
                w.capture(b)
            while True:
                w.write_batch(b.recv_batch(256, timeout=0.05))
        except KeyboardInterrupt:
            pass
    return 0


def _read_scapy(tap: str, path: str, ready: str) -> int:
    from scapy.layers.tuntap import TunTapInterface
    from scapy.sendrecv import sniff
    from scapy.utils import PcapWriter

    sock = TunTapInterface(tap, mode_tun=False)
    with PcapWriter(path, linktype=1, sync=False) as pw:
        print(ready, flush=True)
        sniff(opened_socket=sock, prn=pw.write, store=False)  # returns on SIGINT
    return 0


def _read_os_scapy(tap: str, path: str, ready: str) -> int:
    import select

    from scapy.utils import PcapWriter

    fd = attach_fd(tap)
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        with PcapWriter(path, linktype=1, sync=False) as pw:
            print(ready, flush=True)
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
    # The parent stops readers with SIGINT; a shell that started the benchmark in the
    # background (no job control) hands its children SIGINT ignored, so set it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ready = json.dumps({"event": "ready"})
    readers = {
        "vnetio-none": _read_none,
        "vnetio": functools.partial(_read_vnetio, rust_loop=True),
        "vnetio-pyloop": functools.partial(_read_vnetio, rust_loop=False),
        "scapy": _read_scapy,
        "os-scapy": _read_os_scapy,
    }
    if impl not in readers:
        raise SystemExit(f"unknown implementation {impl}")
    delivered = readers[impl](tap, path, ready)
    print(json.dumps({"event": "done", "delivered": delivered}), flush=True)


# -- parent --------------------------------------------------------------------------------


def ours_in_file(path: str, size: int) -> int:
    from vnetio.capture import Reader

    n = 0
    with Reader(path) as r:
        for batch in r:
            n += sum(1 for f in batch if len(f) == size and bytes(f[6:12]) == SRC_MAC)
    return n


def tx_dropped(ns: str, dev: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-s", "link", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["dropped"])


def expect(proc: subprocess.Popen[str], event: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"child ended before {event!r}: exit {proc.wait()}")
    msg = json.loads(line)
    if msg.get("event") != event:
        raise RuntimeError(f"expected {event!r}, got {msg}")
    return dict(msg)


def tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def run_one(
    impl: str, size: int, seconds: float, workdir: str, queue: int | None = None
) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "python"))
    from vnetio._topology import BridgeLoop

    path = os.path.join(workdir, f"{impl}-{size}.pcap{'ng' if impl.startswith('vnetio') else ''}")
    me = [sys.executable, os.path.abspath(__file__)]
    with BridgeLoop("capture") as loop:
        if queue is not None:
            loop.set_txqueuelen(loop.tap_b, queue)
        inside = ["ip", "netns", "exec", loop.netns]
        native = impl == "native"
        child = (
            [str(NATIVE_BIN), "--reader-only", "--tap-b", loop.tap_b, "--size", str(size)]
            if native
            else [*me, "--child-reader", impl, "--tap", loop.tap_b, "--file", path]
        )
        reader = subprocess.Popen(
            [*inside, *child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        writer = None
        try:
            expect(reader, "ready")
            if native:  # starts reading into the file at once
                tell(reader, f"capture {path}")
            writer = subprocess.Popen(
                [*inside, *me, "--child-writer", "--tap", loop.tap_a, "--size", str(size),
                 "--seconds", str(seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            expect(writer, "ready")
            loop.wait_forwarding()
            dropped0 = tx_dropped(loop.netns, loop.tap_b)
            tell(writer, "go")
            sent = expect(writer, "done")["sent"]
            time.sleep(0.5)  # let the reader drain B's ring
            dropped = tx_dropped(loop.netns, loop.tap_b) - dropped0
            if native:
                tell(reader, "stop")
            else:
                reader.send_signal(signal.SIGINT)
            done = expect(reader, "done")
            if native:
                tell(reader, "quit")
            reader.wait(timeout=30)
        finally:
            for p in (reader, writer):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
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
    base = {
        (r["queue"], r["size"], r["round"]): r["rate"] for r in rows if r["impl"] == "vnetio-none"
    }
    keys = list(dict.fromkeys((r["queue"], r["size"], r["impl"]) for r in rows))
    for queue, size, impl in keys:
        runs = [r for r in rows if (r["queue"], r["size"], r["impl"]) == (queue, size, impl)]
        ratios = [
            r["rate"] / base[(queue, size, r["round"])]
            for r in runs
            if base.get((queue, size, r["round"]))
        ]
        ratio = ""
        if ratios:
            ratio = f"{statistics.median(ratios):.2f}x"
            if len(ratios) > 1:
                ratio += f" ({min(ratios):.2f}-{max(ratios):.2f})"
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
        for queue in (int(q) for q in args.queues.split(",")):
            for size in (int(s) for s in args.sizes.split(",")):
                for round_ in range(args.repeat):
                    for impl in args.impls.split(","):
                        row = run_one(impl, size, args.seconds, workdir, queue)
                        row["queue"], row["round"] = queue, round_
                        print(
                            f"q{queue:<5d} {size:5d} B {impl:14s} kept "
                            f"{row['rate'] / 1e3:9,.0f} k/s  loss {row['loss'] * 100:5.2f}%  "
                            f"kernel dropped {row['kernel_dropped']:,}",
                            file=sys.stderr,
                            flush=True,
                        )
                        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--sizes", default="64,1514")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument(
        "--queues",
        default="1000,8192",
        help="B's txqueuelen for each set of runs (1000: the kernel's default; 8192: what "
        "vnetio captures raise it to)",
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds of every reader (medians)")
    p.add_argument("--dir", help="where the capture files go (default: a temporary directory)")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
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
    if os.geteuid() != 0:
        print("capture_loop: needs root (network namespaces and TAPs)", file=sys.stderr)
        return 1
    if "native" in args.impls.split(",") and not NATIVE_BIN.exists():
        subprocess.run(
            ["cargo", "build", "--release", "--example", "native_bridge"], cwd=ROOT, check=True
        )
    rows = run_all(args)
    text = table(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
