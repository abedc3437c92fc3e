"""Forwarder benchmark: iperf3 TCP from one network namespace to another through a
userspace forwarder between two TUN adapters (and the same with two TAPs).

Topology (per implementation, built fresh so no offload mask or state carries over):
namespace A holds adapter ``vnfwa0`` (198.51.100.1/24), namespace B holds ``vnfwb0``
(198.51.100.2/24); a forwarder process attaches to both and copies every packet across, in
both directions (TAP: ARP crosses it too). iperf3 runs its client in A and its server in
B; both ends and the forwarder share the machine's cores. The kernel-only reference is a
veth pair between the same namespaces, with no forwarder.

Implementations: vnetio with offload (super-frames passed through with their metadata;
and segments mode, where vnetio splits on receive and merges again on send), vnetio
without offload, python-pytun and Python ``os.read``/``os.write`` (two threads each), and
the native Rust forwarder ``examples/native_forwarder.rs`` (one packet per call, without
and with the virtio-net header passed through).

Paired runs (``benches/harness/pairing.py``): each implementation is paired with a baseline
(native with offload for the offload modes and veth, native one packet per call for the
others). One run = a fresh topology and forwarder, then one iperf3 run of ``--seconds``
(``-O 1`` omits the first second of slow start) per stream count; a pair = the
implementation's run and the baseline's, back to back, in alternating order. Reported: the
median of the per-pair Gbit/s ratios with their range, the Gbit/s of each row's runs, TCP
retransmissions (iperf3's count, summed over runs), the forwarder's ring drops (both
adapters' kernel ``tx_dropped``: packets the kernel could not queue for a reader that fell
behind), the forwarder process's CPU use, and the pairs discarded as noisy and why.

The benchmark waits while another benchmark (``bridge_loop``/``native_bridge``) runs on
this machine, treats a run it overlapped as noisy, and notes it in the report. Run as root::

    .venv/bin/python benches/forwarder.py --out bench-results/forwarder.md
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness import cli
from harness.child import open_tuntap, reply
from harness.pairing import Comparison, Pair, criterion_line, interleave, uptime_line
from harness.procs import (
    EXAMPLES,
    BenchError,
    Child,
    Contention,
    build_example,
    cpu_ticks,
    log,
    proc_stat,
)
from harness.report import command_line, emit, table_head, table_row, write_section

NATIVE = EXAMPLES / "native_forwarder"
DEV_A, DEV_B = "vnfwa0", "vnfwb0"
ADDR_A, ADDR_B = "198.51.100.1", "198.51.100.2"
PORT = 5301
OTHER_BENCHMARKS = ("bridge_loop", "native_bridge")
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Impl:
    key: str
    label: str
    kinds: tuple[str, ...] = ("tun", "tap")


IMPLS = [
    Impl("vnetio-offload", "vnetio, offload (super-frames passed through)"),
    Impl("vnetio-segments", "vnetio, offload, segments mode (split on receive, GRO on send)"),
    Impl("vnetio-plain", "vnetio, no offload"),
    Impl("pytun", "python-pytun, 2 threads"),
    Impl("os", "Python `os.read`/`os.write`, 2 threads"),
    Impl("native", "native Rust, 2 threads, one packet per call"),
    Impl("native-vnet", "native Rust, IFF_VNET_HDR + TUNSETOFFLOAD, header passed through"),
    Impl("veth", "veth pair, kernel only (upper reference)", ("veth",)),
]


# --- the forwarders (run as `forwarder.py --serve IMPL ...` in a process of their own) ----

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(ns: str) -> None:
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def pump_forever(pairs: list[tuple[Callable[[], Any], Callable[[Any], Any]]]) -> None:
    """One thread per direction: ``write(read())`` until the process is killed."""

    def loop(read: Callable[[], Any], write: Callable[[Any], Any]) -> None:
        while True:
            data = read()
            try:  # noqa: SIM105 - contextlib.suppress costs a context manager per packet
                write(data)
            except OSError:
                pass  # a refused write drops the packet, as a router would

    threads = [threading.Thread(target=loop, args=p, daemon=True) for p in pairs]
    for t in threads:
        t.start()
    reply({"event": "ready"})
    for t in threads:
        t.join()


def serve(impl: str, kind: str, a: str, b: str) -> None:
    (ns_a, dev_a), (ns_b, dev_b) = (x.split(":", 1) for x in (a, b))
    if impl.startswith("vnetio"):
        import vnetio

        cls = vnetio.Tap if kind == "tap" else vnetio.Tun
        kw: dict[str, Any] = {}
        if impl != "vnetio-plain":
            kw = {
                "offload": True,
                "rx_mode": "segments" if impl == "vnetio-segments" else "superframes",
            }
        fa, fb = cls(dev_a, netns=ns_a, **kw), cls(dev_b, netns=ns_b, **kw)

        def batches(src: Any) -> Callable[[], Any]:
            return lambda: src.recv_batch(256, timeout=None)

        pump_forever([(batches(fa), fb.send_batch), (batches(fb), fa.send_batch)])
    elif impl == "pytun":
        import pytun  # type: ignore[import-not-found]

        flags = (pytun.IFF_TAP if kind == "tap" else pytun.IFF_TUN) | pytun.IFF_NO_PI
        enter_netns(ns_a)
        ta = pytun.TunTapDevice(name=dev_a, flags=flags)
        enter_netns(ns_b)
        tb = pytun.TunTapDevice(name=dev_b, flags=flags)
        pump_forever([(lambda: ta.read(65536), tb.write), (lambda: tb.read(65536), ta.write)])
    elif impl == "os":

        def attach(ns: str, dev: str) -> int:
            enter_netns(ns)
            return open_tuntap(dev, tap=kind == "tap")

        fd_a, fd_b = attach(ns_a, dev_a), attach(ns_b, dev_b)
        pump_forever(
            [
                (lambda: os.read(fd_a, 65536), lambda d: os.write(fd_b, d)),
                (lambda: os.read(fd_b, 65536), lambda d: os.write(fd_a, d)),
            ]
        )
    else:
        raise SystemExit(f"unknown implementation {impl}")


# --- the harness ------------------------------------------------------------------------


def run(argv: list[str], *, check: bool = True, timeout: float = 30) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def in_ns(ns: str, *argv: str, **kw: Any) -> str:
    return run(["ip", "netns", "exec", ns, *argv], **kw)


@contextmanager
def topology(kind: str) -> Iterator[tuple[str, str]]:
    """Namespaces A and B with ``kind`` adapters (``tun``, ``tap``) or a veth pair."""
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"vnetio-fw-{tag}-a", f"vnetio-fw-{tag}-b"
    run(["ip", "netns", "add", ns_a])
    try:
        run(["ip", "netns", "add", ns_b])
        try:
            for ns in (ns_a, ns_b):
                in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
            if kind == "veth":
                run(["ip", "-n", ns_a, "link", "add", DEV_A, "type", "veth", "peer", "name",
                     DEV_B, "netns", ns_b])  # fmt: skip
            else:
                run(["ip", "-n", ns_a, "tuntap", "add", "dev", DEV_A, "mode", kind])
                run(["ip", "-n", ns_b, "tuntap", "add", "dev", DEV_B, "mode", kind])
            for ns, dev, addr in ((ns_a, DEV_A, ADDR_A), (ns_b, DEV_B, ADDR_B)):
                run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
                run(["ip", "-n", ns, "link", "set", dev, "up"])
            yield ns_a, ns_b
        finally:
            run(["ip", "netns", "del", ns_b], check=False)
    finally:
        run(["ip", "netns", "del", ns_a], check=False)


@contextmanager
def forwarder(impl: str, kind: str, ns_a: str, ns_b: str) -> Iterator[int | None]:
    """Start the forwarder process; yields its PID (None for veth). Ended by PID."""
    if impl == "veth":
        yield None
        return
    a, b = f"{ns_a}:{DEV_A}", f"{ns_b}:{DEV_B}"
    if impl.startswith("native"):
        argv = [str(NATIVE), "--kind", kind, "--a", a, "--b", b]
        argv += ["--vnet-hdr"] if impl == "native-vnet" else []
    else:
        argv = [sys.executable, __file__, "--serve", impl, "--kind", kind, "--a", a, "--b", b]
    with Child(argv, f"{impl} forwarder", stop_signal=signal.SIGTERM) as child:
        child.expect("ready", timeout=60)
        yield child.proc.pid


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds of the forwarder process (every thread) so far."""
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK") if pid is not None else 0.0


