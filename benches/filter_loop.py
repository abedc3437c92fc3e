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
delivered), vnetio's counters (``rx_filtered``, ``rx_dropped``) for the vnetio runs, and
the share of both CPUs that work other than the reader (this process) and the writer took.
Each run gets a fresh namespace and writer.

Pairs (``benches/harness/pairing.py``): ``kernel``, ``userspace`` and ``scapy`` are each
paired with ``none``, ``idle-kernel`` with ``idle``: one run of each back to back, the order
alternating, one ratio per pair (writer's rate, matches delivered), the median of the ratios
with their range; the comparisons are interleaved. A pair is noisy, discarded and replaced
(up to ``--max-pairs``), when other work took more than ``--max-other-cpu`` of the CPUs
during either run, or the two runs' shares differ by more than ``--max-other-cpu-diff``.
``--json`` keeps every run of every pair; ``--benchmarks-md`` rewrites this script's section
of BENCHMARKS.md.

Usage (root): ``python benches/filter_loop.py [--seconds 3] [--repeat 5] [--max-pairs 10]
[--out FILE] [--json FILE] [--benchmarks-md BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import sys
import time
from typing import Any

import vnetio
from harness import cli
from harness.child import flood
from harness.pairing import (
    Comparison,
    OtherCpuRule,
    Pair,
    add_pairing_arguments,
    check_pairing_arguments,
    interleave,
    uptime_line,
)
from harness.procs import BenchError, Child, OtherCpu, log
from harness.report import (
    command_line,
    emit,
    relative,
    run_record,
    table_head,
    table_row,
    write_section,
)
from vnetio._topology import BridgeLoop, TopologyError, build_frame

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
        other = OtherCpu([os.getpid(), writer.proc.pid])  # the reader is this process
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
        other_cpu = other.share()
        sent, elapsed = int(done["sent"]), float(done["seconds"])
        stats = b.stats()
    finally:
        writer.close()
        b.close()
    matches_sent = (sent + MATCH_EVERY - 1) // MATCH_EVERY
    return {
        "method": method,
        "sent": sent,
        "seconds": elapsed,
        "written_per_s": sent / elapsed,
        "delivered_per_s": matched / reader_time,
        "matches_sent": matches_sent,
        "matches_delivered": matched,
        "match_loss": 1 - matched / matches_sent if matches_sent else 0.0,
        "rx_filtered": None
        if stats.rx_filtered is None or base.rx_filtered is None
        else stats.rx_filtered - base.rx_filtered,
        "rx_dropped": stats.rx_dropped - base.rx_dropped,
        "other_cpu": other_cpu,
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


#: Each method and the one it is paired with.
BASE_OF = {"kernel": "none", "userspace": "none", "scapy": "none", "idle-kernel": "idle"}
METHODS = ["none", "kernel", "userspace", "scapy", "idle", "idle-kernel"]
METRICS = ("written_per_s", "delivered_per_s")
LABELS = {
    "none": "none: every frame read, matches counted with `Batch.filter`",
    "kernel": "kernel: `set_filter(expr)`, eBPF on the TAP",
    "userspace": 'userspace: `set_filter(expr, placement="userspace")`, Rust interpreter',
    "scapy": "scapy: `sniff(opened_socket=VnetioSocket(b), lfilter=...)`",
    "idle": "idle: B open, never read",
    "idle-kernel": "idle-kernel: B never read, kernel filter set",
}


def main() -> int:
    ap = cli.parser(
        __doc__, repeat=5, repeat_help="pairs kept per method and its base", benchmarks_md=True
    )
    ap.add_argument("--methods", type=cli.str_list, default=METHODS, help=",".join(METHODS))
    add_pairing_arguments(ap)
    ap.add_argument("--child-writer", metavar="NETNS", help=argparse.SUPPRESS)
    ap.add_argument("--tap", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_writer:
        child_writer(args.child_writer, args.tap, args.seconds)
        return 0
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s): {', '.join(unknown)}; known: {', '.join(METHODS)}")
    check_pairing_arguments(ap, args)
    comps = [
        Comparison(m, BASE_OF[m], METRICS, args.repeat, args.max_pairs, tag=m)
        for m in args.methods
        if m in BASE_OF and BASE_OF[m] in args.methods
    ]
    if not comps:
        ap.error(
            "--methods must hold a method and its base: "
            + ", ".join(f"{m} with {b}" for m, b in BASE_OF.items())
        )
    cli.require_privileges("filter_loop")
    command = command_line(relative(sys.executable), relative(sys.argv[0]))
    load_start = uptime_line()

    def run(c: Comparison, method: str) -> dict[str, Any]:
        with BridgeLoop("filter") as loop:
            r = run_once(loop, method, args.seconds)
        log(json.dumps(r))
        return r

    def progress(c: Comparison, p: Pair) -> None:
        status = f"DISCARDED ({p.noise})" if p.noise else "kept"
        log(
            f"  {c.a} vs {c.b}, pair {len(c.pairs)} ({len(c.kept())}/{c.want} kept), "
            f"{p.first} first: writer {p.ratios.get('written_per_s', 0):.2f}×, {status}"
        )

    rule = OtherCpuRule.from_args(args)
    errors = (BenchError, TimeoutError, TopologyError)
    interleave(comps, run, rule.noisy, errors=errors, progress=progress, uneven=rule.uneven())
    text = render(args, command, comps, (load_start, uptime_line()))
    raw = {
        **run_record(command, load_start, uptime_line()),
        "expression": EXPR,
        "match_every": MATCH_EVERY,
        "comparisons": [c.to_json() for c in comps],
    }
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)
    return 0


def render(
    args: argparse.Namespace, command: str, comps: list[Comparison], load: tuple[str, str]
) -> str:
    med = statistics.median
    out = [
        "## Filters at a 1% match rate, in paired runs",
        "",
        (
            f"`{command}` (as root; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"kernel {platform.release()}, {os.cpu_count()} cores; load (`uptime`) at the "
            f"start {load[0]}, at the end {load[1]}). A writer process sends 64-byte UDP "
            f"frames into TAP A of a bridge loop as fast as it can for {args.seconds:g} s, one "
            f"in {MATCH_EVERY} to port 53; a Python reader on TAP B wants `{EXPR}`. Each run "
            "has a fresh namespace and writer. Each method is paired with its base (`none`, "
            "or `idle` for `idle-kernel`): one run of each back to back, the order "
            "alternating; *vs base* = median of the per-pair ratios, with their range. The "
            "row's figures are medians over its runs in the kept pairs (a base's: over every "
            "comparison it is the base of). *written/s* = the writer's rate (a kernel filter "
            "must not slow it); *matches delivered/s* = matching frames the reader got per "
            "second; *match loss* = matching frames written but not delivered; "
            "`rx_filtered`, `rx_dropped` = vnetio's counters for the run; *other CPU* = the "
            "share of both CPUs used by anything but the reader (this process) and the writer."
        ),
        "",
        *table_head(
            [
                "method",
                "pairs kept / run",
                "written/s",
                "writer vs base (kept pairs)",
                "matches delivered/s",
                "delivered vs `none`",
                "match loss",
                "rx_filtered",
                "rx_dropped",
                "other CPU",
                "writer vs base, all pairs",
            ],
            "lrrrrrrrrrr",
        ),
    ]
    bases = list(dict.fromkeys(c.b for c in comps))
    rows: list[tuple[str, list[dict[str, Any]], Comparison | None]] = []
    for base in bases:
        rows.append((base, [r for c in comps if c.b == base for r in c.side_runs(base)], None))
        rows += [(c.a, c.side_runs(c.a), c) for c in comps if c.b == base]
    for m, runs, c in rows:
        if not runs:
            out.append(table_row([LABELS[m], "0", *["—"] * 9]))
            continue
        idle = m.startswith("idle")
        filt = [r["rx_filtered"] for r in runs]
        out.append(
            table_row(
                [
                    LABELS[m],
                    "(base)" if c is None else f"{len(c.kept())} / {len(c.pairs)}",
                    f"{med(r['written_per_s'] for r in runs):,.0f}",
                    "1 (base)" if c is None else c.cell("written_per_s"),
                    "—" if idle else f"{med(r['delivered_per_s'] for r in runs):,.0f}",
                    "—" if idle or c is None else c.cell("delivered_per_s"),
                    "—" if idle else _range_pct([r["match_loss"] for r in runs]),
                    "—" if m in ("none", "scapy") or None in filt else f"{med(filt):,.0f}",
                    "—" if m == "scapy" else f"{med(r['rx_dropped'] for r in runs):,.0f}",
                    f"{med(r['other_cpu'] for r in runs) * 100:.0f}%",
                    "" if c is None else c.all_pairs_cell("written_per_s"),
                ]
            )
        )
    out += [
        "",
        OtherCpuRule.from_args(args).report_line(
            "work other than the reader and the writer", comps, args
        ),
        "",
        *(f"- {c.a} vs {c.b}: {c.discard_note()}" for c in comps),
        "",
    ]
    return "\n".join(out)


def _range_pct(values: list[float]) -> str:
    """Median percentage, with the range when the values differ."""
    mid = statistics.median(values) * 100
    lo, hi = min(values) * 100, max(values) * 100
    return f"{mid:.2f}%" if hi - lo < 0.005 else f"{mid:.2f}% ({lo:.2f}–{hi:.2f})"


if __name__ == "__main__":
    cli.run_main(main)
