"""Bridge loop with 64 KiB TCP super-frames, written and read from Python, against a native
Rust loop doing the same, in pairs of back-to-back runs (target: Python ≥ 0.9× native,
≤ 1% of super-frames lost to a full ring).

Topology: a private namespace with a bridge and two TAPs, A and B (``vnetio._topology.
BridgeLoop``: STP and br_netfilter off, IPv6 off). Both TAPs are opened with offload
(IFF_VNET_HDR + TUNSETOFFLOAD CSUM|TSO4|TSO6), so the bridge carries each super-frame
whole from A to B (TAP-FACTS pitfall 8). Both loops use the same adapters and the same
queue length (B's txqueuelen, 1000 frames unless changed).

The frame: Ethernet (our source MAC, an unowned unicast destination the bridge floods to
B), IPv4, TCP, ``--payload`` bytes (default 65 000: a 65 054-byte frame), offload metadata
``gso_type=tcpv4, gso_size=1448, needs_csum`` with the pseudo-header sum in the TCP
checksum field. Python: a writer thread sends a prebuilt ``Batch`` of ``--batch`` such
frames (``send_batch``), the main thread reads B in ``rx_mode="superframes"``
(``recv_batch(256)``); both release the GIL in every call. Native
(``examples/native_superframe_loop.rs``): the same bytes (header + frame, from a file the
script writes), one ``write()`` / ``read()`` per frame, two threads; its writer writes
``--native-copies`` copies of them in turn (default ``--batch``: the same 4 MiB of
distinct frames the Python batch holds; 1 writes one cache-hot buffer again and again).

Figures per run: delivered = super-frames of exactly that length read from B within
``--seconds``; dropped = B's kernel ``tx_dropped`` counter over the run (a frame that found
B's ring full: the one place the unpaced writer's excess goes), as a share of the frames
written. Frames still queued when the reader stops are neither delivered nor dropped.

Pairs: each pair runs both loops back to back, native first in odd pairs and Python first
in even ones, and gives one ratio (Python's delivered Gbit/s over native's); the report
shows the median of the ratios with their range. A run is noisy when processes outside the
measurement used more than ``--max-other`` of a core during it (all CPU time from
/proc/stat, less the measured process's own); a noisy pair is discarded and another run in
its place, up to ``--max-pairs``; with ``--idle-wait S`` each pair first waits up to S
seconds for the machine to be idle. (``_pairs`` is this script's own small pairing; it
follows ``harness/pairing.py``'s rules where that exists, and can be swapped for it.)
Run as root::

    .venv/bin/python benches/superframe_loop.py --out bench-results/superframe_loop.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import vnetio
from harness import cli
from harness.procs import EXAMPLES, Contention, build_example, log
from harness.report import command_line, emit, write_section
from vnetio._topology import DST_MAC, SRC_MAC, BridgeLoop, mac_bytes

NATIVE = EXAMPLES / "native_superframe_loop"
OTHER_BENCHMARKS = ("bridge_loop", "native_bridge", "benches/forwarder.py", "native_forwarder")
MSS = 1448


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def superframe(payload: int) -> tuple[bytes, dict[str, object], bytes]:
    """(frame, offload metadata, the 10-byte virtio-net header for the native loop)."""
    src, dst = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
    tcp_len = 20 + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    pseudo = ~checksum(src + dst + struct.pack("!BBH", 0, 6, tcp_len)) & 0xFFFF
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, 1, 1, 0x50, 0x10, 65535, pseudo, 0)
    eth = mac_bytes(DST_MAC) + mac_bytes(SRC_MAC) + b"\x08\x00"
    frame = eth + ip + tcp + bytes(i % 251 for i in range(payload))
    meta: dict[str, object] = {
        "gso_type": "tcpv4",
        "gso_size": MSS,
        "hdr_len": 54,
        "csum_start": 34,
        "csum_offset": 16,
        "needs_csum": True,
    }
    vnet_hdr = struct.pack("<BBHHHH", 1, 1, 54, MSS, 34, 16)
    return frame, meta, vnet_hdr


@dataclass
class Sample:
    written: int
    delivered: int
    nbytes: int
    seconds: float
    writer_cpu: float = 0.0  # CPU seconds of the writer thread
    reader_cpu: float = 0.0  # CPU seconds of the reader thread
    dropped: int = 0  # B's tx_dropped over the run: frames that found its ring full
    other_cores: float = 0.0  # CPU of processes outside the measurement, cores
    busy_cores: float = 0.0  # CPU of the whole machine during the run, cores

    @property
    def gbps(self) -> float:
        return self.nbytes * 8 / self.seconds / 1e9

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds

    @property
    def loss(self) -> float:
        """Frames dropped because B's ring was full, as a share of the frames written."""
        return self.dropped / self.written if self.written else 0.0

    @property
    def writer_us(self) -> float:
        """Writer CPU per frame written, µs."""
        return self.writer_cpu / self.written * 1e6 if self.written else 0.0

    @property
    def reader_us(self) -> float:
        """Reader CPU per frame delivered, µs."""
        return self.reader_cpu / self.delivered * 1e6 if self.delivered else 0.0

    def to_json(self) -> dict[str, float]:
        d: dict[str, float] = dataclasses.asdict(self)
        d.update(
            gbps=self.gbps,
            per_s=self.per_s,
            loss=self.loss,
            writer_us=self.writer_us,
            reader_us=self.reader_us,
        )
        return d