def tx_dropped(ns_a: str, ns_b: str) -> int:
    total = 0
    for ns, dev in ((ns_a, DEV_A), (ns_b, DEV_B)):
        total += int(in_ns(ns, "cat", f"/sys/class/net/{dev}/statistics/tx_dropped"))
    return total


def process_ticks() -> dict[int, tuple[str, int]]:
    """CPU ticks (user + system) of every user-space process: pid -> (command, ticks)."""
    ticks = {}
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        stat = proc_stat(pid)
        if stat is None or pid == 2 or stat[1] == 2:  # gone, or kthreadd and its kernel threads
            continue
        ticks[pid] = (stat[0], stat[2])
    return ticks


def foreign_cpu(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], ours: set[int]
) -> tuple[float, str]:
    """CPU seconds used during a run by processes that are not part of the measurement
    (not this harness, the forwarder or iperf3), and the busiest one."""
    tck = os.sysconf("SC_CLK_TCK")
    used = {
        pid: (comm, t - before.get(pid, (comm, 0))[1])
        for pid, (comm, t) in after.items()
        if pid not in ours and comm != "iperf3"
    }
    total = sum(t for _, t in used.values()) / tck
    busiest = max(used.values(), key=lambda x: x[1], default=("-", 0))
    return total, f"{busiest[0]} {busiest[1] / tck:.2f} s"


