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

Reported per case: the median of ``--repeat`` runs of ``--seconds`` (iperf3 ``-O 1`` omits
the first second of slow start), TCP retransmissions (iperf3's count, summed over runs),
the forwarder's ring drops (both adapters' kernel ``tx_dropped``: packets the kernel could
not queue for a reader that fell behind), and the forwarder process's CPU use.

The benchmark waits while another benchmark (``bridge_loop``/``native_bridge``) runs on
this machine and notes it in the report. Run as root::

    .venv/bin/python benches/forwarder.py --out bench-results/forwarder.md
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
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
from harness.procs import EXAMPLES, Child, Contention, build_example, cpu_ticks, log, proc_stat
from harness.report import command_line, emit, write_section

NATIVE = EXAMPLES / "native_forwarder"
DEV_A, DEV_B = "vnfwa0", "vnfwb0"
ADDR_A, ADDR_B = "198.51.100.1", "198.51.100.2"
PORT = 5301
OTHER_BENCHMARKS = ("bridge_loop", "native_bridge")
# A run is calm when processes outside the measurement used at most this share of a core.
FOREIGN_LIMIT = 0.05
MAX_TRIES = 4
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


def calm_sample(
    contention: Contention, ns_a: str, ns_b: str, pid: int | None, streams: int, seconds: float
) -> Sample:
    """One calm run: none that another benchmark overlapped, or during which processes
    outside the measurement used more than FOREIGN_LIMIT of a core (such runs are discarded
    and redone; after MAX_TRIES the last is kept and counted as disturbed)."""
    for attempt in range(MAX_TRIES):
        contention.wait_calm()
        sample = iperf_once(ns_a, ns_b, pid, streams, seconds)
        if contention.others_running():
            why = "another benchmark started during the run"
        elif sample.foreign > FOREIGN_LIMIT:
            why = f"other processes used {sample.foreign:.2f} cores ({sample.busiest})"
        else:
            return sample
        contention.discarded += 1
        log(f"  discarded: {why}")
        if attempt + 1 < MAX_TRIES:
            time.sleep(2)
    contention.disturbed += 1
    return sample


@dataclass
class Result:
    kind: str
    impl: Impl
    streams: int
    samples: list[Sample]
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(s.gbps for s in self.samples) if self.samples else 0.0


def measure(
    kinds: list[str], impls: list[Impl], streams: list[int], repeat: int, seconds: float,
    contention: Contention,
) -> list[Result]:  # fmt: skip
    results: list[Result] = []
    for kind in kinds:
        for impl in impls:
            topo = "veth" if impl.key == "veth" else kind
            if topo not in impl.kinds:
                continue
            if impl.key == "veth" and kind != kinds[0]:
                continue  # one kernel reference serves both tables
            log(f"{kind} {impl.key}")
            per_streams = {n: Result(kind, impl, n, []) for n in streams}
            try:
                with topology(topo) as (ns_a, ns_b), forwarder(impl.key, kind, ns_a, ns_b) as pid:
                    for _ in range(repeat):
                        for n in streams:
                            sample = calm_sample(contention, ns_a, ns_b, pid, n, seconds)
                            per_streams[n].samples.append(sample)
                            log(f"  {n} stream(s): {sample.gbps:6.2f} Gbit/s, "
                                f"{sample.retransmits} retr, {sample.drops} drops, "
                                f"cpu {sample.cpu:.2f}, foreign {sample.foreign:.2f}")  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - one failing case must not end the run
                msg = " ".join(str(exc).split())[:200]
                log(f"  failed: {msg}")
                for r in per_streams.values():
                    r.error = msg
            results.extend(per_streams.values())
    return results


