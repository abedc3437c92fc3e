"""iperf3 through a real guest's virtio-net NIC: vnetio's vhost-user backend, forwarded to a
TAP by a Python script, against QEMU's own tap netdev, with the same guest kernel in the
same run (target: vnetio ≥ 1.0× QEMU's path).

One guest per path (tests/vm/rig.py: Debian's kernel, a busybox initramfs with iperf3 copied in,
``-accel tcg``, ``--cpus`` vCPUs, ``--memory`` MB), booted once at the start:

* **vhost**: the guest's NIC is a ``-netdev vhost-user`` socket served by
  ``examples/vhost_forward.py`` (``vnetio.VhostUserNet`` in ``superframes`` mode, two
  threads moving batches to and from a vnetio ``Tap`` with offload in namespace A,
  192.0.2.1/24; the guest is 192.0.2.2).
* **vhost-rust**: the same as vhost, with ``--rust``: a ``vnetio.Forwarder`` moves the
  batches on Rust threads (no Python, no interpreter lock per batch; 198.18.2.1/24).
* **qemu**: the guest's NIC is QEMU's own ``-netdev tap,vhost=off,vnet_hdr=on`` (its
  in-process virtio-net) on a persistent TAP that vnetio created in namespace B
  (198.51.100.1/24; the guest is 198.51.100.2). /dev/vhost-net does not exist here.
* **qemu-intx** (a control, not the baseline): the same as qemu, but the NIC has no MSI-X
  vectors (``vectors=0``), as the vhost-user NIC must have here (QEMU 7.2 under TCG
  crashes with them, tests/vm/nics.py): it tells the legacy interrupts' cost apart from
  the backend's.
* **qemu-memfd** (a control): the same as qemu, with the guest's RAM a shared memfd
  (``memory-backend-memfd,share=on``), as a vhost-user guest's RAM must be.
* **vhost-base** (only when asked for, with ``--baseline-vnetio DIR``): the same as vhost,
  with a forwarder that imports another vnetio build (``DIR/vnetio``): a before/after
  comparison of a backend change in the same rounds.

Each round runs every path (alternating, rotated each round) and both directions: an
iperf3 server in the guest, the client in the path's namespace (``iperf3 -c GUEST -t
SECONDS -J``; ``-R`` for guest→host), one TCP stream. Reported per run: Gbit/s (the
receiver's ``sum_received``), TCP retransmissions (the sender's), and host CPU from
``/proc/PID/stat`` (utime + stime, all threads) over the client's lifetime: the QEMU
process (its TCG vCPU threads apart from the rest) plus, for vhost, the forwarder
process; divided by the Gbit transferred that is the host CPU per Gbit/s (core-seconds
per Gbit). Also: the host iperf3 client's CPU (the same work on both paths, not counted),
the CPU that everything else on the machine used meanwhile (``/proc/stat`` busy time minus
the measured processes: the idle other guests, other people's work), which other
benchmark processes were running, the guest's virtio interrupts, and the mean size of the
frames crossing the TAP in the data direction (whole TSO super-frames or not). The guest's
side per packet: its virtio-net driver's own counters (``ethtool -S``: packets and kicks
per queue, a super-frame counting one), virtio interrupts per packet, and how often the
vCPU thread slept (the guest halted) per Gbit. A run
during which other work used more than ``--max-other`` cores is redone (``--retries``
times; the calmest attempt is kept). Ratios are per round (vhost / qemu of the same round).

Under TCG the guest's vCPU thread does most of the work on every path; see BENCHMARKS.md for
the reading. Run as root, after ``make build``::

    .venv/bin/python benches/vhost_iperf.py --repeat 3 --out bench-results/vhost_iperf.md \\
        --json bench-results/vhost_iperf.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import cli
from harness.procs import ROOT, Contention, log
from harness.report import (
    command_line,
    emit,
    per_round_ratios,
    ratio_cell,
    table_head,
    write_section,
)
from harness.report import table_row as row

sys.path.insert(0, str(ROOT))  # the guest rig lives with the tests

from tests.vm import rig

FORWARDER = ROOT / "examples" / "vhost_forward.py"
PATHS = ("vhost", "vhost-rust", "qemu", "qemu-intx", "qemu-memfd", "vhost-base")
DEFAULT_PATHS = "vhost,vhost-rust,qemu,qemu-intx,qemu-memfd"
VHOST_PATHS = ("vhost", "vhost-rust", "vhost-base")
DIRECTIONS = ("guest_to_host", "host_to_guest")
ARROW = {"guest_to_host": "guest → host", "host_to_guest": "host → guest"}
LABEL = {
    "vhost": "vnetio `VhostUserNet` → `Tap` (examples/vhost_forward.py, superframes)",
    "vhost-rust": "vnetio `VhostUserNet` → `Tap` by `vnetio.Forwarder` (Rust threads, `--rust`)",
    "qemu": "QEMU `-netdev tap,vhost=off` (its own virtio-net) on a vnetio TAP",
    "qemu-intx": "the same, legacy INTx interrupts (`vectors=0`, as the vhost-user NIC)",
    "qemu-memfd": "the same (MSI-X), guest RAM a shared memfd (as vhost-user needs)",
    "vhost-base": "vnetio `VhostUserNet` → `Tap`, the vnetio build of `--baseline-vnetio`",
}


@dataclass(frozen=True)
class Side:
    """One path's names and addresses."""

    tap: str
    mac: str
    host: str
    guest: str