def busy_ticks() -> int:
    """Clock ticks all CPUs spent busy so far (/proc/stat: everything but idle, iowait and
    steal)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return user + nice + system + irq + softirq


def tx_dropped(loop: BridgeLoop) -> int:
    path = f"/sys/class/net/{loop.tap_b}/statistics/tx_dropped"
    return int(loop.run_in_ns(["cat", path]).stdout)


def measured(loop: BridgeLoop, run: Callable[[], Sample], own_cpu: Callable[[], float]) -> Sample:
    """``run()`` with B's drops and the machine's other CPU use around it. ``own_cpu()`` is
    the CPU seconds of the measured process(es) so far."""
    tck = os.sysconf("SC_CLK_TCK")
    drops0, busy0, own0, t0 = tx_dropped(loop), busy_ticks(), own_cpu(), time.monotonic()
    s = run()
    wall = time.monotonic() - t0
    busy = (busy_ticks() - busy0) / tck
    s.dropped = tx_dropped(loop) - drops0
    s.busy_cores = busy / wall
    s.other_cores = max(0.0, busy - (own_cpu() - own0)) / wall
    return s


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def python_loop(
    loop: BridgeLoop, frame: bytes, meta: dict[str, object], args: argparse.Namespace
) -> Sample:
    b = vnetio.Tap(loop.tap_b, netns=loop.netns, offload=True, rx_mode="superframes")
    a = vnetio.Tap(loop.tap_a, netns=loop.netns, offload=True, rx_mode="superframes")
    try:
        loop.wait_forwarding()
        batch = vnetio.Batch.from_frames([frame] * args.batch, offload=[meta] * args.batch)
        stop = threading.Event()
        written = 0
        writer_cpu = 0.0

        def writer() -> None:
            nonlocal written, writer_cpu
            cpu0 = time.thread_time()
            while not stop.is_set():
                written += a.send_batch(batch)
            writer_cpu = time.thread_time() - cpu0

        want = len(frame)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        delivered = 0
        cpu0 = time.thread_time()
        start = time.perf_counter()
        end = start + args.seconds
        while time.perf_counter() < end:
            rx = b.recv_batch(256, timeout=0.1)
            delivered += rx.lengths.count(want)
        seconds = time.perf_counter() - start
        reader_cpu = time.thread_time() - cpu0
        stop.set()
        t.join(5)
        return Sample(written, delivered, delivered * want, seconds, writer_cpu, reader_cpu)
    finally:
        a.close()
        b.close()


def native_loop(
    loop: BridgeLoop, frame: bytes, vnet_hdr: bytes, args: argparse.Namespace
) -> Sample:
    with tempfile.NamedTemporaryFile(prefix="vnetio-superframe-", suffix=".bin") as f:
        f.write(vnet_hdr + frame)
        f.flush()
        argv = [str(NATIVE), "--a", loop.tap_a, "--b", loop.tap_b, "--frame", f.name,
                "--seconds", str(args.seconds), "--copies", str(args.native_copies)]  # fmt: skip
        out = loop.run_in_ns(argv).stdout
    r = json.loads(out)
    return Sample(
        r["written"], r["delivered"], r["bytes"], r["seconds"], r["writer_cpu"], r["reader_cpu"]
    )


@dataclass
class Pair:
    index: int
    first: str
    runs: dict[str, Sample]
    load: tuple[float, float]  # 1-minute load average before and after
    noise: str | None

    @property
    def ratio(self) -> float:
        """Python's delivered Gbit/s over native's."""
        return self.runs["python"].gbps / self.runs["native"].gbps

    @property
    def cpu_ratio(self) -> float:
        """Native's CPU per frame (writer per frame written + reader per frame read) over
        Python's: above 1 when Python spent less. It holds its meaning when other work
        takes CPU time from both loops, where the throughput ratio does not."""
        n, p = self.runs["native"], self.runs["python"]
        return (n.writer_us + n.reader_us) / (p.writer_us + p.reader_us)

    def to_json(self) -> dict[str, object]:
        return {
            "pair": self.index + 1,
            "first": self.first,
            "ratio": self.ratio,
            "cpu_ratio": self.cpu_ratio,
            "discarded": self.noise,
            "loadavg_before_after": list(self.load),
            **{k: v.to_json() for k, v in self.runs.items()},
        }


def wait_idle(max_busy: float, timeout: float) -> float:
    """Wait, at most ``timeout`` seconds, until the whole machine used less than
    ``max_busy`` cores over a 2-second look (nothing of ours runs meanwhile); the seconds
    waited."""
    tck = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        b0 = busy_ticks()
        time.sleep(2)
        if (busy_ticks() - b0) / tck / 2 < max_busy:
            break
    return time.monotonic() - t0


def _pairs(
    run: Callable[[str], Sample],
    want: int,
    max_pairs: int,
    max_other: float,
    idle_wait: float = 0.0,
) -> list[Pair]:
    """Pairs of runs, native first in odd pairs and Python first in even ones, until
    ``want`` calm pairs were kept or ``max_pairs`` were run; a pair is noisy (kept in the
    list, left out of the median) when either run saw more than ``max_other`` cores of
    other work. With ``idle_wait``, each pair first waits up to that many seconds for the
    machine to be idle (other work below ``max_other``)."""
    pairs: list[Pair] = []
    while len(pairs) < max_pairs and sum(p.noise is None for p in pairs) < want:
        if idle_wait > 0:
            waited = wait_idle(max_other, idle_wait)
            log(f"waited {waited:.0f} s for an idle machine")
        i = len(pairs)
        order = ("native", "python") if i % 2 == 0 else ("python", "native")
        load0 = os.getloadavg()[0]
        runs = {name: run(name) for name in order}
        why = [
            f"{k}: other processes used {s.other_cores:.2f} cores"
            for k, s in runs.items()
            if s.other_cores > max_other
        ]
        pair = Pair(i, order[0], runs, (load0, os.getloadavg()[0]), "; ".join(why) or None)
        pairs.append(pair)
        n, p = runs["native"], runs["python"]
        log(
            f"pair {i + 1}: "
            + " | ".join(
                f"{k} {s.gbps:5.1f} Gbit/s loss {s.loss:.2%} cpu/frame w {s.writer_us:4.1f} "
                f"r {s.reader_us:4.1f} µs other {s.other_cores:.2f}"
                for k, s in (("native", n), ("python", p))
            )
            + f" | ratio {pair.ratio:.2f} cpu {pair.cpu_ratio:.2f} load {load0:.1f}"
            + (" NOISY" if pair.noise else "")
        )
    return pairs


def cell(values: Sequence[float], fmt: str = ".2f", unit: str = "") -> str:
    """``median (min–max)``."""
    if not values:
        return "—"
    text = f"{statistics.median(values):{fmt}}{unit}"
    if len(values) > 1:
        text += f" ({min(values):{fmt}}–{max(values):{fmt}})"
    return text


def main() -> None:
    p = cli.parser(__doc__, repeat=5, repeat_help="calm pairs to keep", benchmarks_md=True)
    p.add_argument("--payload", type=int, default=65_000, help="TCP payload bytes (65000)")
    p.add_argument("--batch", type=int, default=64, help="super-frames per send_batch (64)")
    p.add_argument(
        "--native-copies",
        type=int,
        help="distinct copies of the frame the native writer cycles through (--batch)",
    )
    p.add_argument("--max-pairs", type=int, help="pairs run at most, noisy included (3 × --repeat)")
    p.add_argument(
        "--max-other",
        type=float,
        default=0.15,
        help="a run is noisy when other processes used more than this many cores (0.15)",
    )
    p.add_argument(
        "--idle-wait",
        type=float,
        default=0.0,
        help="before each pair, wait up to this many seconds for the machine to be idle "
        "(below --max-other cores of work) (0: do not wait)",
    )
    args = p.parse_args()
    args.native_copies = args.native_copies or args.batch
    args.max_pairs = args.max_pairs or 3 * args.repeat
    if args.native_copies < 1 or args.batch < 1 or args.max_pairs < args.repeat:
        p.error("--batch and --native-copies must be at least 1, --max-pairs at least --repeat")
    cli.require_privileges("superframe_loop")
    build_example("native_superframe_loop")
    frame, meta, vnet_hdr = superframe(args.payload)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()
    contention = Contention(OTHER_BENCHMARKS)
    with BridgeLoop("superframe") as loop:
        txqlen = int(loop.run_in_ns(["cat", f"/sys/class/net/{loop.tap_b}/tx_queue_len"]).stdout)

        def run(name: str) -> Sample:
            contention.wait_calm()
            if name == "native":
                return measured(
                    loop, lambda: native_loop(loop, frame, vnet_hdr, args), children_cpu
                )
            return measured(loop, lambda: python_loop(loop, frame, meta, args), self_cpu)

        pairs = _pairs(run, args.repeat, args.max_pairs, args.max_other, args.idle_wait)
    load_end = os.getloadavg()
    kept = [q for q in pairs if q.noise is None]
    shown = kept or pairs
    ratios = [q.ratio for q in kept]
    cmd = command_line()
    labels = {
        "native": "native Rust, `write()`/`read()` one per call (examples/native_superframe_loop.rs)",
        "python": f"Python + vnetio, `send_batch` of {args.batch} / `recv_batch(256)` (2 threads)",
    }
    lines = [
        "## Bridge loop with 64 KiB TCP super-frames: Python vs native",
        "",
        (
            f"`{cmd}` (as root; {started}; kernel {platform.release()}, {os.cpu_count()} cores; "
            f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end). "
            f"Two TAPs on a bridge, offload on both, B's ring {txqlen} frames; "
            f"{len(frame)}-byte TCPv4 super-frames (gso_size {MSS}) written unpaced into A, "
            f"read from B in super-frame mode for {args.seconds:g} s per run. The native "
            f"writer cycles through {args.native_copies} copies of the frame, the Python "
            f"batch holds {args.batch}."
        ),
        "",
        (
            "| loop | delivered Gbit/s | super-frames/s | dropped, B's ring full "
            "| writer CPU per frame | reader CPU per frame |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("native", "python"):
        v = [q.runs[name] for q in shown]
        lines.append(
            f"| {labels[name]} | {cell([s.gbps for s in v], '.1f')} | "
            f"{cell([s.per_s / 1e3 for s in v], '.0f', ' k')} | "
            f"{cell([s.loss * 100 for s in v], '.2f', '%')} | "
            f"{cell([s.writer_us for s in v], '.1f', ' µs')} | "
            f"{cell([s.reader_us for s in v], '.1f', ' µs')} |"
        )
    verdict = "met" if ratios and statistics.median(ratios) >= 0.9 else "NOT met"
    over = [q for q in shown if q.runs["python"].loss > 0.01]
    drops = (
        f"Python's drops were ≤ 1% in every {'kept' if kept else ''} pair"
        if not over
        else f"Python's drops were above 1% in {len(over)} of {len(shown)} "
        f"{'kept' if kept else ''} pairs (native's in "
        f"{sum(q.runs['native'].loss > 0.01 for q in shown)})"
    )
    lines += [
        "",
        (
            f"Python / native, median of per-pair ratios: **{cell(ratios)}** over "
            f"{len(kept)} calm pair{'s' * (len(kept) != 1)} (all {len(pairs)} pairs, noisy "
            f"ones included: {cell([q.ratio for q in pairs])}); target ≥ 0.90: {verdict}. "
            f"{' '.join(drops.split())}. CPU per frame, writer's plus reader's, native / "
            f"Python (above 1: Python spent less; meaningful on a busy machine too): "
            f"{cell([q.cpu_ratio for q in kept])} over the kept pairs, "
            f"{cell([q.cpu_ratio for q in pairs])} over all. Medians and ranges in the "
            f"table are over the {'kept' if kept else 'noisy (none was calm)'} pairs' runs."
        ),
        "",
        (
            f"Pairs: one run of each loop back to back, native first in odd pairs, Python in "
            f"even ones; one ratio per pair. A pair is discarded as noisy, and another run in "
            f"its place (at most {args.max_pairs} in all), when during either run processes "
            f"outside the measurement used more than {args.max_other:.2f} of a core"
            + (
                f" (each pair first waited up to {args.idle_wait:g} s for an idle machine)"
                if args.idle_wait
                else ""
            )
            + ": "
            f"{len(pairs) - len(kept)} of {len(pairs)} discarded"
            + (
                " (" + "; ".join(f"pair {q.index + 1}: {q.noise}" for q in pairs if q.noise) + ")"
                if len(kept) < len(pairs)
                else ""
            )
            + ". Per pair (ratio, load average before): "
            + ", ".join(f"{q.ratio:.2f}{'*' if q.noise else ''} ({q.load[0]:.1f})" for q in pairs)
            + (" (* noisy)." if len(kept) < len(pairs) else ".")
        ),
        "",
        (
            f"Contention: waited {contention.waited_s:.0f} s for {', '.join(sorted(contention.seen))} "
            "to finish; no run overlapped another benchmark."
            if contention.seen
            else "Contention: no other benchmark was running during any run."
        ),
        "",
    ]
    text = "\n".join(lines)
    raw = {
        "command": cmd,
        "started": started,
        "txqueuelen": txqlen,
        "args": {k: v for k, v in vars(args).items() if not isinstance(v, Path)},
        "pairs": [q.to_json() for q in pairs],
    }
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)


if __name__ == "__main__":
    cli.run_main(main)
