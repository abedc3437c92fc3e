#!/usr/bin/env python3
"""Cross-implementation benchmark on the "bridge loop": frames written into TAP A, read from TAP B.

Each implementation runs in a child process of its own, started inside a fresh private
network namespace (``vnetio._topology.BridgeLoop``: a bridge with two persistent TAPs, IPv6
and br_netfilter off) that is created for that one run and deleted after it, so no frame
queued by one run can reach the next. The child attaches its reader to B first, then its
writer to A, and says ``ready``; only then, once both bridge ports forward, does the timed
window start (interpreter start-up and imports are never timed). The child protocol is in
``benches/harness/child.py``.

Measured per run:

* written, by an unpaced writer thread, for ``--seconds``;
* delivered: frames of our own (size, source MAC, EtherType) read by the reader thread,
  which keeps reading after the writer stops until its ring is empty; delivered/s divides by
  the reader's time from the start until then;
* B's kernel ``TX dropped`` counter over the run (frames the full ring refused), and the
  loss ``1 - delivered / written``;
* noise: frames on B that are not ours, once with the writer idle (first repeat) and during
  the run.

Plus a reader-only ceiling: B's txqueuelen is raised to 262144 while a reader is attached
but not reading, a native writer queues ``--ceiling-frames`` frames, and only the reader's
draining of them is timed. ``--probe N`` adds ``examples/reader_probe.rs`` N times per
size: native and vnetio receive loops taking turns in one process on the same frames (CPU
per frame), which other work on the machine weighs on alike.

Usage (root): ``python benches/bridge_loop.py [--seconds 3] [--repeat 3] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import cli
from harness.pairing import (
    Comparison,
    OtherCpuRule,
    Pair,
    add_pairing_arguments,
    check_pairing_arguments,
    interleave,
    uptime_line,
)
from harness.procs import EXAMPLES, BenchError, Child, build_example, busy_ticks, cpu_ticks, log
from harness.report import command_line, emit, relative, table_head, table_row, write_section
from vnetio import _topology as topology

IMPLS_DIR = Path(__file__).resolve().parent / "impls"
NATIVE_BIN = EXAMPLES / "native_bridge"
CEILING_QLEN = 262144


@dataclass(frozen=True)
class ImplSpec:
    key: str
    label: str
    script: str | None  # benches/impls/<script>; None for the native binary
    #: Python modules the child needs, checked before running (every Python child imports
    #: ``vnetio._topology`` through ``benches/harness/child.py``)
    module: str | None


IMPLS = {
    "vnetio": ImplSpec(
        "vnetio", "vnetio `send_batch`/`recv_batch` (256)", "vnetio_batch.py", "vnetio._core"
    ),
    "os": ImplSpec("os", "Python `os.write`/`os.read`", "os_fd.py", "vnetio._topology"),
    "pytun": ImplSpec(
        "pytun", "python-pytun `write`/`read`", "pytun_rw.py", "vnetio._topology, pytun"
    ),
    "scapy": ImplSpec(
        "scapy",
        "scapy `TunTapInterface` `send`/`recv`",
        "scapy_tuntap.py",
        "vnetio._topology, scapy",
    ),
    "native": ImplSpec("native", "native Rust `write()`/`read()` (tun-tap)", None, None),
}
CEILING_IMPLS = ("vnetio", "os", "native")


# -- children ------------------------------------------------------------------------------


def child_argv(
    spec: ImplSpec, size: int, python: str, native_bin: Path, role: str = ""
) -> list[str]:
    extra = {"reader": ["--reader-only"], "writer": ["--writer-only"]}.get(role, [])
    if spec.script is None:
        base = [str(native_bin)] + (extra or ["--control"])
    else:
        base = [python, str(IMPLS_DIR / spec.script), *extra]
    return [*base, "--size", str(size)]


class CpuWatch:
    """CPU time the machine spent on anything but one child, as a share of all CPUs.

    Other sessions' builds or tests on the same machine distort a run; this makes that
    visible. Kernel work done in the child's system calls (the bridge, the TAP rings) is the
    child's own time; kernel threads and every other process count as "other".
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.busy0 = busy_ticks()
        self.child0 = cpu_ticks(pid)
        self.main0 = _main_thread_cpu_ns(pid)

    def process_cpu_ns(self) -> int:
        """CPU time of the whole child (all its threads, also ended ones) since the start."""
        return (cpu_ticks(self.pid) - self.child0) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def main_thread_cpu_ns(self) -> int:
        """CPU time of the child's main thread since the start (ns, from schedstat)."""
        return _main_thread_cpu_ns(self.pid) - self.main0

    def other_share(self) -> float:
        elapsed = time.monotonic() - self.t0
        busy = busy_ticks() - self.busy0
        child = cpu_ticks(self.pid) - self.child0
        hz = os.sysconf("SC_CLK_TCK")
        capacity = elapsed * hz * (os.cpu_count() or 1)
        return max(0.0, (busy - child) / capacity) if capacity > 0 else 0.0


