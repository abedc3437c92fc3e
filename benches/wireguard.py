"""WireGuard benchmark: iperf3 TCP through a WireGuard tunnel between two namespaces, with
wireguard-go and vnetio at either end; handshakes per second; the in-process mode's
packets per second from Python.

Topology (built fresh for every case of every round, so no state carries over): namespace
A and namespace B joined by a veth (192.0.2.1 ↔ 192.0.2.2, MTU 1500); a WireGuard
interface in each (inner 10.77.0.1 ↔ 10.77.0.2, tunnel MTU 1420). iperf3 runs its client
in A and its server in B, so A's end encrypts the data and B's end decrypts it (and the
ACKs the other way). Pairs (A ↔ B):

- ``go-go``: wireguard-go ↔ wireguard-go (Debian's; the reference);
- ``vnetio-go``: vnetio (TUN mode) ↔ wireguard-go;
- ``go-vnetio``: wireguard-go ↔ vnetio (TUN mode);
- ``vnetio-vnetio``: vnetio ↔ vnetio (TUN mode).

Each vnetio end runs in a Python child process of its own (``--serve-side``), so the two
ends share no process; wireguard-go runs in the foreground (``WG_PROCESS_FOREGROUND=1``),
each instance under its own interface name (its control socket path is global). All ends
and both iperf3 processes share the machine's cores.

Rounds are interleaved: every round runs every pair once (the order rotates), and the
ratios to the wireguard-go pair are taken within a round, so drift of a shared machine
hits all pairs alike. Reported: median (min–max) Gbit/s, the median of per-round ratios
to ``go-go`` with their range, TCP retransmissions, and the CPU seconds per second of the
two tunnel ends together.

Also measured (no root needed for these; they run after the iperf3 rounds):
- handshakes per second: two in-process vnetio interfaces on 127.0.0.1; the initiator
  removes and re-adds its peer (a new session: a full Noise IK handshake each time) and
  waits for the handshake to complete, back to back;
- the in-process mode's packets per second from Python: ``send_batch`` of a prepared list
  of 1380-byte (and 64-byte) IPv4 packets into one in-process interface, ``recv_batch``
  at the other, one Python thread each.

Run as root::

    .venv/bin/python benches/wireguard.py --out bench-results/wireguard.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import cli
from harness.child import reply
from harness.procs import Child, cpu_ticks, log
from harness.report import command_line, emit, ratio_cell, write_section

OUTER_A, OUTER_B = "192.0.2.1", "192.0.2.2"
INNER_A, INNER_B = "10.77.0.1", "10.77.0.2"
WG_PORT_A, WG_PORT_B = 51820, 51821
IPERF_PORT = 5311
MTU = 1420
PAIRS = ("go-go", "vnetio-go", "go-vnetio", "vnetio-vnetio")
BASE = "go-go"


def run(argv: list[str], *, check: bool = True, timeout: float = 30, **kw: Any) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def in_ns(ns: str, *argv: str, **kw: Any) -> str:
    return run(["ip", "netns", "exec", ns, *argv], **kw)


# --- a vnetio end, in a process of its own (`wireguard.py --serve-side JSON`) ------------


def serve_side(spec: str) -> None:
    """Bring up a vnetio WireGuard interface in TUN mode as ``spec`` says; answer
    ``ready``; keep it up until stdin closes (or SIGTERM)."""
    from vnetio import wireguard

    s = json.loads(spec)
    iface = wireguard.Interface(
        s["key"], tun=s["dev"], netns=s["ns"], listen_port=s["port"],
        addresses=[f"{s['addr']}/24"], mtu=MTU,
    )  # fmt: skip
    try:
        iface.add_peer(s["peer"], endpoint=s["endpoint"], allowed_ips=[f"{s['peer_addr']}/32"])
        reply({"event": "ready"})
        sys.stdin.read()
        reply({"event": "stats", "stats": iface.stats()})
    finally:
        iface.close()


# --- the tunnel ends and the topology --------------------------------------------------


@dataclass
class End:
    """One end of the tunnel: its processes (for CPU accounting) and how to stop it."""

    pids: list[int] = field(default_factory=list)
    stack: ExitStack = field(default_factory=ExitStack)


def start_go(ns: str, name: str, key: str, port: int, addr: str, peer: str, peer_addr: str,
             endpoint: str, tmp: Path) -> End:  # fmt: skip
    end = End()
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", name],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sock = Path(f"/var/run/wireguard/{name}.sock")

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sock.unlink(missing_ok=True)

    end.stack.callback(stop)
    end.pids.append(proc.pid)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            end.stack.close()
            raise RuntimeError(f"wireguard-go {name} did not start")
        time.sleep(0.05)
    key_file = tmp / f"{name}.key"
    key_file.write_text(key + "\n")
    in_ns(ns, "wg", "set", name, "private-key", str(key_file), "listen-port", str(port),
          "peer", peer, "allowed-ips", f"{peer_addr}/32", "endpoint", endpoint)  # fmt: skip
    run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", name])
    run(["ip", "-n", ns, "link", "set", name, "mtu", str(MTU), "up"])
    return end


def start_vnetio(spec: dict[str, Any]) -> End:
    end = End()
    child = Child(
        [sys.executable, __file__, "--serve-side", json.dumps(spec)], f"vnetio end {spec['dev']}"
    )
    end.stack.enter_context(child)
    child.expect("ready", timeout=60)
    end.pids.append(child.proc.pid)
    return end


@contextmanager
def tunnel(pair: str, tmp: Path) -> Iterator[tuple[str, str, list[int]]]:
    """Namespaces A and B over a veth, the tunnel ``pair`` between them; yields both
    namespaces and the PIDs of the ends. Everything is removed on exit."""
    tag = secrets.token_hex(3)
    ns_a, ns_b = f"vnetio-wgb-{tag}-a", f"vnetio-wgb-{tag}-b"
    keys = {side: run(["wg", "genkey"]).strip() for side in "ab"}
    pubs = {side: run(["wg", "pubkey"], input=keys[side]).strip() for side in "ab"}
    kinds = dict(zip("ab", pair.split("-"), strict=True))
    with ExitStack() as stack:
        for ns in (ns_a, ns_b):
            run(["ip", "netns", "add", ns])
            stack.callback(run, ["ip", "netns", "del", ns], check=False)
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns_a, "link", "add", "vnwbva", "type", "veth", "peer", "name",
             "vnwbvb", "netns", ns_b])  # fmt: skip
        for ns, dev, addr in ((ns_a, "vnwbva", OUTER_A), (ns_b, "vnwbvb", OUTER_B)):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        pids: list[int] = []
        sides = (
            ("a", ns_a, WG_PORT_A, INNER_A, "b", INNER_B, f"{OUTER_B}:{WG_PORT_B}"),
            ("b", ns_b, WG_PORT_B, INNER_B, "a", INNER_A, f"{OUTER_A}:{WG_PORT_A}"),
        )
        for side, ns, port, addr, other, peer_addr, endpoint in sides:
            if kinds[side] == "go":
                end = start_go(ns, f"vnwg{tag}{side}", keys[side], port, addr, pubs[other],
                               peer_addr, endpoint, tmp)  # fmt: skip
            else:
                end = start_vnetio({
                    "key": keys[side], "dev": f"vnwb{side}0", "ns": ns, "port": port,
                    "addr": addr, "peer": pubs[other], "peer_addr": peer_addr,
                    "endpoint": endpoint,
                })  # fmt: skip
            stack.enter_context(end.stack)
            pids += end.pids
        # The first packet starts the handshake; wait for the tunnel to carry traffic.
        in_ns(ns_a, "ping", "-c", "1", "-W", "5", INNER_B, timeout=15)
        yield ns_a, ns_b, pids


@dataclass
class Sample:
    pair: str
    streams: int
    round: int
    gbps: float
    retransmits: int
    cpu: float  # CPU seconds per second, both tunnel ends together


def iperf(ns_a: str, ns_b: str, streams: int, seconds: float) -> tuple[float, int]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1", "-B", INNER_B, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while f":{IPERF_PORT}" not in in_ns(ns_b, "ss", "-ltnH"):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        out = in_ns(
            ns_a, "iperf3", "-c", INNER_B, "-p", str(IPERF_PORT), "-t", f"{seconds:g}", "-O", "1",
            "-P", str(streams), "-J", timeout=seconds + 30,
        )  # fmt: skip
        server.wait(10)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()
    end = json.loads(out)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9, int(end["sum_sent"].get("retransmits", 0))


def measure_iperf(
    pairs: list[str], streams: list[int], repeat: int, seconds: float
) -> list[Sample]:
    samples: list[Sample] = []
    tck = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="vnetio-wgb-") as tmp:
        for rnd, order in cli.rounds(repeat, pairs, rotate=True):
            for pair in order:
                try:
                    with tunnel(pair, Path(tmp)) as (ns_a, ns_b, pids):
                        for n in streams:
                            t0, c0 = time.monotonic(), sum(cpu_ticks(p) for p in pids)
                            gbps, retr = iperf(ns_a, ns_b, n, seconds)
                            cpu = (sum(cpu_ticks(p) for p in pids) - c0) / tck
                            cpu /= time.monotonic() - t0
                            samples.append(Sample(pair, n, rnd, gbps, retr, cpu))
                            log(f"round {rnd} {pair:14} {n} stream(s): {gbps:5.2f} Gbit/s, "
                                f"{retr} retr, cpu {cpu:.2f}")  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - one failing case must not end the run
                    log(f"round {rnd} {pair}: failed: {' '.join(str(exc).split())[:300]}")
    return samples


# --- in-process figures ---------------------------------------------------------------


def ipv4(src: str, dst: str, size: int, ident: int) -> bytes:
    """An IPv4/UDP packet of ``size`` bytes (checksum left 0: nothing checks it here)."""
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, ident & 0xFFFF, 0, 64, 17, 0, s, d)
    udp = struct.pack("!HHHH", 9000, 9, size - 20, 0)
    return head + udp + bytes(size - 28)


def in_process_pair() -> tuple[Any, Any]:
    from vnetio import wireguard

    a = wireguard.Interface(wireguard.genkey(), capacity=4096)
    b = wireguard.Interface(wireguard.genkey(), capacity=4096)
    a.add_peer(b.public_key, endpoint=f"127.0.0.1:{b.listen_port}", allowed_ips=[f"{INNER_B}/32"])
    b.add_peer(a.public_key, endpoint=f"127.0.0.1:{a.listen_port}", allowed_ips=[f"{INNER_A}/32"])
    return a, b


def handshakes_per_second(count: int) -> dict[str, float]:
    """Back-to-back handshakes of one in-process pair, each on a fresh session. The
    responder answers more than 10 initiations a second from one peer with a cookie
    (boringtun's per-peer load guard; 100 a second per interface), so they run in bursts
    of 8 with a pause between, and only the handshakes are timed."""
    a, b = in_process_pair()
    try:
        peer_b = {"endpoint": f"127.0.0.1:{b.listen_port}", "allowed_ips": [f"{INNER_B}/32"]}
        spent, done = 0.0, 0
        while done < count:
            time.sleep(1.1)  # a fresh rate-limit second at the responder
            for _ in range(min(8, count - done)):
                before = a.stats()["handshakes"]
                t0 = time.perf_counter()
                a.remove_peer(b.public_key)
                a.add_peer(b.public_key, persistent_keepalive=25, **peer_b)  # initiates at once
                deadline = t0 + 5
                while a.stats()["handshakes"] == before:
                    if time.perf_counter() > deadline:
                        raise RuntimeError("a handshake did not complete within 5 s")
                    time.sleep(0.0002)
                spent += time.perf_counter() - t0
                done += 1
        return {"handshakes": done, "seconds": spent, "per_second": done / spent}
    finally:
        a.close()
        b.close()


def in_process_rate(size: int, seconds: float) -> dict[str, float]:
    """Packets/s delivered from ``send_batch`` at one in-process end to ``recv_batch`` at
    the other (one Python thread each)."""
    a, b = in_process_pair()
    try:
        packets = [ipv4(INNER_A, INNER_B, size, i) for i in range(64)]
        a.send(packets[0])
        b.recv(timeout=5)  # the handshake is done
        stop = threading.Event()
        sent = [0]

        def sender() -> None:
            n = 0
            while not stop.is_set():
                n += a.send_batch(packets)
            sent[0] = n

        got = 0
        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < seconds:
            got += len(b.recv_batch(256, timeout=0.2))
        stop.set()
        thread.join()
        by_reason: dict[str, int] = {}
        for end in (a, b):
            for reason, n in end.stats()["drops"].items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        return {
            "size": size,
            "pps": got / elapsed,
            "gbps": got * size * 8 / elapsed / 1e9,
            "sent": sent[0],
            "received": got,
            "tunnel_drops": sum(by_reason.values()),
            "tunnel_drops_by_reason": {k: n for k, n in by_reason.items() if n},
            "receiver_queue_drops": b.adapter.stats().rx_dropped,
        }
    finally:
        a.close()
        b.close()


# --- the report -------------------------------------------------------------------------


def _reasons(by_reason: dict[str, int]) -> str:
    """``socket_buffer_full 21.40 M, ...`` (the largest first), or ``none``."""
    items = sorted(by_reason.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {n / 1e6:.2f} M" for k, n in items) or "none"


def report(samples: list[Sample], extra: dict[str, Any], args: argparse.Namespace,
           started: str, load: tuple[str, str]) -> str:  # fmt: skip
    streams = args.streams
    lines = [
        "## WireGuard: iperf3 TCP through the tunnel; handshakes; in-process packets/s",
        "",
        (
            f"`{command_line()}` (as root; {started}; kernel {platform.release()}, "
            f"{os.cpu_count()} cores shared by both tunnel ends and both iperf3 ends; load average "
            f"{load[0]} before, {load[1]} after). Two namespaces over a veth (MTU 1500), tunnel "
            f"MTU {MTU}; iperf3 client in A, server in B, `-t {args.seconds:g} -O 1`, "
            f"{args.repeat} interleaved rounds (every pair once per round, order rotated, built "
            "fresh each time). wireguard-go: Debian's "
            f"({wg_go_version()}). vnetio ends in TUN mode, each in a Python process of its own."
        ),
        "",
        "| A ↔ B | " + " | ".join(f"{n} stream{'s' * (n > 1)}: Gbit/s" for n in streams)
        + " | " + " | ".join(f"{n}: ×go-go" for n in streams)
        + " | retransmits | CPU of both ends |",
        "|---|" + "---:|" * (2 * len(streams) + 2),
    ]  # fmt: skip
    for pair in args.pairs:
        mine = [s for s in samples if s.pair == pair]
        if not mine:
            lines.append(f"| {pair} | failed (see the log) |" + " |" * (2 * len(streams) + 1))
            continue
        cells, ratios, retr, cpu = [], [], [], []
        for n in streams:
            got = [s for s in mine if s.streams == n]
            base = {s.round: s.gbps for s in samples if s.pair == BASE and s.streams == n}
            g = [s.gbps for s in got]
            cells.append(f"{statistics.median(g):.2f} ({min(g):.2f}–{max(g):.2f})" if g else "—")
            r = [s.gbps / base[s.round] for s in got if base.get(s.round)]
            ratios.append(ratio_cell(r) if pair != BASE else "1")
            retr.append(str(sum(s.retransmits for s in got)))
            cpu.append(f"{statistics.median(s.cpu for s in got):.2f}" if got else "—")
        lines.append(
            f"| {pair} | " + " | ".join(cells) + " | " + " | ".join(ratios)
            + f" | {' / '.join(retr)} | {' / '.join(cpu)} |"
        )  # fmt: skip
    lines.append("")
    hs = extra.get("handshakes")
    if hs:
        lines.append(
            f"Handshakes: {hs['per_second']:.0f}/s back to back ({hs['handshakes']} full "
            "handshakes of one in-process pair on 127.0.0.1, each on a fresh session, timed "
            "from the initiation to the initiator's confirmation, so one handshake at a time: "
            "the inverse of a handshake's latency, not a throughput; boringtun's load guard "
            "answers more than 10 initiations a second from one peer with a cookie, so they "
            "run in bursts of 8)."
        )
        lines.append("")
    for r in extra.get("in_process", []):
        lines.append(
            f"In-process, {r['size']}-byte packets: {r['pps'] / 1e3:.0f} k packets/s "
            f"({r['gbps']:.2f} Gbit/s) delivered from `send_batch` of 64 to `recv_batch` (one "
            f"Python thread each, {args.seconds:g} s). The sender is not paced: `send_batch` "
            f"took {r['sent'] / 1e6:.1f} M packets, {r['received'] / 1e6:.2f} M arrived; of the "
            "rest, the receiving interface's in-process queue dropped "
            f"{r['receiver_queue_drops'] / 1e6:.2f} M (the Python reader fell behind; 4096 "
            'packets, overflow "drop"), and the two tunnels counted '
            f'{r["tunnel_drops"] / 1e6:.2f} M drops (`stats()["drops"]`, both ends: '
            f"{_reasons(r.get('tunnel_drops_by_reason', {}))})."
        )
        lines.append("")
    lines.append("")
    return "\n".join(lines)


def wg_go_version() -> str:
    try:
        out = run(["dpkg-query", "-W", "-f=${Version}", "wireguard-go"], check=False)
    except OSError:
        out = ""
    return f"wireguard-go {out}" if out else "version unknown"


def main() -> None:
    p = cli.parser(__doc__, seconds=8.0, repeat=3, benchmarks_md=True)
    p.add_argument("--streams", type=cli.int_list, default=[1, 4], help="iperf3 -P for each (1,4)")
    p.add_argument("--pairs", type=cli.str_list, default=list(PAIRS), help=",".join(PAIRS))
    p.add_argument("--handshakes", type=int, default=64, help="handshakes to time (64; 0: skip)")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process packets/s")
    p.add_argument("--serve-side", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_side:
        serve_side(args.serve_side)
        return
    cli.require_privileges("wireguard")
    for tool in ("wireguard-go", "wg", "iperf3"):
        if shutil.which(tool) is None:
            log(f"wireguard: {tool} is missing (`make system-deps` installs it)")
            raise SystemExit(2)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())
    samples = measure_iperf(args.pairs, args.streams, args.repeat, args.seconds)
    extra: dict[str, Any] = {}
    if args.handshakes:
        extra["handshakes"] = handshakes_per_second(args.handshakes)
        log(f"handshakes: {extra['handshakes']}")
    if not args.no_in_process:
        extra["in_process"] = [in_process_rate(size, args.seconds) for size in (1380, 64)]
        log(f"in-process: {extra['in_process']}")
    load1 = " ".join(f"{x:.1f}" for x in os.getloadavg())
    text = report(samples, extra, args, started, (load0, load1))
    raw = {"samples": [dataclasses.asdict(s) for s in samples], **extra, "load": [load0, load1]}
    emit(text, args.out, args.json, raw)
    if args.benchmarks_md:
        write_section(args.benchmarks_md, text, __file__)


if __name__ == "__main__":
    cli.run_main(main)