@dataclass
class Sample:
    gbps: float
    retransmits: int
    drops: int
    cpu: float  # forwarder CPU seconds per wall second
    foreign: float = 0.0  # CPU seconds per second of processes outside the measurement
    busiest: str = ""


def iperf_once(ns_a: str, ns_b: str, pid: int | None, streams: int, seconds: float) -> Sample:
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1", "-B", ADDR_B, "-p", str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 5
        while f":{PORT}" not in in_ns(ns_b, "ss", "-ltnH"):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        drops0, cpu0, t0 = tx_dropped(ns_a, ns_b), cpu_seconds(pid), time.monotonic()
        procs0 = process_ticks()
        out = in_ns(
            ns_a, "iperf3", "-c", ADDR_B, "-p", str(PORT), "-t", str(seconds), "-O", "1",
            "-P", str(streams), "-J", timeout=seconds + 30,
        )  # fmt: skip
        wall = time.monotonic() - t0
        foreign, busiest = foreign_cpu(procs0, process_ticks(), {os.getpid(), pid or -1})
        cpu = (cpu_seconds(pid) - cpu0) / wall
        drops = tx_dropped(ns_a, ns_b) - drops0
        server.wait(10)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()
    end = json.loads(out)["end"]
    return Sample(
        gbps=end["sum_received"]["bits_per_second"] / 1e9,
        retransmits=int(end["sum_sent"].get("retransmits", 0)),
        drops=drops,
        cpu=cpu,
        foreign=foreign / wall,
        busiest=busiest,
    )


@dataclass(frozen=True)
class Target:
    """What one pair side runs: an implementation in a fresh topology of ``kind``."""

    kind: str
    impl: str


