#!/usr/bin/env python3
"""Filter benchmark on the bridge loop: 1% of the frames match the filter.

A writer process sends 64-byte UDP frames into TAP A as fast as it can (one frame in 100
goes to port 53, the rest to port 80); the bridge floods them to TAP B, where a Python
reader wants only ``udp dst port 53``. Measured, in one run, for each way of filtering:

* ``none``: no filter; the reader takes every frame and counts the matches itself
  (``Batch.filter`` on each batch) — the baseline for the writer's rate;
* ``kernel``: ``b.set_filter(expr)`` on the TAP, a counting eBPF filter in the kernel:
  rejected frames never cross into userspace;
* ``userspace``: ``b.set_filter(expr, placement="userspace")``: vnetio's Rust BPF
  interpreter on every frame read (the GIL released);
* ``scapy``: scapy's ``sniff(opened_socket=VnetioSocket(b), lfilter=...)`` dissecting
  every frame in Python (what a scapy user would write);
* ``idle`` and ``idle-kernel``: B open but never read, without and with the kernel filter:
  the writer's rate alone (the frames end at B's full ring, or in the filter), which
  isolates what the kernel filter costs the writer from CPU taken by a reader.

Per run: frames written per second (the writer's rate: a kernel filter must not slow it),
matching frames delivered to Python per second, matching frames lost (written but not
delivered), and vnetio's counters (``rx_filtered``, ``rx_dropped``) for the vnetio runs.
Each run gets a fresh writer; runs of different methods alternate (``--repeat``), and the
medians are reported with ratios to ``none`` from the same run, since this machine is
shared and noisy.

Usage (root): ``python benches/filter_loop.py [--seconds 3] [--repeat 3] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from typing import Any

import vnetio
from harness import cli
from harness.child import flood
from harness.procs import Child, log
from harness.report import emit, per_round_ratios
from vnetio._topology import BridgeLoop, build_frame

EXPR = "udp dst port 53"
MATCH_EVERY = 100


def udp_frames() -> list[bytes]:
    """400 64-byte UDP frames from our MAC, every MATCH_EVERY-th to port 53, the rest to 80."""
    base = bytearray(build_frame(64))

    def udp(dport: int) -> bytes:
        f = bytearray(base)
        f[12:14] = b"\x08\x00"
        f[14:34] = bytes([0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2])
        f[34:42] = struct.pack("!HHHH", 4000, dport, 30, 0)
        return bytes(f)

    return [udp(53 if i % MATCH_EVERY == 0 else 80) for i in range(400)]


def child_writer(netns: str, tap: str, seconds: float) -> None:
    with vnetio.Tap(tap, netns=netns) as a:
        flood(a, vnetio.Batch.from_frames(udp_frames()), seconds)


def run_once(loop: BridgeLoop, method: str, seconds: float) -> dict[str, Any]:
    b = vnetio.Tap(loop.tap_b, netns=loop.netns)
    me = [sys.executable, os.path.abspath(__file__)]
    argv = [*me, "--child-writer", loop.netns, "--tap", loop.tap_a, "--seconds", str(seconds)]
    writer = Child(argv, "writer")
    try:
        writer.expect("ready", timeout=60)
        loop.wait_forwarding(loop.tap_a, loop.tap_b)
        while len(b.recv_batch(512, timeout=0.05)):
            pass
        if method in ("kernel", "idle-kernel"):
            assert b.set_filter(EXPR) == "kernel"
        elif method == "userspace":
            assert b.set_filter(EXPR, placement="userspace") == "userspace"
        base = b.stats()
        writer.send("go")
        start = time.perf_counter()
        if method == "scapy":
            matched = scapy_reader(b, seconds)
        elif method.startswith("idle"):
            time.sleep(seconds + 0.2)  # nobody reads: the writer's cost alone
            matched = 0
        else:
            matched = vnetio_reader(b, seconds, count_matches=method == "none")
        reader_time = time.perf_counter() - start
        done = writer.expect("done", timeout=seconds + 60)
        sent, elapsed = int(done["sent"]), float(done["seconds"])
        stats = b.stats()
    finally:
        writer.close()
        b.close()
    matches_sent = (sent + MATCH_EVERY - 1) // MATCH_EVERY
    return {
        "method": method,
        "written_per_s": sent / elapsed,
        "delivered_per_s": matched / reader_time,
        "matches_sent": matches_sent,
        "matches_delivered": matched,
        "match_loss": 1 - matched / matches_sent if matches_sent else 0.0,
        "rx_filtered": None
        if stats.rx_filtered is None or base.rx_filtered is None
        else stats.rx_filtered - base.rx_filtered,
        "rx_dropped": stats.rx_dropped - base.rx_dropped,
    }


def vnetio_reader(b: vnetio.Tap, seconds: float, *, count_matches: bool) -> int:
    """Read until the writer has stopped and B is drained; count the matching frames."""
    matched = 0
    deadline = time.perf_counter() + seconds
    while True:
        batch = b.recv_batch(512, timeout=0.2)
        if not len(batch):
            if time.perf_counter() > deadline:
                return matched
            continue
        matched += len(batch.filter(EXPR)) if count_matches else len(batch)


def scapy_reader(b: vnetio.Tap, seconds: float) -> int:
    from scapy.layers.inet import UDP
    from scapy.sendrecv import sniff
    from vnetio.inspect import VnetioSocket

    sock = VnetioSocket(b)
    got = sniff(
        opened_socket=sock,
        lfilter=lambda p: UDP in p and p[UDP].dport == 53,
        timeout=seconds + 0.5,
        store=True,
    )
    return len(got)


def main() -> int:
    ap = cli.parser(__doc__)
    ap.add_argument(
        "--methods",
        type=cli.str_list,
        default=["none", "kernel", "userspace", "scapy", "idle", "idle-kernel"],
        help="none,kernel,userspace,scapy,idle,idle-kernel",
    )
    ap.add_argument("--child-writer", metavar="NETNS", help=argparse.SUPPRESS)
    ap.add_argument("--tap", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_writer:
        child_writer(args.child_writer, args.tap, args.seconds)
        return 0
    cli.require_privileges("filter_loop")
    methods = args.methods
    results: list[dict[str, Any]] = []
    for rep, ordered in cli.rounds(args.repeat, methods, rotate=True):
        for method in ordered:
            with BridgeLoop("filter") as loop:
                r = run_once(loop, method, args.seconds)
            r["repeat"] = rep
            results.append(r)
            log(json.dumps(r))
    emit(summarize(results, methods, args), args.out, args.json, results)
    return 0


def summarize(results: list[dict[str, Any]], methods: list[str], args: Any) -> str:
    def med(method: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results if r["method"] == method))

    base_w = med("none", "written_per_s") if "none" in methods else None
    lines = [
        (
            f"Filter `{EXPR}` at 1% match, 64 B frames, {args.seconds:g} s x {args.repeat} "
            f"(medians; ratios to `none` in the same run). Command: "
            f"`python benches/filter_loop.py --seconds {args.seconds:g} --repeat {args.repeat}`"
        ),
        "",
        (
            "| method | written/s | writer vs none | matches delivered/s | match loss | "
            "rx_filtered | rx_dropped |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        w = med(m, "written_per_s")
        ratio = f"{w / base_w:.2f}x" if base_w else "-"
        filt = [r["rx_filtered"] for r in results if r["method"] == m]
        filt_s = (
            "-" if m in ("none", "scapy") or None in filt else f"{statistics.median(filt):,.0f}"
        )
        drop_s = "-" if m == "scapy" else f"{med(m, 'rx_dropped'):,.0f}"
        idle = m.startswith("idle")
        delivered = "-" if idle else f"{med(m, 'delivered_per_s'):,.0f}"
        loss = "-" if idle else f"{med(m, 'match_loss'):.2%}"
        if m == "idle-kernel" and "idle" in methods:
            ratios = per_round_ratios(
                [r for r in results if r["method"] == m],
                [r for r in results if r["method"] == "idle"],
                "written_per_s",
                round_key="repeat",
            )
            ratio = f"{statistics.median(ratios):.2f}x idle"
        lines.append(f"| {m} | {w:,.0f} | {ratio} | {delivered} | {loss} | {filt_s} | {drop_s} |")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run_main(main)
