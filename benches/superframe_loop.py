"""Bridge loop with 64 KiB TCP super-frames, written and read from Python, against a native
Rust loop doing the same in the same run (target: Python ≥ 0.9× native).

Topology: a private namespace with a bridge and two TAPs, A and B (``vnetio._topology.
BridgeLoop``: STP and br_netfilter off, IPv6 off). Both TAPs are opened with offload
(IFF_VNET_HDR + TUNSETOFFLOAD CSUM|TSO4|TSO6), so the bridge carries each super-frame
whole from A to B (TAP-FACTS pitfall 8).

The frame: Ethernet (our source MAC, an unowned unicast destination the bridge floods to
B), IPv4, TCP, ``--payload`` bytes (default 65 000: a 65 054-byte frame), offload metadata
``gso_type=tcpv4, gso_size=1448, needs_csum`` with the pseudo-header sum in the TCP
checksum field. Python: a writer thread sends a prebuilt ``Batch`` of ``--batch`` such
frames (``send_batch``), a reader thread reads B in ``rx_mode="superframes"``
(``recv_batch``); both release the GIL in every call. Native
(``examples/native_superframe_loop.rs``): the same bytes (header + frame, from a file the
script writes), one ``write()`` / ``read()`` per frame, two threads.

Delivered = super-frames of exactly that length read from B within ``--seconds``; the
writers are unpaced, so what B's ring could not hold is lost (reported). The two loops
alternate ``--repeat`` times; medians and the ratio are reported. Run as root::

    .venv/bin/python benches/superframe_loop.py --out bench-results/superframe_loop.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import struct
import tempfile
import threading
import time
from dataclasses import dataclass

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

    @property
    def gbps(self) -> float:
        return self.nbytes * 8 / self.seconds / 1e9

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds

    @property
    def loss(self) -> float:
        return 1 - self.delivered / self.written if self.written else 0.0


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

        def writer() -> None:
            nonlocal written
            while not stop.is_set():
                written += a.send_batch(batch)

        want = len(frame)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        delivered = 0
        start = time.perf_counter()
        end = start + args.seconds
        while time.perf_counter() < end:
            rx = b.recv_batch(256, timeout=0.1)
            delivered += rx.lengths.count(want)
        seconds = time.perf_counter() - start
        stop.set()
        t.join(5)
        return Sample(written, delivered, delivered * want, seconds)
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
                "--seconds", str(args.seconds)]  # fmt: skip
        out = loop.run_in_ns(argv).stdout
    r = json.loads(out)
    return Sample(r["written"], r["delivered"], r["bytes"], r["seconds"])


def main() -> None:
    p = cli.parser(
        __doc__, repeat=5, repeat_help="alternating runs of each loop", benchmarks_md=True
    )
    p.add_argument("--payload", type=int, default=65_000, help="TCP payload bytes (65000)")
    p.add_argument("--batch", type=int, default=64, help="super-frames per send_batch (64)")
    args = p.parse_args()
    cli.require_privileges("superframe_loop")
    build_example("native_superframe_loop")
    frame, meta, vnet_hdr = superframe(args.payload)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[str, list[Sample]] = {"python": [], "native": []}
    contention = Contention(OTHER_BENCHMARKS)
    with BridgeLoop("superframe") as loop:
        for _, names in cli.rounds(args.repeat, ("native", "python")):
            for name in names:
                contention.wait_calm()
                if name == "native":
                    s = native_loop(loop, frame, vnet_hdr, args)
                else:
                    s = python_loop(loop, frame, meta, args)
                results[name].append(s)
                log(f"{name:6} {s.gbps:6.1f} Gbit/s {s.per_s / 1e3:6.1f} k/s loss {s.loss:.1%}")
    med = {k: statistics.median(s.gbps for s in v) for k, v in results.items()}
    ratios = [p.gbps / n.gbps for p, n in zip(results["python"], results["native"], strict=True)]
    cmd = command_line()
    lines = [
        "## Bridge loop with 64 KiB TCP super-frames: Python vs native",
        "",
        (
            f"`{cmd}` (as root; {started}; kernel {platform.release()}, {os.cpu_count()} cores). "
            f"Two TAPs on a bridge, offload on both; {len(frame)}-byte TCPv4 super-frames "
            f"(gso_size {MSS}) written unpaced into A, read from B in super-frame mode. Median of "
            f"{args.repeat} alternating runs of {args.seconds:g} s; delivered = super-frames read "
            "from B."
        ),
        "",
        "| loop | delivered Gbit/s | super-frames/s | loss (ring full) |",
        "|---|---:|---:|---:|",
    ]
    labels = {
        "native": "native Rust, `write()`/`read()` one per call (examples/native_superframe_loop.rs)",
        "python": f"Python + vnetio, `send_batch` of {args.batch} / `recv_batch` (2 threads)",
    }
    for name in ("native", "python"):
        v = results[name]
        lines.append(
            f"| {labels[name]} | {med[name]:.1f} | "
            f"{statistics.median(s.per_s for s in v) / 1e3:.0f} k | "
            f"{statistics.median(s.loss for s in v):.1%} |"
        )
    lines += [
        "",
        (
            f"Python / native: median of per-run ratios {statistics.median(ratios):.2f} "
            f"(runs: {', '.join(f'{r:.2f}' for r in ratios)}); target ≥ 0.90: "
            f"{'met' if statistics.median(ratios) >= 0.9 else 'NOT met'}."
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
    raw = {k: [dataclasses.asdict(s) for s in v] for k, v in results.items()}
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)


if __name__ == "__main__":
    cli.run_main(main)