SIDES = {
    "vhost": Side("vnbvh0", "52:54:00:76:62:01", "192.0.2.1", "192.0.2.2"),
    "qemu": Side("vnbvq0", "52:54:00:76:62:02", "198.51.100.1", "198.51.100.2"),
    "qemu-intx": Side("vnbvi0", "52:54:00:76:62:03", "203.0.113.1", "203.0.113.2"),
    "qemu-memfd": Side("vnbvm0", "52:54:00:76:62:04", "198.18.0.1", "198.18.0.2"),
    "vhost-base": Side("vnbvb0", "52:54:00:76:62:05", "198.18.1.1", "198.18.1.2"),
    "vhost-rust": Side("vnbvr0", "52:54:00:76:62:06", "198.18.2.1", "198.18.2.2"),
}
#: Other benchmarks whose processes are noted when they overlap a run (``pgrep -f`` patterns).
OTHER_BENCHMARKS = (
    r"benches/(bridge_loop|forwarder|superframe_loop|capture_loop|filter_loop|vhost_iperf)\.py",
    r"examples/native_(bridge|forwarder|superframe_loop)",
    "cargo bench",
)
TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- /proc


def proc_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of process ``pid`` so far: ``user``, ``system``, and ``vcpu`` (threads
    named like QEMU's TCG vCPU threads, ``CPU n/TCG``), and how often those slept
    (``vcpu_sleeps``); zeros when it is gone."""
    out = {"user": 0.0, "system": 0.0, "vcpu": 0.0, "vcpu_sleeps": 0.0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        user, system = int(fields[11]) / TCK, int(fields[12]) / TCK
        out["user"] += user
        out["system"] += system
        if "/TCG" in comm:
            out["vcpu"] += user + system
            out["vcpu_sleeps"] += vcpu_sleeps(pid, tid)
    return out


def vcpu_sleeps(pid: int, tid: str) -> float:
    """Times a vCPU thread went to sleep (``voluntary_ctxt_switches``): under TCG, mostly
    the guest halting with nothing to do until the device answers."""
    try:
        for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def busy_seconds() -> float:
    """CPU seconds all CPUs spent busy so far (``/proc/stat``: everything but idle and
    iowait; guest time is already inside user)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TCK


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def busiest_others(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], ours: set[int]
) -> str:
    """The three processes outside the measurement that used the most CPU, ``name 0.42``
    (CPU seconds per wall second is filled in by the caller's division)."""
    used = []
    for pid, (comm, ticks) in after.items():
        if pid in ours:
            continue
        d = ticks - before.get(pid, (comm, ticks))[1]
        if d > 0:
            used.append((d, comm))
    used.sort(reverse=True)
    return ", ".join(f"{comm} {d / TCK:.1f} s" for d, comm in used[:3])


def command_name(pgrep_line: str) -> str:
    """``PID /path/to/prog args…`` -> ``prog args…`` (70 characters at most)."""
    argv = pgrep_line.split()[1:]
    return " ".join([os.path.basename(argv[0]), *argv[1:]])[:70] if argv else "?"


def all_process_ticks() -> dict[int, tuple[str, int]]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[int(name)] = (comm, int(fields[11]) + int(fields[12]))
    return out


# --------------------------------------------------------------------------- set-up


