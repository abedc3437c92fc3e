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
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import vnetio
from vnetio._topology import BridgeLoop

EXPR = "udp dst port 53"
MATCH_EVERY = 100

WRITER = textwrap.dedent(
    """
    import struct, sys, time, vnetio
    from vnetio._topology import build_frame
    ns, seconds = sys.argv[1], float(sys.argv[2])
    base = bytearray(build_frame(64))
    def udp(dport):
        f = bytearray(base)
        f[12:14] = b"\\x08\\x00"
        f[14:34] = bytes([0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2])
        f[34:42] = struct.pack("!HHHH", 4000, dport, 30, 0)
        return bytes(f)
    frames = [udp(53 if i % {every} == 0 else 80) for i in range(400)]
    batch = vnetio.Batch.from_frames(frames)
    with vnetio.Tap("vnA", netns=ns) as a:
        print("ready", flush=True)
        sys.stdin.readline()
        sent = 0
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            sent += a.send_batch(batch)
        elapsed = time.perf_counter() - start
        print(sent, elapsed, flush=True)
    """
).replace("{every}", str(MATCH_EVERY))


def run_once(loop: BridgeLoop, method: str, seconds: float) -> dict[str, Any]:
    b = vnetio.Tap(loop.tap_b, netns=loop.netns)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, loop.netns, str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdin and writer.stdout
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError("writer failed to start")
        loop.wait_forwarding(loop.tap_a, loop.tap_b)
        while len(b.recv_batch(512, timeout=0.05)):
            pass
        if method in ("kernel", "idle-kernel"):
            assert b.set_filter(EXPR) == "kernel"
        elif method == "userspace":
            assert b.set_filter(EXPR, placement="userspace") == "userspace"
        base = b.stats()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        start = time.perf_counter()
        if method == "scapy":
            matched = scapy_reader(b, seconds)
        elif method.startswith("idle"):
            time.sleep(seconds + 0.2)  # nobody reads: the writer's cost alone
            matched = 0
        else:
            matched = vnetio_reader(b, seconds, count_matches=method == "none")
        reader_time = time.perf_counter() - start
        sent_s, elapsed_s = writer.stdout.readline().split()
        writer.wait(timeout=10)
        sent, elapsed = int(sent_s), float(elapsed_s)
        stats = b.stats()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", default="none,kernel,userspace,scapy,idle,idle-kernel")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    methods = args.methods.split(",")
    results: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        for method in methods:
            with BridgeLoop("filter") as loop:
                r = run_once(loop, method, args.seconds)
            r["repeat"] = rep
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    table = summarize(results, methods, args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def summarize(results: list[dict[str, Any]], methods: list[str], args: Any) -> str:
    def med(method: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["method"] == method)

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
            pairs = [
                (k["written_per_s"], i["written_per_s"])
                for k in results
                if k["method"] == m
                for i in results
                if i["method"] == "idle" and i["repeat"] == k["repeat"]
            ]
            ratio = f"{statistics.median(k / i for k, i in pairs):.2f}x idle"
        lines.append(f"| {m} | {w:,.0f} | {ratio} | {delivered} | {loss} | {filt_s} | {drop_s} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