def _main_thread_cpu_ns(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


# -- one run -------------------------------------------------------------------------------


def run_loop_once(
    spec: ImplSpec, size: int, seconds: float, noise_seconds: float, python: str, native: Path
) -> dict[str, Any]:
    with topology.BridgeLoop("bench") as loop:
        child = Child(loop.ns_argv(child_argv(spec, size, python, native)), f"{spec.key}/{size}")
        try:
            child.read(timeout=60)  # ready: imports and attach done, nothing timed yet
            loop.wait_forwarding()
            result: dict[str, Any] = {}
            if noise_seconds > 0:
                result["noise_idle"] = child.command(f"noise {noise_seconds}", 30 + noise_seconds)[
                    "frames"
                ]
            before = loop.counters(loop.tap_b)
            cpu = CpuWatch(child.proc.pid)
            run = child.command(f"run {seconds}", timeout=60 + seconds)
            result["other_cpu"] = cpu.other_share()
            result["process_cpu_ns"] = cpu.process_cpu_ns()
            after = loop.counters(loop.tap_b)
        finally:
            child.close()
    delivered, written = int(run["delivered"]), int(run["written"])
    result.update(
        written=written,
        write_errors=int(run.get("write_errors", 0)),
        write_seconds=float(run["write_seconds"]),
        delivered=delivered,
        seconds=float(run["seconds"]),
        noise_run=int(run.get("noise", 0)),
        tx_dropped=after["tx_dropped"] - before["tx_dropped"],
        tx_packets=after["tx_packets"] - before["tx_packets"],
    )
    result["rate"] = delivered / result["seconds"] if result["seconds"] > 0 else 0.0
    result["gbps"] = result["rate"] * size * 8 / 1e9
    result["loss"] = 1 - delivered / written if written else 0.0
    result["cpu_ns_per_frame"] = result["process_cpu_ns"] / delivered if delivered else 0.0
    return result


def run_ceiling_once(
    spec: ImplSpec, size: int, frames: int, python: str, native: Path
) -> dict[str, Any]:
    writer_spec = IMPLS["native"] if native.exists() else IMPLS["os"]
    with topology.BridgeLoop("ceil") as loop:
        argv = child_argv(spec, size, python, native, "reader")
        reader = Child(loop.ns_argv(argv), f"{spec.key}/rd")
        writer: Child | None = None
        try:
            reader.read(timeout=60)
            # Attached, not reading: grow B's ring so that it holds every frame queued below.
            loop.set_txqueuelen(loop.tap_b, CEILING_QLEN)
            argv = child_argv(writer_spec, size, python, native, "writer")
            writer = Child(loop.ns_argv(argv), "writer")
            writer.read(timeout=60)
            loop.wait_forwarding()
            before = loop.counters(loop.tap_b)
            wrote = writer.command(f"write {frames}", timeout=120)
            queued = loop.counters(loop.tap_b)
            cpu = CpuWatch(reader.proc.pid)
            drained = reader.command(f"drain {frames}", timeout=120)
            other_cpu = cpu.other_share()
            reader_cpu_ns = cpu.main_thread_cpu_ns()  # the drain runs in the main thread
        finally:
            reader.close()
            if writer is not None:
                writer.close()
    delivered, secs = int(drained["delivered"]), float(drained["seconds"])
    return {
        "written": int(wrote["written"]),
        "dropped_while_queueing": queued["tx_dropped"] - before["tx_dropped"],
        "delivered": delivered,
        "seconds": secs,
        "rate": delivered / secs if secs > 0 else 0.0,
        "gbps": delivered * size * 8 / secs / 1e9 if secs > 0 else 0.0,
        "other_cpu": other_cpu,
        "cpu_ns_per_frame": reader_cpu_ns / delivered if delivered else 0.0,
    }


# -- helpers -------------------------------------------------------------------------------


def check_available(spec: ImplSpec, python: str, native: Path) -> str | None:
    """Why ``spec`` cannot run here, or None."""
    if spec.script is None:
        return None if native.exists() else f"{native} not built"
    if spec.module is None:
        return None
    probe = subprocess.run(
        [python, "-c", f"import {spec.module}"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"cannot import {spec.module}: {last}"
    return None


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def fmt_count(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def machine_info(python: str) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    version = subprocess.run(
        [python, "-c", "import vnetio; print(vnetio.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        f"- machine: nproc {os.cpu_count()}, {cpu}, {mem} RAM",
        f"- kernel: {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_version()} ({python}); vnetio {version or 'not importable'}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]


# -- orchestration -------------------------------------------------------------------------

#: The figures each pair gives a ratio of (implementation over native).
METRICS = ("rate", "cpu_ns_per_frame")
RUN_ERRORS = (BenchError, TimeoutError, topology.TopologyError)


def comparisons(
    args: argparse.Namespace, runnable: list[str]
) -> tuple[list[Comparison], list[Comparison]]:
    """(bridge loop, ceiling): each implementation against native, per frame size."""

    def against_native(keys: list[str]) -> list[Comparison]:
        return [
            Comparison(key, "native", METRICS, args.repeat, args.max_pairs, tag=size)
            for size in args.sizes
            for key in keys
            if key != "native"
        ]

    loops = [] if args.no_loop else against_native(runnable)
    ceiling = [] if args.no_ceiling else against_native([k for k in CEILING_IMPLS if k in runnable])
    return loops, ceiling


def run_all(args: argparse.Namespace, loops: list[Comparison], ceiling: list[Comparison]) -> None:
    noise_done: set[tuple[str, int]] = set()

    def run_loop(c: Comparison, key: str) -> dict[str, Any]:
        # The idle-writer noise window: once per implementation and size.
        noise = 0.0 if (key, c.tag) in noise_done else args.noise_seconds
        noise_done.add((key, c.tag))
        return run_loop_once(IMPLS[key], c.tag, args.seconds, noise, args.python, args.native_bin)

    def run_ceiling(c: Comparison, key: str) -> dict[str, Any]:
        return run_ceiling_once(
            IMPLS[key], c.tag, args.ceiling_frames, args.python, args.native_bin
        )

    def progress(what: str) -> Callable[[Comparison, Pair], None]:
        def show(c: Comparison, p: Pair) -> None:
            status = f"DISCARDED ({p.noise})" if p.noise else "kept"
            ratio = p.ratios.get("rate")
            log(
                f"{what}{c.tag:5d} B pair {len(c.pairs)} ({len(c.kept())}/{c.want} kept) "
                f"{c.a} {fmt_rate(p.a['rate'])}/s vs native {fmt_rate(p.b['rate'])}/s, "
                f"{p.first} first: {ratio:.2f}× "
                f"(other CPU {p.a['other_cpu'] * 100:.0f}% / {p.b['other_cpu'] * 100:.0f}%), "
                f"{status}"
                if ratio is not None
                else f"{what}{c.tag} B pair {len(c.pairs)}: no ratio, {status}"
            )

        return show

    rule = OtherCpuRule.from_args(args)
    for comps, run, what in ((loops, run_loop, "loop "), (ceiling, run_ceiling, "ceiling ")):
        interleave(
            comps, run, rule.noisy, errors=RUN_ERRORS, progress=progress(what), uneven=rule.uneven()
        )


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run whose delivered/s is the median (lower median for even counts)."""
    ordered = sorted(runs, key=lambda r: r["rate"])
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else 0.0


def render(
    args: argparse.Namespace,
    command: str,
    loops: list[Comparison],
    ceiling: list[Comparison],
    skipped: dict[str, str],
    elapsed: float,
    load: tuple[str, str],
) -> str:
    out = ["## Bridge loop: every implementation against native, in paired runs", ""]
    out.append(f"- command: `{command}`")
    out += machine_info(args.python)
    out.append(f"- load (`uptime`): at the start {load[0]}; at the end {load[1]}")
    out.append(f"- total wall time: {elapsed:.0f} s")
    out.append("")
    out += [f"- **{key} skipped**: {why}" for key, why in skipped.items()]
    if skipped:
        out.append("")
    for size in args.sizes if loops else []:
        out += render_table(
            f"### Bridge loop, {size}-byte frames: runs of {args.seconds:g} s",
            [c for c in loops if c.tag == size],
            LOOP_COLUMNS,
        )
    for size in args.sizes if ceiling else []:
        out += render_table(
            (
                f"### Reader-only ceiling, {size}-byte frames: {fmt_count(args.ceiling_frames)} "
                f"frames queued in B's ring (txqueuelen {CEILING_QLEN}), only the draining timed"
            ),
            [c for c in ceiling if c.tag == size],
            CEILING_COLUMNS,
        )
    out.append(
        OtherCpuRule.from_args(args).report_line(
            "work other than the measured process (other programs, kernel threads, softirq "
            "and the hypervisor's steal time, from /proc/stat)",
            [*loops, *ceiling],
            args,
            why_uneven=" (the two sides did not see the same machine)",
        )
    )
    out.append("")
    for c in [*loops, *ceiling]:
        what = "ceiling" if c in ceiling else "loop"
        out.append(f"- {what} {c.tag} B, {c.a} vs native: {c.discard_note()}")
    out.append("")
    out.append(
        "Figures of a row (written … other CPU) are those of the implementation's median run "
        "(by delivered/s) among its runs in the kept pairs (in all pairs when none was kept); "
        "native's runs are those of every comparison at that size. Delivered = frames of our own read by the reader (size, "
        "source MAC and EtherType match); delivered/s divides by the reader's time until its "
        "ring was empty after the writer stopped. Loss = 1 − delivered/written; B TX dropped "
        "is the kernel's counter of frames B's full ring refused during the run. Noise = other "
        "frames on B, with the writer idle for 1 s before the first run of each implementation, "
        "and during the run. CPU ns/frame (bridge loop) = CPU time of the whole implementation "
        "process, writer and reader threads and the kernel work in their system calls, per "
        "delivered frame (median of the runs); reader CPU ns/frame (ceiling) = CPU time of the "
        "draining thread (schedstat) per frame. Each run uses a fresh namespace and processes. "
        "*vs native* = median of the per-pair ratios over the kept pairs, with their range; "
        "*all pairs* = the same over every pair run, noisy ones included. The per-run figures "
        "of every pair are in the `--json` file."
    )
    out.append("")
    return "\n".join(out)


def render_table(title: str, comps: list[Comparison], columns: dict[str, str]) -> list[str]:
    if not comps:
        return []
    out = [title, "", *table_head(["implementation", *columns], "l" + "r" * len(columns))]
    native_runs = [r for c in comps for r in c.side_runs("native")]
    for c in comps:
        out.append(row(IMPLS[c.a].label, c.side_runs(c.a), c, columns))
    out.append(row(IMPLS["native"].label, native_runs, None, columns))
    out.append("")
    return out


#: How each figure of a row is shown: (the side's runs, its median run, comparison) -> text.
Figure = Callable[[list[dict[str, Any]], dict[str, Any], "Comparison | None"], str]


def _vs(metric: str, *, all_pairs: bool = False) -> Figure:
    def figure(runs: list[dict[str, Any]], run: dict[str, Any], c: Comparison | None) -> str:
        if c is None:
            return "1 (baseline)"
        return c.all_pairs_cell(metric) if all_pairs else c.cell(metric)

    return figure


FIGURES: dict[str, Figure] = {
    "written": lambda runs, run, c: fmt_count(run["written"]),
    "delivered": lambda runs, run, c: fmt_count(run["delivered"]),
    "drain seconds": lambda runs, run, c: f"{run['seconds']:.3f}",
    "rate": lambda runs, run, c: fmt_rate(run["rate"]),
    "Gbit/s": lambda runs, run, c: f"{run['gbps']:.2f}",
    "loss": lambda runs, run, c: f"{run['loss'] * 100:.2f}%",
    "B TX dropped": lambda runs, run, c: fmt_count(run["tx_dropped"]),
    "noise": lambda runs, run, c: f"{first_noise(runs)} / {run['noise_run']}",
    "CPU ns/frame": lambda runs, run, c: f"{median_of(runs, 'cpu_ns_per_frame'):.0f}",
    "dropped while queueing": lambda runs, run, c: str(run["dropped_while_queueing"]),
    "other CPU": lambda runs, run, c: f"{run['other_cpu'] * 100:.0f}%",
    "vs rate": _vs("rate"),
    "vs cpu": _vs("cpu_ns_per_frame"),
    "vs rate all": _vs("rate", all_pairs=True),
}
#: The figure columns of each table: (column title, key in FIGURES).
LOOP_COLUMNS = {
    "written": "written", "delivered": "delivered", "delivered/s": "rate", "Gbit/s": "Gbit/s",
    "loss": "loss", "B TX dropped": "B TX dropped", "noise idle / in run": "noise",
    "CPU ns/frame": "CPU ns/frame", "other CPU": "other CPU",
    "delivered/s vs native (kept pairs)": "vs rate", "CPU/frame vs native": "vs cpu",
    "delivered/s vs native, all pairs": "vs rate all",
}  # fmt: skip
CEILING_COLUMNS = {
    "delivered": "delivered", "drain seconds": "drain seconds", "frames/s": "rate",
    "Gbit/s": "Gbit/s", "reader CPU ns/frame": "CPU ns/frame",
    "dropped while queueing": "dropped while queueing", "other CPU": "other CPU",
    "frames/s vs native (kept pairs)": "vs rate", "CPU/frame vs native": "vs cpu",
    "frames/s vs native, all pairs": "vs rate all",
}  # fmt: skip


def row(
    label: str, runs: list[dict[str, Any]], c: Comparison | None, columns: dict[str, str]
) -> str:
    """A table row: the label, then the ``columns`` of the runs' median run, or ``failed``."""
    run = median_run(runs)
    if run is None:
        why = one_line("; ".join(c.errors) if c is not None else "no run")
        return table_row([label, f"failed: {why}"]) + "|" * (len(columns) - 1)
    return table_row([label, *(FIGURES[key](runs, run, c) for key in columns.values())])


def one_line(error: str | None) -> str:
    """The last line of an error (a child's traceback ends with the exception)."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    return (lines[-1] if lines else "?").replace("|", "/")


def first_noise(runs: list[dict[str, Any]]) -> str:
    for run in runs:
        if "noise_idle" in run:
            return str(run["noise_idle"])
    return "—"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.parser(
        __doc__,
        repeat=5,
        repeat_help="pairs (implementation, native) kept per comparison and frame size",
        sizes="64,1514",
        benchmarks_md=True,
    )
    p.add_argument(
        "--impls", type=cli.str_list, default=list(IMPLS), help=f"subset of {','.join(IMPLS)}"
    )
    add_pairing_arguments(p)
    p.add_argument("--noise-seconds", type=float, default=1.0, help="idle-writer noise window (1)")
    p.add_argument(
        "--ceiling-frames", type=int, default=250_000, help="frames queued for the ceiling"
    )
    p.add_argument("--no-ceiling", action="store_true", help="skip the reader-only ceiling")
    p.add_argument("--no-loop", action="store_true", help="run only the reader-only ceiling")
    p.add_argument(
        "--probe",
        type=int,
        default=0,
        metavar="N",
        help="also run examples/reader_probe.rs N times per size: receive loops (native "
        "buffer, native batch, vnetio's) interleaved in one process, CPU ns/frame (0: off)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter for the children")
    p.add_argument("--native-bin", type=Path, default=NATIVE_BIN)
    p.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    args = p.parse_args(argv)
    unknown = [s for s in args.impls if s not in IMPLS]
    if unknown:
        p.error(f"unknown implementation(s): {', '.join(unknown)}")
    if "native" not in args.impls:
        p.error("--impls must include native: every implementation is compared with it")
    check_pairing_arguments(p, args)
    if args.ceiling_frames >= CEILING_QLEN:
        p.error(f"--ceiling-frames must be below the ring size {CEILING_QLEN}")
    return args


def select_impls(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """Build the native baseline and probe each implementation: (runnable, skipped)."""
    skipped: dict[str, str] = {}
    if not args.no_build:
        try:
            build_example("native_bridge")
        except BenchError as exc:
            skipped["native"] = str(exc)
    for key in args.impls:
        if key not in skipped:
            reason = check_available(IMPLS[key], args.python, args.native_bin)
            if reason:
                skipped[key] = reason
    for key, why in skipped.items():
        log(f"skipping {key}: {why}")
    return [k for k in args.impls if k not in skipped], skipped


PROBE_LOOPS = {
    "buf": "native `read()` into one reused buffer",
    "keep": "native `read()` into a kept batch (256 frames back to back, two arenas in turn)",
    "batch": "`PacketBatch` slots, no prefetch (vnetio's loop before the hint)",
    "batch-pf": "`PacketBatch` slots, next slot prefetched (the library's hint)",
    "batch1": "`PacketBatch` slots, no prefetch, one batch reused",
    "lib": "vnetio `tuntap::Queue::recv_batch` (the library's receive path)",
}


def run_probes(args: argparse.Namespace) -> dict[int, list[dict[str, float]]]:
    """``examples/reader_probe`` ``--probe`` times per size, each in a fresh bridge loop:
    per run, each loop's CPU ns/frame (the loops take turns in one process)."""
    binary = build_example("reader_probe")
    runs: dict[int, list[dict[str, float]]] = {}
    for rep in range(args.probe):
        for size in args.sizes:
            with topology.BridgeLoop("probe") as loop:
                argv = [str(binary), "--size", str(size), "--rounds", "3"]
                proc = subprocess.run(
                    loop.ns_argv(argv), capture_output=True, text=True, timeout=600, check=False
                )
            if proc.returncode != 0:
                raise BenchError(f"reader_probe failed: {proc.stderr.strip()[-500:]}")
            lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
            res = {x["loop"]: float(x["ns_per_frame"]) for x in lines}
            runs.setdefault(size, []).append(res)
            shown = ", ".join(f"{k} {v:.0f}" for k, v in res.items())
            log(f"[{rep + 1}/{args.probe}] probe {size:5d} B  CPU ns/frame: {shown}")
    return runs


def render_probes(runs: dict[int, list[dict[str, float]]]) -> list[str]:
    out = [
        "## Receive loops interleaved in one process (examples/reader_probe.rs)",
        "",
        (
            "Per run, the loops take turns every 4 batches of 256 on the same queued frames "
            "(3 × 250 000 frames); figures are the reading thread's CPU ns per frame, median "
            "over runs, and each loop's per-run ratio to `buf` (median, range)."
        ),
        "",
        "| loop | size | CPU ns/frame | vs `buf` (per run) |",
        "|---|---:|---:|---|",
    ]
    for size, rs in runs.items():
        for key, label in PROBE_LOOPS.items():
            vals = [r[key] for r in rs if key in r]
            ratios = [r[key] / r["buf"] for r in rs if key in r and r.get("buf")]
            if not vals:
                continue
            spread = f"{min(ratios):.3f}–{max(ratios):.3f}" if len(ratios) > 1 else ""
            out.append(
                f"| {label} | {size} | {statistics.median(vals):.0f} | "
                f"{statistics.median(ratios):.3f} {spread} |"
            )
    out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(relative(sys.executable), relative(sys.argv[0]))
    cli.require_privileges("bridge_loop: cannot build the bridge loop")
    t_start = time.monotonic()
    load_start = uptime_line()
    runnable, skipped = select_impls(args)
    if "native" not in runnable:
        log(f"bridge_loop: the native baseline cannot run ({skipped.get('native')})")
        return 2
    loops, ceiling = comparisons(args, runnable)
    run_all(args, loops, ceiling)
    probes = run_probes(args) if args.probe > 0 else {}
    load = (load_start, uptime_line())
    report = render(args, command, loops, ceiling, skipped, time.monotonic() - t_start, load)
    if probes:
        report += "\n" + "\n".join(render_probes(probes))
    raw = {
        "command": command,
        "load": list(load),
        "max_other_cpu": args.max_other_cpu,
        "loop": [c.to_json() for c in loops],
        "ceiling": [c.to_json() for c in ceiling],
        "probe": {str(size): rs for size, rs in probes.items()},
    }
    emit(report, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, report, __file__)
    failed = any(not c.pairs for c in [*loops, *ceiling])
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run_main(main)