def sh(argv: list[str], *, check: bool = True, timeout: float = 30) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def make_netns(name: str) -> None:
    sh(["ip", "netns", "add", name])
    for key in ("all", "default"):  # before any device: no IPv6 noise (TAP-FACTS pitfall 3)
        sh(["ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])
    sh(["ip", "-n", name, "link", "set", "lo", "up"])


def configure_guest(guest: rig.Guest, side: Side) -> None:
    """Address and link up, wait for carrier, start the iperf3 server and wait until it
    listens (port 5201 = 0x1451, in /proc/net/tcp or tcp6)."""
    ifname = guest.ifname(side.mac)
    guest.run(
        f"ip addr add {side.guest}/24 dev {ifname} && ip link set dev {ifname} up"
        f" && for i in $(seq 100); do [ $(cat /sys/class/net/{ifname}/carrier) = 1 ] && exit 0;"
        f" usleep 50000; done; exit 1",
        check=True,
    )
    guest.run_bg("iperf3 -s")
    guest.run(
        "for i in $(seq 100); do grep -q ':1451 [0-9A-F]*:0000 0A' /proc/net/tcp /proc/net/tcp6"
        " && exit 0; usleep 50000; done; exit 1",
        check=True,
    )


class Forwarder:
    """examples/vhost_forward.py in a child process, stopped by PID (SIGTERM, then
    SIGKILL); ``stop()`` returns the counters it prints on the way out."""

    def __init__(
        self,
        sock: Path,
        side: Side,
        netns: str,
        mode: str,
        vnetio_dir: str | None = None,
        *,
        rust: bool = False,
    ) -> None:
        argv = [sys.executable, str(FORWARDER), str(sock), side.tap, "--netns", netns,
                "--address", f"{side.host}/24", "--mode", mode]  # fmt: skip
        if rust:
            argv.append("--rust")
        # Another vnetio build (a before/after comparison in the same rounds): its package
        # directory first on the path.
        env = dict(os.environ, PYTHONPATH=vnetio_dir) if vnetio_dir else None
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("{") or json.loads(line).get("event") != "ready":
            self.kill()
            raise RuntimeError(f"forwarder did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            return {}
        stopped = [json.loads(x) for x in out.splitlines() if x.startswith('{"event": "stopped"')]
        return stopped[-1] if stopped else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@dataclass
class Setup:
    """One path as set up: its namespace, guest and (vhost) forwarder."""

    name: str
    side: Side
    netns: str
    guest: rig.Guest
    forwarder: Forwarder | None = None

    def pids(self) -> list[int]:
        pids = [self.guest.pid] if self.guest.pid else []
        return pids + ([self.forwarder.pid] if self.forwarder else [])


@contextlib.contextmanager
def paths(args: argparse.Namespace) -> Iterator[dict[str, Setup]]:
    """Both paths set up (namespaces, TAPs, forwarder, guests); everything removed again
    on the way out, by PID and by name, also after an error or Ctrl-C."""
    import vnetio

    tag = f"{os.getpid()}"
    out: dict[str, Setup] = {}
    spaces: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="vnetio-vhost-iperf-"))
    forwarders: list[Forwarder] = []
    guests: list[rig.Guest] = []
    try:
        for name in args.paths:
            side = SIDES[name]
            ns = f"vnetio-vhbench-{name}-{tag}"
            make_netns(ns)
            spaces.append(ns)
            guest_args: dict[str, Any] = {
                "programs": ["ip", "iperf3", "ethtool"],
                "cpus": args.cpus,
                "memory_mb": args.memory,
                "name": f"bench-{name}",
                # Thread names ("CPU 0/TCG"): -name options merge with the rig's own.
                "qemu_args": ["-name", "debug-threads=on"],
            }
            if name in VHOST_PATHS:
                sock = tmp / f"{name}.sock"
                base = args.baseline_vnetio if name == "vhost-base" else None
                rust = name == "vhost-rust"
                forwarders.append(Forwarder(sock, side, ns, args.mode, base, rust=rust))
                guest = rig.Guest(nics=[rig.VhostUserNic(str(sock), side.mac)], **guest_args)
            else:
                with vnetio.Tap(side.tap, persist=True, netns=ns) as tap:
                    tap.add_address(f"{side.host}/24")
                    tap.up()
                # The vhost-user NIC has no MSI-X vectors (QEMU 7.2 under TCG crashes with
                # them, tests/vm/nics.py): qemu-intx gives QEMU's own NIC the same, to tell
                # the interrupt mode's cost from the backend's.
                device = {"vectors": 0} if name == "qemu-intx" else {}
                nic = rig.TapNic(side.tap, side.mac, netns=ns, device=device)
                if name == "qemu-memfd":  # what the rig gives a vhost-user guest
                    guest_args["qemu_args"] += [
                        "-object", f"memory-backend-memfd,id=mem,size={args.memory}M,share=on",
                        "-numa", "node,memdev=mem",
                    ]  # fmt: skip
                guest = rig.Guest(nics=[nic], **guest_args)
            log(f"booting the {name} guest")
            guests.append(guest.start())
            configure_guest(guest, side)
            out[name] = Setup(
                name, side, ns, guest, forwarders[-1] if name.startswith("vhost") else None
            )
        yield out
    finally:
        for guest in guests:
            guest.close()
        for fwd in forwarders:
            fwd.kill()
        for ns in spaces:
            sh(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    round: int
    path: str
    direction: str
    gbps: float = 0.0
    gbit: float = 0.0
    retransmits: int = 0
    seconds: float = 0.0
    qemu_vcpu: float = 0.0  # CPU seconds of QEMU's TCG vCPU thread(s)
    qemu_other: float = 0.0  # … of its other threads (main loop, I/O)
    forwarder_user: float = 0.0
    forwarder_system: float = 0.0
    client_cpu: float = 0.0  # the host iperf3 client (same work on both paths; not counted)
    other_cores: float = 0.0  # busy CPU outside the measured processes, per wall second
    other_guest_cores: float = 0.0  # the idle other guest's QEMU, per wall second
    busiest: str = ""
    benchmarks: list[str] = field(default_factory=list)
    tap_tx_dropped: int = 0
    data_frame_bytes: float = 0.0  # mean size of the frames on the TAP in the data direction
    guest_irqs: int = 0  # interrupts of the guest's virtio devices during the run
    guest_tx_packets: int = 0  # the guest driver's TX packets (a TSO super-frame is one)
    guest_tx_kicks: int = 0  # … its TX notifications to the device (exits, under TCG)
    guest_rx_packets: int = 0
    guest_rx_kicks: int = 0  # RX buffers posted with a notification
    vcpu_sleeps: int = 0  # the vCPU thread's voluntary context switches (guest halted)
    attempts: int = 1  # runs made for this one (a disturbed run is redone, the calmest kept)
    error: str | None = None

    @property
    def host_cpu(self) -> float:
        """CPU seconds of QEMU + forwarder during the run."""
        return self.qemu_vcpu + self.qemu_other + self.forwarder_user + self.forwarder_system

    @property
    def cpu_per_gbit(self) -> float:
        return self.host_cpu / self.gbit if self.gbit else 0.0

    def _per_gbit(self, cpu: float) -> float:
        return cpu / self.gbit if self.gbit else 0.0

    @property
    def vcpu_per_gbit(self) -> float:
        return self._per_gbit(self.qemu_vcpu)

    @property
    def qemu_other_per_gbit(self) -> float:
        return self._per_gbit(self.qemu_other)

    @property
    def forwarder_per_gbit(self) -> float:
        return self._per_gbit(self.forwarder_user + self.forwarder_system)

    @property
    def device_cpu_per_gbit(self) -> float:
        """Host CPU outside the guest's vCPU (the device side: QEMU's other threads and
        the forwarder) per Gbit."""
        device = self.host_cpu - self.qemu_vcpu
        return device / self.gbit if self.gbit else 0.0

    @property
    def irqs_per_s(self) -> float:
        return self.guest_irqs / self.seconds if self.seconds else 0.0

    @property
    def tx_kicks_per_packet(self) -> float:
        return self.guest_tx_kicks / self.guest_tx_packets if self.guest_tx_packets else 0.0

    @property
    def rx_kicks_per_packet(self) -> float:
        return self.guest_rx_kicks / self.guest_rx_packets if self.guest_rx_packets else 0.0

    @property
    def irqs_per_packet(self) -> float:
        """Guest virtio interrupts per packet it sent or received."""
        packets = self.guest_tx_packets + self.guest_rx_packets
        return self.guest_irqs / packets if packets else 0.0

    @property
    def vcpu_sleeps_per_gbit(self) -> float:
        return self.vcpu_sleeps / self.gbit if self.gbit else 0.0

    @property
    def tx_packets_per_gbit(self) -> float:
        return self.guest_tx_packets / self.gbit if self.gbit else 0.0

    @property
    def rx_packets_per_gbit(self) -> float:
        return self.guest_rx_packets / self.gbit if self.gbit else 0.0

    @property
    def cores(self) -> float:
        return self.host_cpu / self.seconds if self.seconds else 0.0


NIC_COUNTERS = ("tx_queue_0_packets", "tx_queue_0_kicks", "rx_queue_0_packets", "rx_queue_0_kicks")


def guest_counters(p: Setup) -> dict[str, int]:
    """The guest's side so far, in one command: interrupts taken by its virtio devices
    (``/proc/interrupts``, key ``irqs``) and its virtio-net driver's own queue counters
    (``ethtool -S``: packets, TSO super-frames counting one, and kicks = notifications
    it sent the device)."""
    ifname = p.guest.ifname(p.side.mac)
    out = p.guest.run(f"cat /proc/interrupts; ethtool -S {ifname}", check=True).stdout
    got = dict.fromkeys(("irqs", *NIC_COUNTERS), 0)
    for line in out.splitlines():
        if "virtio" in line:
            got["irqs"] += sum(int(x) for x in line.split()[1:] if x.isdigit())
        key, _, value = line.strip().partition(":")
        if key in NIC_COUNTERS and value.strip().isdigit():
            got[key] = int(value)
    return got


TAP_COUNTERS = ("tx_dropped", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes")


def tap_counters(p: Setup) -> dict[str, int]:
    """The path's TAP counters (``rx``: frames the guest sent, written into the TAP by
    QEMU or the forwarder; ``tx``: frames for the guest, read from it)."""
    stats = f"/sys/class/net/{p.side.tap}/statistics"
    out = sh(["ip", "netns", "exec", p.netns, "sh", "-c",
              " ".join(f"cat {stats}/{k};" for k in TAP_COUNTERS)])  # fmt: skip
    return dict(zip(TAP_COUNTERS, (int(x) for x in out.split()), strict=True))


def iperf_once(
    p: Setup,
    direction: str,
    r: int,
    seconds: float,
    others: list[Setup],
    contention: Contention,
) -> Run:
    run = Run(round=r, path=p.name, direction=direction)
    assert p.guest.pid is not None
    argv = ["ip", "netns", "exec", p.netns, "iperf3", "-c", p.side.guest, "-t", f"{seconds:g}",
            "-J"] + (["-R"] if direction == "guest_to_host" else [])  # fmt: skip
    guest0 = guest_counters(p)
    procs0 = all_process_ticks()
    tap0 = tap_counters(p)
    qemu0 = proc_cpu(p.guest.pid)
    fwd0 = proc_cpu(p.forwarder.pid) if p.forwarder else {}
    idle0 = [proc_cpu(o.guest.pid) for o in others if o.guest.pid]
    busy0, t0 = busy_seconds(), time.monotonic()
    client_cpu: dict[str, float] = {"user": 0.0, "system": 0.0}
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        client = subprocess.Popen(argv, stdout=fout, stderr=ferr, text=True)
        try:
            deadline = t0 + seconds + 30
            while client.poll() is None and time.monotonic() < deadline:
                client_cpu = proc_cpu(client.pid)  # the last reading before it exits
                time.sleep(0.1)
        finally:
            if client.poll() is None:  # hung (a guest that stopped answering): by PID
                client.kill()
            client.wait()
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    busy1, t1 = busy_seconds(), time.monotonic()
    qemu = delta(proc_cpu(p.guest.pid), qemu0)
    fwd = delta(proc_cpu(p.forwarder.pid), fwd0) if p.forwarder else {}
    idle = sum(
        sum(delta(proc_cpu(o.guest.pid), i0)[k] for k in ("user", "system"))
        for o, i0 in zip([o for o in others if o.guest.pid], idle0, strict=True)
        if o.guest.pid
    )
    ours = {os.getpid(), client.pid, *p.pids()}
    run.busiest = busiest_others(procs0, all_process_ticks(), ours)
    run.benchmarks = [command_name(line) for line in contention.others_running()]
    run.seconds = t1 - t0
    tap = delta(tap_counters(p), tap0)
    run.tap_tx_dropped = int(tap["tx_dropped"])
    # The data direction's frames on the TAP: whole TSO super-frames, or segments?
    kind = "rx" if direction == "guest_to_host" else "tx"
    packets = tap[f"{kind}_packets"]
    run.data_frame_bytes = tap[f"{kind}_bytes"] / packets if packets else 0.0
    guest = delta(guest_counters(p), guest0)
    run.guest_irqs = int(guest["irqs"])
    run.guest_tx_packets = int(guest["tx_queue_0_packets"])
    run.guest_tx_kicks = int(guest["tx_queue_0_kicks"])
    run.guest_rx_packets = int(guest["rx_queue_0_packets"])
    run.guest_rx_kicks = int(guest["rx_queue_0_kicks"])
    run.qemu_vcpu = qemu["vcpu"]
    run.vcpu_sleeps = int(qemu["vcpu_sleeps"])
    run.qemu_other = qemu["user"] + qemu["system"] - qemu["vcpu"]
    run.forwarder_user = fwd.get("user", 0.0)
    run.forwarder_system = fwd.get("system", 0.0)
    run.client_cpu = client_cpu["user"] + client_cpu["system"]
    measured = run.host_cpu + run.client_cpu
    run.other_cores = max(0.0, (busy1 - busy0) - measured) / run.seconds
    run.other_guest_cores = idle / run.seconds
    try:
        result = json.loads(out)
    except json.JSONDecodeError:
        run.error = f"iperf3 printed no JSON (exit {client.returncode}): {err.strip()[-300:]}"
        return run
    if "error" in result:
        run.error = f"iperf3: {result['error']}"
        return run
    end = result["end"]
    run.gbps = end["sum_received"]["bits_per_second"] / 1e9
    run.gbit = end["sum_received"]["bytes"] * 8 / 1e9
    run.retransmits = int(end["sum_sent"].get("retransmits", 0))
    return run


def calm_run(
    args: argparse.Namespace,
    p: Setup,
    direction: str,
    r: int,
    others: list[Setup],
    contention: Contention,
) -> Run:
    """One run, redone up to ``--retries`` times while other work used more than
    ``--max-other`` cores during it; the calmest attempt is kept (``attempts`` says how
    many were made)."""
    best: Run | None = None
    for attempt in range(1, args.retries + 2):
        run = iperf_once(p, direction, r, args.seconds, others, contention)
        run.attempts = attempt
        if run.error is not None:
            return run
        if best is None or run.other_cores < best.other_cores:
            best = run
        if run.other_cores <= args.max_other:
            break
        log(
            f"  disturbed: other work used {run.other_cores:.2f} cores ({run.busiest}); "
            + ("redoing it" if attempt <= args.retries else "keeping the calmest")
        )
    assert best is not None
    best.attempts = attempt
    return best


# --------------------------------------------------------------------------- report


def figures(r: Run) -> dict[str, Any]:
    """A run's fields and derived figures, for per-round ratios."""
    return asdict(r) | {
        "cpu_per_gbit": r.cpu_per_gbit,
        "device_cpu_per_gbit": r.device_cpu_per_gbit,
    }


def med(runs: list[Run], key: str) -> float:
    """Median of an attribute or property of the runs."""
    values = [getattr(r, key) for r in runs]
    return statistics.median(values) if values else 0.0


def span(runs: list[Run], key: str, fmt: str = ".2f") -> str:
    values = [getattr(r, key) for r in runs]
    if not values:
        return "—"
    cell = f"{statistics.median(values):{fmt}}"
    return cell + (f" ({min(values):{fmt}}–{max(values):{fmt}})" if len(values) > 1 else "")


def guest_side(args: argparse.Namespace, ok: list[Run], d: str) -> list[str]:
    """The guest's costs per packet on each path, in direction ``d``."""
    lines = [
        (
            f"Guest side, {ARROW[d]} (the guest driver's own counters, `ethtool -S`, and the "
            "vCPU thread's voluntary context switches; median (range) per run):"
        ),
        "",
    ]
    lines += table_head(
        ["path", "TX packets per Gbit (k)", "TX kicks per TX packet",
         "RX packets per Gbit (k)", "RX kicks per RX packet",
         "virtio IRQs per packet (TX + RX)", "vCPU thread sleeps per Gbit",
         "guest vCPU s per Gbit"],
        "lrrrrrrr",
    )  # fmt: skip
    for name in args.paths:
        mine = [r for r in ok if r.path == name and r.direction == d]
        if not mine:
            continue
        lines.append(
            row([
                LABEL[name],
                f"{med(mine, 'tx_packets_per_gbit') / 1e3:.1f}",
                span(mine, "tx_kicks_per_packet", ".3f"),
                f"{med(mine, 'rx_packets_per_gbit') / 1e3:.1f}",
                span(mine, "rx_kicks_per_packet", ".3f"),
                span(mine, "irqs_per_packet", ".3f"),
                span(mine, "vcpu_sleeps_per_gbit", ".0f"),
                span(mine, "vcpu_per_gbit", ".3f"),
            ])
        )  # fmt: skip
    return [*lines, ""]


def render(
    args: argparse.Namespace,
    runs: list[Run],
    info: dict[str, Any],
    counters: dict[str, dict[str, Any]],
) -> str:
    ok = [r for r in runs if r.error is None]
    lines = [
        "## vhost-user: iperf3 through a real guest's virtio-net NIC",
        "",
        (
            f"`{command_line()}` (as root; {info['started']}; host kernel {platform.release()}, "
            f"{os.cpu_count()} cores; guest kernel {info['guest_kernel']}, TCG, "
            f"{args.cpus} vCPU, {args.memory} MB; {info['qemu']}). One guest per path, booted once "
            f"(boot {info['boot']}), {args.repeat} rounds, each path and direction once per "
            f"round (paths alternating, rotated each round), `iperf3 -c GUEST -t "
            f"{args.seconds:g} -J` from the host namespace (`-R` for guest → host), one TCP "
            "stream; Gbit/s = the receiver's `sum_received`. Load average "
            f"{info['load_before']} before, {info['load_after']} after."
        ),
        "",
        (
            "Host CPU = CPU time (utime + stime, every thread, `/proc/PID/stat`) over the "
            "client's run of the QEMU process (TCG vCPU thread / the rest) plus, for vhost, the "
            "forwarder process; per Gbit/s = CPU seconds ÷ Gbit received. Other CPU = busy time "
            "of all CPUs (`/proc/stat`, softirq included) minus these processes and the host "
            "iperf3 client, per second (the idle other guests' share of it in brackets)."
        ),
        "",
    ]
    for d in DIRECTIONS:
        lines += [f"### {ARROW[d]}, median (range) of {args.repeat} runs", ""]
        lines += table_head(
            ["path", "Gbit/s", "vs QEMU (per round)", "retransmits (sum)",
             "host CPU s per Gbit", "vs QEMU (per round)",
             "of which QEMU vCPU / QEMU other / forwarder", "device side vs QEMU (per round)",
             "host CPU, cores", "guest virtio IRQs/s", "data frames on the TAP, mean",
             "other CPU, cores"],
            "lrrrrrrrrrrr",
        )  # fmt: skip
        base = [r for r in ok if r.path == "qemu" and r.direction == d]
        for name in args.paths:
            mine = [r for r in ok if r.path == name and r.direction == d]
            if not mine:
                lines.append(row([LABEL[name], "failed"] + [""] * 10))
                continue
            split = " / ".join(
                f"{med(mine, k):.3f}"
                for k in ("vcpu_per_gbit", "qemu_other_per_gbit", "forwarder_per_gbit")
            )
            rd, bd = [figures(r) for r in mine], [figures(r) for r in base]
            is_base = name == "qemu"
            lines.append(
                row([
                    LABEL[name],
                    span(mine, "gbps"),
                    "1.00×" if is_base else ratio_cell(per_round_ratios(rd, bd, "gbps")),
                    sum(r.retransmits for r in mine),
                    span(mine, "cpu_per_gbit", ".3f"),
                    "1.00×" if is_base else ratio_cell(per_round_ratios(rd, bd, "cpu_per_gbit")),
                    split,
                    "1.00×" if is_base else ratio_cell(
                        per_round_ratios(rd, bd, "device_cpu_per_gbit")
                    ),
                    span(mine, "cores"),
                    f"{med(mine, 'irqs_per_s') / 1e3:.1f} k",
                    f"{med(mine, 'data_frame_bytes') / 1e3:.1f} kB",
                    f"{med(mine, 'other_cores'):.2f} ({med(mine, 'other_guest_cores'):.2f})",
                ])
            )  # fmt: skip
        lines.append("")
        lines += guest_side(args, ok, d)
    lines += ["### Every run", ""]
    lines += table_head(
        ["round", "path", "direction", "Gbit/s", "retr.", "host CPU s/Gbit",
         "QEMU vCPU / other / fwd user / fwd sys, s", "iperf3 client, s", "other CPU, cores",
         "busiest others", "TAP tx_dropped", "mean data frame on the TAP, bytes",
         "guest IRQs", "tries"],
        "rllrrrlrrlrrrr",
    )  # fmt: skip
    for r in runs:
        if r.error:
            lines.append(row([r.round + 1, r.path, ARROW[r.direction], r.error] + [""] * 10))
            continue
        lines.append(
            row([
                r.round + 1, r.path, ARROW[r.direction], f"{r.gbps:.2f}", r.retransmits,
                f"{r.cpu_per_gbit:.3f}",
                (f"{r.qemu_vcpu:.1f} / {r.qemu_other:.1f} / {r.forwarder_user:.1f} / "
                 f"{r.forwarder_system:.1f}"),
                f"{r.client_cpu:.1f}", f"{r.other_cores:.2f}", r.busiest or "—",
                r.tap_tx_dropped, f"{r.data_frame_bytes:,.0f}", r.guest_irqs, r.attempts,
            ])
        )  # fmt: skip
    lines.append("")
    for path, ctr in counters.items():
        g2t, t2g = ctr.get("guest_to_tap", {}), ctr.get("tap_to_guest", {})
        vh = ctr.get("vhost", {})
        faults = {k: v for k, v in vh.items() if k.startswith("guest_") and v}
        lines += [
            (
                f"Forwarder counters at the end ({path}): guest → TAP {g2t.get('frames', 0):,} frames, "
                f"TAP → guest {t2g.get('frames', 0):,} frames; super-frames from the guest "
                f"{vh.get('superframes', 0):,}; frames split in software for the guest "
                f"{vh.get('sent_in_software', 0):,}; send errors "
                f"{g2t.get('send_errors', 0)} / {t2g.get('send_errors', 0)}; refused chains "
                f"{faults or 'none'}; kicks the backend woke for (coalesced) TX "
                f"{vh.get('tx_kicks', 0):,} / RX {vh.get('rx_kicks', 0):,}; interrupts it "
                f"requested TX {vh.get('tx_interrupts', 0):,} / RX {vh.get('rx_interrupts', 0):,}; "
                f"guest frames taken at the kick by the vring thread "
                f"{vh.get('tx_taken_at_kick', 0):,}; features: "
                f"{', '.join(ctr.get('features', []))}."
            ),
            "",
        ]
    redone = sum(r.attempts - 1 for r in runs)
    disturbed = sum(1 for r in ok if r.other_cores > args.max_other)
    lines += [
        (
            f"Disturbed runs (other work above {args.max_other:g} cores during the run): "
            f"{redone} redone; {disturbed} of {len(ok)} kept disturbed after {args.retries} "
            "redos (the calmest attempt kept)."
        ),
        "",
    ]
    benches = sorted({b for r in runs for b in r.benchmarks})
    lines += [
        f"Other benchmarks seen running during runs: {', '.join(benches) or 'none'}.",
        "",
    ]
    return "\n".join(lines + verdict_lines(ok))


def verdict_lines(ok: list[Run]) -> list[str]:
    """The target line: each vnetio path against QEMU's, median per-round Gbit/s ratio."""
    verdict = []
    for path in ("vhost", "vhost-rust"):
        for d in DIRECTIONS:
            rd = [asdict(r) for r in ok if r.path == path and r.direction == d]
            bd = [asdict(r) for r in ok if r.path == "qemu" and r.direction == d]
            ratios = per_round_ratios(rd, bd, "gbps")
            if ratios:
                m = statistics.median(ratios)
                verdict.append(f"{path} {ARROW[d]} {m:.2f}× ({'met' if m >= 1.0 else 'NOT met'})")
    if not verdict:
        return []
    return ["Target ≥ 1.0× QEMU's own path (median per-round ratio): " + "; ".join(verdict)
            + ".", ""]  # fmt: skip


# --------------------------------------------------------------------------- main


def main() -> None:
    p = cli.parser(
        __doc__, seconds=6.0, repeat=3, repeat_help="rounds (each: every path, both directions)",
        benchmarks_md=True,
    )  # fmt: skip
    p.add_argument(
        "--paths", type=cli.str_list, default=cli.str_list(DEFAULT_PATHS), help=DEFAULT_PATHS
    )
    p.add_argument("--cpus", type=int, default=1, help="guest vCPUs (1)")
    p.add_argument("--memory", type=int, default=256, help="guest MB (256)")
    p.add_argument("--mode", default="superframes", help="forwarder rx_mode (superframes)")
    p.add_argument(
        "--max-other",
        type=float,
        default=0.3,
        help="redo a run during which other work used more CPU than this, in cores (0.3)",
    )
    p.add_argument("--retries", type=int, default=2, help="redos of a disturbed run (2)")
    p.add_argument(
        "--baseline-vnetio",
        help="directory holding another build's vnetio package, for the vhost-base path "
        "(a before/after comparison in the same rounds)",
    )
    args = p.parse_args()
    cli.require_privileges("vhost_iperf")
    if problem := rig.vm_problem():
        log(f"vhost_iperf: {problem}")
        raise SystemExit(2)
    if "vhost-base" in args.paths and not args.baseline_vnetio:
        p.error("the vhost-base path needs --baseline-vnetio DIR (a directory with vnetio/)")
    bad = [x for x in args.paths if x not in PATHS]
    if bad:
        p.error(f"unknown paths {bad}; known: {', '.join(PATHS)}")
    info: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "qemu": sh([rig.QEMU, "--version"]).splitlines()[0],
        "guest_kernel": rig.find_kernel().version,
    }
    runs: list[Run] = []
    contention = Contention(OTHER_BENCHMARKS)
    counters: dict[str, dict[str, Any]] = {}
    with paths(args) as ps:
        info["boot"] = ", ".join(f"{n} {x.guest.boot_seconds:.1f} s" for n, x in ps.items())
        for r, order in cli.rounds(args.repeat, args.paths, rotate=True):
            for name in order:
                others = [x for n, x in ps.items() if n != name]
                for d in DIRECTIONS:
                    run = calm_run(args, ps[name], d, r, others, contention)
                    runs.append(run)
                    log(
                        f"round {r + 1} {name:5} {ARROW[d]}: "
                        + (run.error or f"{run.gbps:.2f} Gbit/s, retr {run.retransmits}, "
                           f"host CPU {run.cores:.2f} cores = {run.cpu_per_gbit:.3f} s/Gbit, "
                           f"other {run.other_cores:.2f} cores")
                    )  # fmt: skip
        for name in VHOST_PATHS:
            if name in ps and (fwd := ps[name].forwarder) is not None:
                counters[name] = fwd.stop()
    info["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    text = render(args, runs, info, counters)
    data = {"info": info, "runs": [asdict(r) for r in runs], "forwarder": counters}
    emit(text, args.out, args.json, data)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text + "\n", __file__)


if __name__ == "__main__":
    cli.run_main(main)
