#!/usr/bin/env python3
"""Serial benchmarks: SLIP framing against sliplib, the SerialPair relay against socat.

Three measurements, each with its baseline peer in the same run (rounds alternate the
implementations, ``--repeat``; medians and per-round ratios are reported, as the machine
is shared):

* **SLIP codec**: encode and decode the same packets (``--packets`` of 40, of 296 and of
  1006 bytes: a small packet, Linux's SLIP MTU, RFC 1055's) with vnetio's Rust codec,
  called natively (``examples/slip_codec.rs``) and through its Python API
  (``slip_encode_batch``, ``SlipDecoder.feed``), and with sliplib (Python:
  ``Driver.send`` per packet, ``Driver.receive`` + ``get``), for random payloads and for
  payloads half made of END/ESC bytes. Figures: packet bytes per second; ratios to sliplib
  (the issue's target: >= 50x).
* **Relay throughput**: a writer thread pushes ``--mbytes`` MB into one end of a pty pair
  and the reader takes them from the other (raw mode, 64 KiB ``os.read``/``os.write``),
  through a vnetio ``SerialPair`` without pacing and through ``socat`` joining two ptys
  (``socat pty,raw,echo=0 pty,raw,echo=0``, with its default 8 KiB blocks and with
  ``-b 65536``). Ratio vnetio / best socat (target >= 1.0x).
* **Round-trip latency** of one byte: write one byte at end A, a thread echoes it at end B,
  read it back at A; median and 99th percentile over ``--pings`` round trips, for both
  relays (the echo costs the same in both).

Usage: ``python benches/serial_loop.py [--repeat 3] [--mbytes 64] [--pings 2000]
[--out FILE] [--json FILE] [--benchmarks-md BENCHMARKS.md]``. No privileges needed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sliplib
import vnetio
from harness import cli
from harness.procs import build_example, log
from harness.report import emit, per_round_ratios, ratio_cell, write_section

SIZES = (40, 296, 1006)
PAYLOADS = ("random", "END/ESC-heavy")
CHUNK = 64 * 1024


# ---------------------------------------------------------------------------- the codec


def make_packets(count: int, size: int, payload: str) -> list[bytes]:
    out = []
    for _ in range(count):
        p = bytearray(os.urandom(size))
        if payload == "END/ESC-heavy":  # every other byte END or ESC
            p[::2] = bytes(0xC0 if b & 1 else 0xDB for b in p[::2])
        out.append(bytes(p))
    return out


def best_time(fn: Callable[[], object], min_seconds: float = 0.3) -> float:
    """The fastest of repeated calls (at least 3, and at least ``min_seconds`` in all)."""
    times: list[float] = []
    while len(times) < 3 or sum(times) < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def native_codec(native: Path, packets: list[bytes], workdir: Path) -> dict[str, float]:
    """The Rust codec with no Python in the loop (examples/slip_codec.rs)."""
    path = workdir / "packets.bin"
    path.write_bytes(b"".join(len(p).to_bytes(4, "little") + p for p in packets))
    out = subprocess.run(
        [str(native), str(path), "0.3"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"native_encode": r["encode_bytes_per_s"], "native_decode": r["decode_bytes_per_s"]}


def codec_round(packets: list[bytes], native: Path, workdir: Path) -> dict[str, float]:
    nbytes = sum(map(len, packets))
    stream = vnetio.slip_encode_batch(packets)

    def sliplib_encode() -> bytes:
        send = sliplib.Driver().send
        return b"".join([send(p) for p in packets])

    def sliplib_decode() -> list[bytes]:
        d = sliplib.Driver()
        d.receive(stream)
        out = []
        while (m := d.get(block=False)) is not None:
            out.append(m)
        return out

    def vnetio_decode() -> list[bytes]:
        return vnetio.SlipDecoder(mtu=65535).feed(stream)

    assert sliplib_decode() == vnetio_decode() == packets
    assert vnetio.slip_encode_batch(packets) == stream
    return native_codec(native, packets, workdir) | {
        "vnetio_encode": nbytes / best_time(lambda: vnetio.slip_encode_batch(packets)),
        "sliplib_encode": nbytes / best_time(sliplib_encode),
        "vnetio_decode": nbytes / best_time(vnetio_decode),
        "sliplib_decode": nbytes / best_time(sliplib_decode),
    }


# ---------------------------------------------------------------------------- the relays


@contextmanager
def vnetio_relay() -> Iterator[tuple[str, str]]:
    with vnetio.SerialPair(None) as pair:
        yield pair.paths


@contextmanager
def socat_relay(block: int | None) -> Iterator[tuple[str, str]]:
    d = Path(tempfile.mkdtemp(prefix="vnetio-bench-socat-"))
    a, b = d / "a", d / "b"
    argv = ["socat"] + (["-b", str(block)] if block else [])
    argv += [f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"socat did not make its ptys (exit {proc.poll()})")
            time.sleep(0.01)
        yield str(a), str(b)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(d, ignore_errors=True)


RELAYS: dict[str, Callable[[], Any]] = {
    "vnetio": vnetio_relay,
    "socat": lambda: socat_relay(None),
    "socat -b 65536": lambda: socat_relay(65536),
}


def open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def throughput_run(relay: str, nbytes: int) -> float:
    """Bytes per second from end A to end B."""
    with RELAYS[relay]() as (pa, pb):
        a, b = open_raw(pa), open_raw(pb)
        try:
            block = os.urandom(CHUNK)

            def writer() -> None:
                left = nbytes
                while left > 0:
                    left -= os.write(a, block[: min(left, CHUNK)])

            t = threading.Thread(target=writer, daemon=True)
            start = time.perf_counter()
            t.start()
            got = 0
            while got < nbytes:
                got += len(os.read(b, CHUNK))
            took = time.perf_counter() - start
            t.join(5)
        finally:
            os.close(a)
            os.close(b)
    return nbytes / took


def latency_run(relay: str, pings: int) -> list[float]:
    """Round-trip times of one byte, in seconds."""
    with RELAYS[relay]() as (pa, pb):
        a, b = open_raw(pa), open_raw(pb)
        stop = threading.Event()

        def echo() -> None:
            while not stop.is_set():
                byte = os.read(b, 1)
                if byte == b"\xff":
                    return
                os.write(b, byte)

        t = threading.Thread(target=echo, daemon=True)
        t.start()
        try:
            os.write(a, b"w")  # warm-up
            os.read(a, 1)
            rtts = []
            for _ in range(pings):
                start = time.perf_counter()
                os.write(a, b"x")
                os.read(a, 1)
                rtts.append(time.perf_counter() - start)
        finally:
            stop.set()
            os.write(a, b"\xff")
            t.join(2)
            os.close(a)
            os.close(b)
    return rtts


# ---------------------------------------------------------------------------- main


def main() -> int:
    ap = cli.parser(__doc__, benchmarks_md=True)
    ap.add_argument("--packets", type=int, default=4000, help="packets per codec run (4000)")
    ap.add_argument("--mbytes", type=int, default=64, help="MB per relay throughput run (64)")
    ap.add_argument("--pings", type=int, default=2000, help="round trips per latency run (2000)")
    args = ap.parse_args()
    if shutil.which("socat") is None:
        log("serial_loop: socat is missing (Debian package socat; make system-deps)")
        return 2
    native = build_example("slip_codec")
    workdir = Path(tempfile.mkdtemp(prefix="vnetio-bench-slip-"))
    results: dict[str, list[Any]] = {"codec": [], "throughput": [], "latency": []}
    results["load"] = list(os.getloadavg())
    sets = {
        (size, payload): make_packets(args.packets, size, payload)
        for payload in PAYLOADS
        for size in SIZES
    }
    try:
        for rnd, order in cli.rounds(args.repeat, list(RELAYS), rotate=True):
            run_round(rnd, order, sets, native, workdir, args, results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(results, args)
    emit(text, args.out, args.json, results)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)
    return 0


def run_round(
    rnd: int,
    order: list[str],
    sets: dict[tuple[int, str], list[bytes]],
    native: Path,
    workdir: Path,
    args: Any,
    results: dict[str, list[Any]],
) -> None:
    for (size, payload), packets in sets.items():
        r = codec_round(packets, native, workdir) | {"round": rnd, "size": size, "payload": payload}
        results["codec"].append(r)
        log(
            f"codec {size} B {payload}: "
            + ", ".join(f"{k} {v / 1e6:.0f} MB/s" for k, v in r.items() if k.endswith(("code",)))
        )
    for relay in order:
        bps = throughput_run(relay, args.mbytes << 20)
        results["throughput"].append({"round": rnd, "relay": relay, "bytes_per_s": bps})
        log(f"throughput {relay}: {bps / 1e6:.1f} MB/s")
    for relay in order:
        rtts = latency_run(relay, args.pings)
        q = statistics.quantiles(rtts, n=100)
        results["latency"].append(
            {"round": rnd, "relay": relay, "median_s": statistics.median(rtts), "p99_s": q[98]}
        )
        log(f"latency {relay}: median {statistics.median(rtts) * 1e6:.1f} us")


def report(results: dict[str, list[Any]], args: Any) -> str:
    def med(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    cmd = (
        f"python benches/serial_loop.py --repeat {args.repeat} --packets {args.packets} "
        f"--mbytes {args.mbytes} --pings {args.pings}"
    )
    load = results.get("load", [])
    lines = [
        "## Serial: SLIP codec against sliplib, the pty relay against socat",
        "",
        (
            f"`{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; kernel "
            f"{os.uname().release}, {os.cpu_count()} cores; {args.repeat} rounds, medians; "
            f"ratios per round, median and range). The machine is shared: load average "
            f"{', '.join(f'{x:.1f}' for x in load)} (1, 5, 15 min) when the run began, so "
            "absolute figures move between runs; the ratios compare runs made side by side."
        ),
        "",
        (
            "SLIP codec, packet bytes per second: vnetio's Rust codec called natively "
            "(examples/slip_codec.rs) and through its Python API (`slip_encode_batch`, "
            "`SlipDecoder.feed`), against sliplib; ratios to sliplib per round:"
        ),
        "",
        (
            "| packets | encode: Rust | vnetio | sliplib | Rust/sliplib | vnetio/sliplib "
            "| decode: Rust | vnetio | sliplib | Rust/sliplib | vnetio/sliplib |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for payload in PAYLOADS:
        for size in SIZES:
            rows = [r for r in results["codec"] if (r["size"], r["payload"]) == (size, payload)]
            cells = [f"{size} B, {payload}"]
            for op in ("encode", "decode"):
                cells += [
                    f"{med(rows, f'{impl}_{op}') / 1e6:,.0f} MB/s"
                    for impl in ("native", "vnetio", "sliplib")
                ]
                for impl in ("native", "vnetio"):
                    cells.append(ratio_cell([r[f"{impl}_{op}"] / r[f"sliplib_{op}"] for r in rows]))
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            f"Relay, pty to pty without pacing ({args.mbytes} MB per run, 64 KiB reads and "
            f"writes), and one-byte round trips ({args.pings} per run, echoed by a Python thread):"
        ),
        "",
        "| relay | throughput | vs vnetio | RTT median | RTT p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    base_t = [r for r in results["throughput"] if r["relay"] == "vnetio"]
    for relay in RELAYS:
        t = [r for r in results["throughput"] if r["relay"] == relay]
        lat = [r for r in results["latency"] if r["relay"] == relay]
        ratios = per_round_ratios(t, base_t, "bytes_per_s")
        lines.append(
            f"| {relay} | {med(t, 'bytes_per_s') / 1e6:,.0f} MB/s | {ratio_cell(ratios)} | "
            f"{med(lat, 'median_s') * 1e6:,.0f} us | {med(lat, 'p99_s') * 1e6:,.0f} us |"
        )
    best_socat = [
        max(
            r["bytes_per_s"]
            for r in results["throughput"]
            if r["relay"].startswith("socat") and r["round"] == rnd
        )
        for rnd in sorted({r["round"] for r in base_t})
    ]
    mine = [r["bytes_per_s"] for r in sorted(base_t, key=lambda r: r["round"])]
    lines += [
        "",
        f"vnetio / best socat per round: {ratio_cell([m / s for m, s in zip(mine, best_socat, strict=True)])}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    cli.run_main(main)