def table(results: list[Result], kind: str, streams: list[int]) -> list[str]:
    head = "| forwarder | " + " | ".join(f"{n} stream{'s' * (n > 1)}" for n in streams)
    head += " | retransmits | ring drops | forwarder CPU |"
    lines = [head, "|---|" + "---:|" * (len(streams) + 3)]
    rows: dict[str, list[Result]] = {i.key: [] for i in IMPLS}  # the order of IMPLS
    for r in results:
        if r.kind == kind or r.impl.key == "veth":
            rows[r.impl.key].append(r)
    rows = {k: v for k, v in rows.items() if v}
    for key, rs in rows.items():
        by_n = {r.streams: r for r in rs}
        if any(r.error for r in rs):
            err = next(r.error for r in rs if r.error)
            lines.append(f"| {rs[0].impl.label} | failed: {err} |" + " |" * (len(streams) + 2))
            continue
        cells = [
            f"{by_n[n].median:.1f} ({min(x.gbps for x in by_n[n].samples):.1f}–"
            f"{max(x.gbps for x in by_n[n].samples):.1f})"
            for n in streams
        ]
        retr = " / ".join(str(sum(s.retransmits for s in by_n[n].samples)) for n in streams)
        drops = " / ".join(str(sum(s.drops for s in by_n[n].samples)) for n in streams)
        cpu = " / ".join(
            f"{statistics.median(s.cpu for s in by_n[n].samples):.2f}" for n in streams
        )
        if key == "veth":
            drops, cpu = "—", "—"
        lines.append(
            f"| {rs[0].impl.label} | " + " | ".join(cells) + f" | {retr} | {drops} | {cpu} |"
        )
    return lines


def report(
    results: list[Result], args: argparse.Namespace, contention: Contention, started: str
) -> str:
    cmd = command_line()
    streams = args.streams
    out = [
        "## Forwarder: iperf3 TCP through two TUN (or TAP) adapters",
        "",
        (
            f"`{cmd}` (as root; {started}; kernel {platform.release()}, {os.cpu_count()} cores "
            f"shared by both iperf3 ends and the forwarder, MTU 1500). Gbit/s received: median "
            f"(min–max) of {args.repeat} runs of `iperf3 -t {args.seconds:g} -O 1` (client in namespace A, "
            "server in B). Retransmits: iperf3's TCP retransmissions, summed over the runs "
            f"({' / '.join(map(str, streams))} streams); ring drops: both adapters' kernel "
            "`tx_dropped` (packets the kernel could not queue for the forwarder), summed; "
            "forwarder CPU: the forwarder process's CPU seconds per second (median)."
        ),
        "",
    ]
    for kind in args.kinds:
        out += [f"### Two {kind.upper()} adapters", ""]
        out += table(results, kind, streams)
        out.append("")
    other = ", ".join(sorted(contention.seen)) or "none"
    out.append(
        f"Calm runs only: a run is discarded and redone when another benchmark was running "
        f"(seen: {other}; waited {contention.waited_s:.0f} s for them) or when processes "
        f"outside the measurement used more than {FOREIGN_LIMIT:.0%} of a core during it "
        f"({contention.discarded} run(s) discarded; {contention.disturbed} kept after "
        f"{MAX_TRIES} tries, i.e. disturbed)."
    )
    out.append("")
    return "\n".join(out)


def main() -> None:
    p = cli.parser(__doc__, benchmarks_md=True)
    p.add_argument("--streams", type=cli.int_list, default=[1, 4], help="iperf3 -P for each (1,4)")
    p.add_argument("--kinds", type=cli.str_list, default=["tun", "tap"], help="tun,tap")
    p.add_argument("--only", type=cli.str_list, default=None, help="implementations")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--a", help=argparse.SUPPRESS)
    p.add_argument("--b", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.kind, args.a, args.b)
        return
    cli.require_privileges("forwarder")
    impls = [i for i in IMPLS if args.only is None or i.key in args.only]
    if any(i.key.startswith("native") for i in impls):
        build_example("native_forwarder")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    contention = Contention(OTHER_BENCHMARKS)
    results = measure(args.kinds, impls, args.streams, args.repeat, args.seconds, contention)
    text = report(results, args, contention, started)
    raw = [
        {
            "kind": r.kind,
            "impl": r.impl.key,
            "streams": r.streams,
            "error": r.error,
            "samples": [dataclasses.asdict(x) for x in r.samples],
        }
        for r in results
    ]
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)


if __name__ == "__main__":
    cli.run_main(main)