#: The baseline each implementation is paired with: native with offload for the offload
#: modes and the kernel-only veth reference, native one-packet-per-call for the others.
BASELINE = {
    "vnetio-offload": "native-vnet",
    "vnetio-segments": "native-vnet",
    "vnetio-plain": "native",
    "pytun": "native",
    "os": "native",
    "veth": "native-vnet",
}


def measure_once(
    kind: str,
    impl: str,
    streams: list[int],
    seconds: float,
    contention: Contention,
    max_wait: float,
) -> dict[str, Any]:
    """One side of a pair: a fresh topology and forwarder, one iperf3 run per stream count.

    The figures are keyed by stream count (``gbps_1``, ``cpu_4``, ...); ``foreign`` is the
    highest CPU use by processes outside the measurement over the iperf3 runs, ``others`` a
    benchmark seen running during them.
    """
    topo = "veth" if impl == "veth" else kind
    res: dict[str, Any] = {"kind": kind, "impl": impl, "foreign": 0.0, "others": ""}
    with topology(topo) as (ns_a, ns_b), forwarder(impl, kind, ns_a, ns_b) as pid:
        for n in streams:
            contention.wait_calm(max_wait)  # then measured anyway
            s = iperf_once(ns_a, ns_b, pid, n, seconds)
            if found := contention.others_running():
                res["others"] = found[0][:80]
            res[f"gbps_{n}"] = s.gbps
            res[f"retransmits_{n}"] = s.retransmits
            res[f"drops_{n}"] = s.drops
            res[f"cpu_{n}"] = s.cpu
            if s.foreign >= res["foreign"]:
                res["foreign"], res["busiest"] = s.foreign, s.busiest
    return res


def noisy_if(limit: float, others_ok: bool) -> Callable[[dict[str, Any]], str | None]:
    """Why a run is noisy (another benchmark ran, unless ``others_ok``, or other processes
    used more than ``limit`` cores), or None."""

    def noisy(run: dict[str, Any]) -> str | None:
        if run["others"] and not others_ok:
            return f"another benchmark was running ({run['others']})"
        if run["foreign"] > limit:
            return f"other processes used {run['foreign']:.2f} cores ({run['busiest']})"
        return None

    return noisy


def uneven_if(limit: float) -> Callable[[dict[str, Any], dict[str, Any]], str | None]:
    """Why a pair is uneven: its runs' other-process CPU differs by more than ``limit`` cores."""

    def uneven(x: dict[str, Any], y: dict[str, Any]) -> str | None:
        gap = abs(x["foreign"] - y["foreign"])
        return f"other processes' CPU differs by {gap:.2f} cores" if gap > limit else None

    return uneven


def measure(
    kinds: list[str], impls: list[Impl], args: argparse.Namespace, contention: Contention
) -> list[Comparison]:
    """Each implementation against its baseline (BASELINE), per kind, in interleaved pairs."""
    keys = {i.key for i in impls}
    comps = [
        Comparison(
            impl.key,
            BASELINE[impl.key],
            tuple(f"gbps_{n}" for n in args.streams),
            args.repeat,
            args.max_pairs,
            tag=kind,
        )
        for kind in kinds
        for impl in impls
        if impl.key in BASELINE and BASELINE[impl.key] in keys
    ]

    def run(c: Comparison, key: str) -> dict[str, Any]:
        log(f"  {c.tag} {key}")
        return measure_once(c.tag, key, args.streams, args.seconds, contention, args.max_wait)

    def progress(c: Comparison, p: Pair) -> None:
        ratios = ", ".join(f"{n}: {p.ratios.get(f'gbps_{n}', 0):.2f}×" for n in args.streams)
        status = f"DISCARDED ({p.noise})" if p.noise else "kept"
        log(
            f"{c.tag} {c.a} vs {c.b} pair {len(c.pairs)} ({len(c.kept())}/{c.want} kept), "
            f"{p.first} first: {ratios}, {status}"
        )

    interleave(
        comps,
        run,
        noisy_if(args.max_foreign, args.others_ok),
        errors=(RuntimeError, OSError, BenchError),
        progress=progress,
        uneven=uneven_if(args.max_foreign_diff),
    )
    return comps


