#!/usr/bin/env python3
"""Checksums from Python: vnetio against scapy, the same work on both sides, in paired runs.

Two comparisons, reported as separate rows:

* **same work** — the Internet checksum (RFC 1071) of the same bytes: scapy's own routine,
  ``scapy.utils.checksum(data)`` (the one its layers call), against
  ``vnetio.checksum.internet_checksum(data)``; both return the value a checksum field holds,
  checked equal before timing. ``--sizes`` gives the lengths (default 64, 576, 1500).
* **end to end: fix a frame's checksums** — a 1514-byte Ethernet/IPv4/TCP frame whose IPv4
  and TCP checksums must be (re)computed. scapy's way is to delete the fields and serialise
  the packet (``p.copy()``, ``del p[IP].chksum, p[TCP].chksum``, ``raw(p)``: all four
  layers built again, the checksums among them); vnetio's is ``checksum.fix(frame)`` on a
  ``bytearray`` (one frame per Python call) or ``Batch.fix_checksums()`` (256 frames per
  call, GIL released; per frame). Not the same work: this row is what a user doing the job
  each way pays, not a comparison of checksum routines.

One run times one side alone for ``--seconds`` (calls repeated in a loop; the figure is
calls per CPU second of this single-threaded process, which time-sharing with other work
does not lower; calls per wall second are kept in the raw data too). A pair = vnetio's run
and scapy's, back to back, the order alternating; the ratio is vnetio's rate over scapy's. Noise: a run is noisy when this process got less
than ``--min-cpu`` of a CPU during it (its CPU time over wall time: other work took the CPU
away), and a pair with a noisy run is discarded and replaced (``benches/harness/pairing.py``).

Usage: ``python benches/checksum_scapy.py [--repeat 5] [--out FILE] [--json FILE]``
(no root needed).
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import vnetio
from harness import cli
from harness.pairing import (
    Comparison,
    Pair,
    criterion_line,
    interleave,
    uneven_by,
    uptime_line,
)
from harness.procs import log
from harness.report import command_line, emit, relative, table_head, table_row, write_section
from vnetio import checksum

try:
    from scapy.compat import raw
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import checksum as scapy_checksum
except ImportError as exc:  # pragma: no cover - the message is the point
    raise SystemExit(
        f"checksum_scapy: scapy is needed ({exc}); pip install 'vnetio[scapy]'"
    ) from None

BATCH = 256
PAYLOAD = bytes(range(256)) * 5 + bytes(1500 - 20 - 20 - 1280)


def packet() -> Any:
    return (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / TCP(sport=1234, dport=80, seq=1, flags="A")
        / PAYLOAD
    )


def data_of(size: int) -> bytes:
    """``size`` bytes of the test frame's IP packet (repeated when longer)."""
    body = raw(packet())[14:]
    return (body * (size // len(body) + 1))[:size]


#: One case: (label, the vnetio side, the scapy side, calls per vnetio call's unit of work).
Case = tuple[str, Callable[[], object], Callable[[], object], int]


def cases(sizes: list[int]) -> dict[str, Case]:
    out: dict[str, Case] = {}
    for size in sizes:
        data = data_of(size)
        if checksum.internet_checksum(data) != scapy_checksum(data):
            raise SystemExit(f"checksum_scapy: the two checksums of {size} bytes differ")
        out[f"sum-{size}"] = (
            (
                f"same work: Internet checksum of {size} bytes — `internet_checksum(data)` vs "
                "`scapy.utils.checksum(data)`"
            ),
            functools.partial(checksum.internet_checksum, data),
            functools.partial(scapy_checksum, data),
            1,
        )
    pkt = packet()
    good = raw(pkt)
    broken = bytearray(good)
    broken[14 + 10 : 14 + 12] = b"\0\0"  # IPv4 header checksum
    broken[14 + 20 + 16 : 14 + 20 + 18] = b"\0\0"  # TCP checksum

    def scapy_fix() -> bytes:
        p = pkt.copy()
        del p[IP].chksum
        del p[TCP].chksum
        return raw(p)

    frame = bytearray(broken)
    vnetio_fix_one = functools.partial(checksum.fix, frame)  # recomputes both every call
    if scapy_fix() != good:
        raise SystemExit("checksum_scapy: scapy's serialisation does not rebuild the frame")
    vnetio_fix_one()
    if bytes(frame) != good:
        raise SystemExit("checksum_scapy: checksum.fix did not rebuild the frame")
    batch = vnetio.Batch.from_frames([bytes(broken)] * BATCH)
    if batch.fix_checksums().verify_checksums() != [True] * BATCH:
        raise SystemExit("checksum_scapy: Batch.fix_checksums left a bad checksum")
    end_to_end = "end to end: fix a 1514-byte TCP frame's IPv4 and TCP checksums — "
    out["fix-one"] = (
        end_to_end + "vnetio `checksum.fix(bytearray)`, one frame per call, vs scapy "
        "`del p[IP].chksum, p[TCP].chksum; raw(p)` on a `p.copy()` (serialises all four layers)",
        vnetio_fix_one,
        scapy_fix,
        1,
    )
    out["fix-batch"] = (
        end_to_end + f"vnetio `Batch.fix_checksums()`, {BATCH} frames per call (per frame), vs "
        "the same scapy serialisation",
        batch.fix_checksums,
        scapy_fix,
        BATCH,
    )
    return out


def time_calls(fn: Callable[[], object], seconds: float) -> dict[str, Any]:
    """Call ``fn`` in a loop for about ``seconds``: calls per wall second and per CPU second
    of this process, and the share of a CPU it got meanwhile."""
    n, chunk = 0, 1
    c0, t0 = time.process_time(), time.perf_counter()
    while True:
        for _ in range(chunk):
            fn()
        n += chunk
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
        chunk = min(chunk * 2, 1 << 16)
    cpu = time.process_time() - c0
    return {
        "calls": n,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "calls_per_s": n / elapsed,
        "calls_per_cpu_s": n / cpu if cpu > 0 else 0.0,
        "cpu_share": cpu / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(
        __doc__,
        seconds=0.5,
        repeat=5,
        repeat_help="pairs (vnetio, scapy) kept per case",
        sizes="64,576,1500",
        benchmarks_md=True,
    )
    p.add_argument(
        "--max-pairs", type=int, default=None, help="pairs run at most per case (2 × --repeat)"
    )
    p.add_argument(
        "--min-cpu",
        type=float,
        default=0.5,
        help="a run is noisy when this process got less than this share of a CPU (0.5)",
    )
    p.add_argument(
        "--max-cpu-diff",
        type=float,
        default=0.2,
        help="... or when the CPU shares of a pair's two runs differ by more than this (0.2)",
    )
    args = p.parse_args(argv)
    args.max_pairs = args.max_pairs or 2 * args.repeat
    if args.repeat < 1 or args.max_pairs < args.repeat:
        p.error("--repeat must be at least 1 and --max-pairs at least --repeat")
    command = command_line(relative(sys.executable), relative(sys.argv[0]))
    load_start = uptime_line()
    all_cases = cases(args.sizes)
    comps = [
        Comparison(
            "vnetio",
            "scapy",
            ("calls_per_cpu_s", "calls_per_s"),
            args.repeat,
            args.max_pairs,
            tag=key,
        )
        for key in all_cases
    ]

    def run(c: Comparison, side: str) -> dict[str, Any]:
        _, mine, theirs, _ = all_cases[c.tag]
        time_calls(mine if side == "vnetio" else theirs, 0.05)  # warm up
        return time_calls(mine if side == "vnetio" else theirs, args.seconds)

    def noisy(r: dict[str, Any]) -> str | None:
        share = r["cpu_share"]
        return f"got {share:.0%} of a CPU" if share < args.min_cpu else None

    def progress(c: Comparison, pair: Pair) -> None:
        status = f"DISCARDED ({pair.noise})" if pair.noise else "kept"
        log(
            f"{c.tag} pair {len(c.pairs)} ({len(c.kept())}/{c.want} kept), {pair.first} first: "
            f"{pair.ratios.get('calls_per_cpu_s', 0):.1f}×, {status}"
        )

    uneven = uneven_by("cpu_share", args.max_cpu_diff, "the CPU share")
    interleave(comps, run, noisy, progress=progress, uneven=uneven)
    text = render(args, command, comps, all_cases, (load_start, uptime_line()))
    raw_data = {"command": command, "comparisons": [c.to_json() for c in comps]}
    emit(text, args.out, args.json, raw_data)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)
    return 0


def per_unit_ns(runs: list[dict[str, Any]], unit: int) -> str:
    """Median time per unit of work (a call, or a frame of a batch call), in ns or µs."""
    ns = statistics.median(1e9 / r["calls_per_cpu_s"] for r in runs) / unit
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"


def render(
    args: argparse.Namespace,
    command: str,
    comps: list[Comparison],
    all_cases: dict[str, Case],
    load: tuple[str, str],
) -> str:
    out = [
        "### From Python: vnetio against scapy, in paired runs",
        "",
        (
            f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python "
            f"{platform.python_version()}, scapy {_scapy_version()}, vnetio "
            f"{vnetio.__version__}; load (`uptime`) at the start {load[0]}, at the end "
            f"{load[1]}). Each run calls one side in a loop for {args.seconds:g} s; a pair is "
            "one run of each, back to back, the order alternating. Times are CPU time of "
            "this (single-threaded) process per call, or per frame of a batch call: being "
            "descheduled while other work runs does not count in them, sharing caches and "
            "cores with it still does. *vnetio / scapy* = median of the per-pair ratios of "
            "calls per CPU second (range; pairs kept; per frame for the batch row); the times "
            "are medians over the runs of the kept pairs (all pairs when none was kept); the wall-clock rates are in the "
            "`--json` file."
        ),
        "",
        *table_head(
            ["row", "vnetio", "scapy", "vnetio / scapy (kept pairs)", "all pairs"], "lrrrr"
        ),
    ]
    for c in comps:
        label, _, _, unit = all_cases[c.tag]
        mine = per_unit_ns(c.side_runs("vnetio"), unit)
        theirs = per_unit_ns(c.side_runs("scapy"), 1)
        ratio = [r * unit for r in c.ratios("calls_per_cpu_s")]
        every = [r * unit for r in c.ratios("calls_per_cpu_s", noisy_too=True)]
        kept = _cell(ratio, len(ratio))
        out.append(table_row([label, mine, theirs, kept, _cell(every, len(every))]))
    out += [
        "",
        criterion_line(
            "when, during either of its runs, the timing process got less than "
            f"{args.min_cpu:.0%} of a CPU (its CPU time over the wall time: other work took the "
            "CPU away), or when the two runs' shares differ by more than "
            f"{args.max_cpu_diff * 100:.0f} points",
            comps,
        ),
        "",
        *(f"- {c.tag}: {c.discard_note()}" for c in comps),
        "",
    ]
    return "\n".join(out)


def _cell(ratios: list[float], n: int) -> str:
    if not ratios:
        return "—"
    med = statistics.median(ratios)
    fmt = "{:.0f}" if med >= 100 else "{:.1f}"
    span = f"{fmt.format(min(ratios))}–{fmt.format(max(ratios))}"
    return f"{fmt.format(med)}× ({span}; {n} pair{'s' * (n != 1)})"


def _scapy_version() -> str:
    import scapy

    return str(scapy.VERSION)


if __name__ == "__main__":
    cli.run_main(main)