def gbps_cell(runs: list[dict[str, Any]], n: int) -> str:
    values = [r[f"gbps_{n}"] for r in runs]
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def table(comps: list[Comparison], kind: str, streams: list[int]) -> list[str]:
    head = ["forwarder"]
    head += [f"{n} stream{'s' * (n > 1)}, Gbit/s" for n in streams]
    head += ["paired with"]
    head += [f"vs it, {n} stream{'s' * (n > 1)} (kept pairs)" for n in streams]
    head += ["all pairs", "retransmits", "ring drops", "forwarder CPU"]
    lines = table_head(head, "l" + "r" * len(streams) + "l" + "r" * (len(streams) + 4))
    mine = [c for c in comps if c.tag == kind]
    order = [i.key for i in IMPLS]
    rows: dict[str, tuple[list[dict[str, Any]], Comparison | None]] = {}
    for c in mine:
        rows[c.a] = (c.side_runs(c.a), c)
    base_runs: dict[str, list[dict[str, Any]]] = {}
    for c in mine:  # a baseline's runs: those of every comparison it is the base of
        base_runs.setdefault(c.b, []).extend(c.side_runs(c.b))
    for key, runs in base_runs.items():
        rows.setdefault(key, (runs, None))
    for key in sorted(rows, key=order.index):
        runs, comp = rows[key]
        label = next(i.label for i in IMPLS if i.key == key)
        if not runs:
            err = "; ".join(comp.errors) if comp is not None else "no run"
            lines.append(table_row([label, f"failed: {err}"]) + " |" * (len(head) - 2))
            continue
        cells = [label, *(gbps_cell(runs, n) for n in streams)]
        if comp is None:
            cells += ["(baseline)", *("1" for _ in streams), ""]
        else:
            cells += [BASELINE[key], *(comp.cell(f"gbps_{n}") for n in streams)]
            cells.append(" / ".join(comp.all_pairs_cell(f"gbps_{n}") for n in streams))
        cells.append(" / ".join(str(sum(r[f"retransmits_{n}"] for r in runs)) for n in streams))
        if key == "veth":
            cells += ["—", "—"]
        else:
            cells.append(" / ".join(str(sum(r[f"drops_{n}"] for r in runs)) for n in streams))
            cells.append(
                " / ".join(f"{statistics.median(r[f'cpu_{n}'] for r in runs):.2f}" for n in streams)
            )
        lines.append(table_row(cells))
    return lines


def report(
    comps: list[Comparison],
    args: argparse.Namespace,
    contention: Contention,
    started: str,
    load: tuple[str, str],
) -> str:
    cmd = command_line()
    streams = args.streams
    out = [
        "## Forwarder: iperf3 TCP through two TUN (or TAP) adapters",
        "",
        (
            f"`{cmd}` (as root; {started}; kernel {platform.release()}, {os.cpu_count()} cores "
            f"shared by both iperf3 ends and the forwarder, MTU 1500; load (`uptime`) at the "
            f"start {load[0]}, at the end {load[1]}). One run = a fresh pair of namespaces and "
            f"adapters, the forwarder started, then `iperf3 -t {args.seconds:g} -O 1` once per "
            f"stream count (client in namespace A, server in B). Each implementation is paired "
            f"with a baseline (native with offload for the offload rows and veth, native one "
            f"packet per call for the others): {args.repeat} pairs kept, at most "
            f"{args.max_pairs} run. Gbit/s received: median (min–max) of the row's runs in the "
            "kept pairs (all pairs when none was kept; a baseline's runs come from every comparison it is the base of); *vs "
            "it*: median of the per-pair ratios (range; pairs); *all pairs*: the same with the "
            "noisy pairs included. Retransmits: iperf3's TCP retransmissions, summed over the "
            f"runs ({' / '.join(map(str, streams))} streams); ring drops: both adapters' kernel "
            "`tx_dropped` (packets the kernel could not queue for the forwarder), summed; "
            "forwarder CPU: the forwarder process's CPU seconds per second (median)."
        ),
        "",
    ]
    for kind in args.kinds:
        out += [f"### Two {kind.upper()} adapters", ""]
        out += table(comps, kind, streams)
        out.append("")
    other = ", ".join(sorted(contention.seen)) or "none"
    others = (
        f"another benchmark was running (seen: {other}; waited {contention.waited_s:.0f} s for "
        "them) or "
    )
    if args.others_ok:
        others = ""
        other += (
            f"; waited {contention.waited_s:.0f} s, at most {args.max_wait:g} s a time, then "
            "measured alongside them: their CPU counts as any other process's"
        )
    rule = (
        f"when, during either of its runs, {others}processes outside the measurement (all but "
        "this harness, the forwarder and iperf3; kernel threads not counted) used more than "
        f"{args.max_foreign:.2f} of a core, or when that CPU differed between the two runs by "
        f"more than {args.max_foreign_diff:.2f} of a core"
        + (f" (other benchmarks seen running: {other})" if args.others_ok else "")
    )
    out.append(
        criterion_line(
            rule,
            comps,
        )
    )
    out.append("")
    out += [f"- {c.tag} {c.a} vs {c.b}: {c.discard_note()}" for c in comps]
    out.append("")
    return "\n".join(out)


def main() -> None:
    p = cli.parser(
        __doc__,
        repeat=5,
        repeat_help="pairs (implementation, its baseline) kept per comparison",
        benchmarks_md=True,
    )
    p.add_argument("--streams", type=cli.int_list, default=[1, 4], help="iperf3 -P for each (1,4)")
    p.add_argument("--kinds", type=cli.str_list, default=["tun", "tap"], help="tun,tap")
    p.add_argument("--only", type=cli.str_list, default=None, help="implementations")
    p.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        help="pairs run at most, noisy included (2 × --repeat)",
    )
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.05,
        help="a pair is noisy when, during either run, processes outside the measurement "
        "used more than this many cores (0.05)",
    )
    p.add_argument(
        "--max-foreign-diff",
        type=float,
        default=0.2,
        help="... or when that differs between its two runs by more than this (0.2)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=60,
        help="seconds to wait for another benchmark (bridge_loop, native_bridge) to end "
        "before measuring anyway (60)",
    )
    p.add_argument(
        "--others-ok",
        action="store_true",
        help="a run that overlapped another benchmark is not noisy for that alone: its CPU "
        "counts with every other process's (--max-foreign, --max-foreign-diff)",
    )
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--a", help=argparse.SUPPRESS)
    p.add_argument("--b", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.kind, args.a, args.b)
        return
    if args.max_pairs is None:
        args.max_pairs = 2 * args.repeat
    if args.repeat < 1 or args.max_pairs < args.repeat:
        p.error("--repeat must be at least 1 and --max-pairs at least --repeat")
    cli.require_privileges("forwarder")
    impls = [i for i in IMPLS if args.only is None or i.key in args.only]
    missing = {BASELINE[i.key] for i in impls if i.key in BASELINE} - {i.key for i in impls}
    if missing:
        p.error(f"--only needs the baselines too: add {','.join(sorted(missing))}")
    if any(i.key.startswith("native") for i in impls):
        build_example("native_forwarder")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = uptime_line()
    contention = Contention(OTHER_BENCHMARKS)
    comps = measure(args.kinds, impls, args, contention)
    text = report(comps, args, contention, started, (load_start, uptime_line()))
    raw = {
        "command": command_line(),
        "max_foreign_cores": args.max_foreign,
        "max_foreign_diff_cores": args.max_foreign_diff,
        "comparisons": [c.to_json() for c in comps],
    }
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)


if __name__ == "__main__":
    cli.run_main(main)
