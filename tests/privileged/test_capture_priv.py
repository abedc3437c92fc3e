"""Capture from real TUN/TAP adapters in a private namespace, with the kernel's own traffic
(ping), through the Python API and the ``vnetio capture``/``replay`` commands; files are
checked by tshark. Also: SIGINT/SIGTERM leave complete files, -C/-G rotation, a full disk
(a small tmpfs this test mounts) and an unwritable path are clear errors.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vnetio
from vnetio.capture import Reader, Writer

from tests.conftest import BridgePair
from tests.netutil import Netns, run
from tests.packets import ipv4_echo_request
from tests.unit.test_capture import tool, udp_frame
from tests.waiting import settle

pytestmark = pytest.mark.privileged

PEER = "192.0.2.9"
PEER_MAC = "02:00:00:00:00:09"


def vnetio_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vnetio.cli", *args]


def frame_counts(paths: list[Path]) -> list[int]:
    """Frames in each file, read by capinfos (one process for all: a tshark per file takes
    seconds on a loaded machine); like tshark, it fails on a cut-short file."""
    rows = tool("capinfos", "-T", "-r", "-c", *map(str, paths)).splitlines()
    assert [row.rsplit("\t", 1)[0] for row in rows] == list(map(str, paths)), rows
    return [int(row.rsplit("\t", 1)[1]) for row in rows]


def tshark_count(path: Path, *display_filter: str) -> int:
    """Frames tshark reads from ``path`` (fails on any warning, e.g. a cut-short file)."""
    args = ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"]
    if display_filter:
        args += ["-Y", display_filter[0]]
    return len(tool(*args).split())


FLOOD = """
import socket, sys
count, target = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
payload = bytes(64)
sent = 0
for i in range(count):
    try:
        s.sendto(payload, (target, 9))
        sent += 1
    except OSError:  # ENOBUFS when the TAP's queue is full: try the next one
        pass
print(sent, flush=True)
"""


def flood(
    ns: Netns, count: int, target: str = PEER, *, report: bool = False
) -> subprocess.Popen[bytes]:
    """UDP datagrams from the namespace's own stack, as fast as it sends them; with
    ``report`` its stdout says how many the stack took."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, "-c", FLOOD, str(count), target],
        stdout=subprocess.PIPE if report else subprocess.DEVNULL,
    )


@pytest.fixture
def tap_ns(netns: Netns) -> Iterator[Netns]:
    """A persistent TAP vncap0 (192.0.2.1/24, up) with a static neighbour, so ping sends
    ICMP echo requests out of it at once (no ARP wait)."""
    netns.ip("tuntap", "add", "dev", "vncap0", "mode", "tap")
    try:
        netns.ip("addr", "add", "192.0.2.1/24", "dev", "vncap0")
        netns.ip("link", "set", "dev", "vncap0", "up")
        netns.ip("neigh", "add", PEER, "lladdr", PEER_MAC, "dev", "vncap0", "nud", "permanent")
        yield netns
    finally:
        netns.ip("link", "del", "dev", "vncap0", check=False)


def test_capture_to_from_a_tap_sees_the_kernels_pings(tap_ns: Netns, tmp_path: Path) -> None:
    path = tmp_path / "tap.pcapng"
    with vnetio.Tap("vncap0", netns=tap_ns.name) as tap:
        # The pings start once the capture has raised the queue (it attached its filter
        # before): a frame in flight while the kernel resizes the queue can be dropped (and
        # is counted in dropped_kernel), which is not what this test is about. The capture
        # ends at the 20th frame; its duration only bounds the test (a fixed window would
        # also have to hold the start of the ping on a loaded machine).
        raised = 'until [ "$(cat /sys/class/net/vncap0/tx_queue_len)" = 8192 ]; do sleep 0.01; done'
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", tap_ns.name, "sh", "-c",
             f"{raised}; exec ping -q -c 20 -i 0.01 -W 0.1 {PEER}"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            stats = tap.capture_to(path, filter="icmp", count=20, duration=30)
            pinger.wait(timeout=30)
        finally:
            if pinger.poll() is None:
                pinger.kill()
                pinger.wait()
    assert stats.captured == 20 and stats.reason == "count", stats
    assert stats.lost_elsewhere == 0 and stats.dropped_kernel == 0
    assert tshark_count(path) == 20
    assert tshark_count(path, "icmp.type == 8 && ip.dst == 192.0.2.9") == 20
    # Each of the 20 requests once, in order (no frame repeated or missing).
    seqs = tool("tshark", "-r", str(path), "-T", "fields", "-e", "icmp.seq").split()
    assert seqs == [str(i) for i in range(1, 21)], seqs
    assert "Name = vncap0" in tool("capinfos", str(path))
    assert "Filter string = icmp" in tool("capinfos", str(path))


def test_capture_to_from_a_tun_writes_raw_ip(netns: Netns, tmp_path: Path) -> None:
    path = tmp_path / "tun.pcap"
    with vnetio.Tun("vncapt0", netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
        netns.exec("ping", "-c", "3", "-i", "0.01", "-W", "0.1", "192.0.2.2", check=False)
        stats = tun.capture_to(path, format="pcap", count=3, duration=2.0)
    assert stats.captured == 3 and stats.reason == "count"
    out = tool("tshark", "-r", str(path), "-T", "fields", "-e", "frame.protocols", "-e", "ip.dst")
    assert out.splitlines() == ["raw:ip:icmp:data\t192.0.2.2"] * 3


def test_capture_to_raises_the_queue_for_the_capture_and_puts_it_back(
    tap_ns: Netns, tmp_path: Path
) -> None:
    with vnetio.Tap("vncap0", netns=tap_ns.name) as tap:
        assert tap.queue_length == 1000 == int(tap_ns.read_sys("vncap0/tx_queue_len"))
        stats = tap.capture_to(tmp_path / "a.pcapng", duration=0.1)
        assert stats.queue_length == vnetio.capture.CAPTURE_QUEUE_LENGTH == 8192
        assert tap.queue_length == 1000
        assert (
            tap.capture_to(tmp_path / "b.pcapng", duration=0.1, queue_length=3000).queue_length
            == 3000
        )
        # Never shrunk; None leaves it alone.
        assert (
            tap.capture_to(tmp_path / "c.pcapng", duration=0.1, queue_length=10).queue_length
            == 1000
        )
        assert (
            tap.capture_to(tmp_path / "d.pcapng", duration=0.1, queue_length=None).queue_length
            == 1000
        )
        with pytest.raises(ValueError, match="queue_length must be"):
            tap.capture_to(tmp_path / "e.pcapng", duration=0.1, queue_length=0)
        assert not (tmp_path / "e.pcapng").exists()
        # The property itself: set, read back from the kernel, bad values refused.
        tap.queue_length = 4321
        assert tap_ns.read_sys("vncap0/tx_queue_len") == "4321" and tap.queue_length == 4321
        for bad in (0, 2**20 + 1):
            with pytest.raises(ValueError, match="queue_length must be 1 to 1048576"):
                tap.queue_length = bad
        assert tap.queue_length == 4321
        tap.queue_length = 1000
    with pytest.raises(vnetio.AdapterClosedError):
        _ = tap.queue_length


def test_queue_needs_cap_net_admin_only_when_asked_for(tap_ns: Netns, tmp_path: Path) -> None:
    """Without CAP_NET_ADMIN a capture keeps the adapter's queue ("auto"), an explicit
    length is a PermissionError naming the capability, and the CLI says so."""
    child = f"""
import vnetio
with vnetio.Tap("vncap0") as tap:
    print(tap.capture_to({str(tmp_path / "a.pcapng")!r}, duration=0.1).queue_length)
    try:
        tap.capture_to({str(tmp_path / "b.pcapng")!r}, duration=0.1, queue_length=4096)
    except PermissionError as exc:
        print("refused", exc)
    print(tap.queue_length)
"""
    drop = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"]
    inside = ["ip", "netns", "exec", tap_ns.name, *drop]
    out = subprocess.run(
        [*inside, sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1].startswith("refused") and "CAP_NET_ADMIN" in lines[1], lines
    assert lines[2] == "1000"
    cli = subprocess.run(
        [*inside, *vnetio_cmd("capture", "-i", "vncap0", "-c", "1", "--queue", "4096")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 1 and "CAP_NET_ADMIN" in cli.stderr, cli.stderr


# Runs a command with SIGINT ignored (kept across exec), as a non-interactive shell starts
# its background jobs (`vnetio capture ... &`).
SIGINT_IGNORED = [
    sys.executable,
    "-c",
    (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    ),
]


def start_capture(
    ns: Netns, *args: str, text: bool = True, sigint_ignored: bool = False
) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(
        [
            *(SIGINT_IGNORED if sigint_ignored else []),
            *vnetio_cmd("capture", "-i", "vncap0", "--netns", ns.name, *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
    )
    # Attached once the TAP has carrier (a TAP has carrier exactly while a reader holds it),
    # and capturing once its queue was raised (after the filter went on).
    deadline = time.monotonic() + 10
    want_queue = "0" if "--queue" in args else "8192"
    while ns.read_sys("vncap0/carrier") != "1" or (
        want_queue != "0" and ns.read_sys("vncap0/tx_queue_len") != want_queue
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"vnetio capture did not attach: {proc.communicate()}")
        time.sleep(0.02)
    return proc


def read_by_capture(ns: Netns) -> tuple[int, int]:
    """(frames a reader took from vncap0, frames the kernel dropped at its full queue): the
    TAP's own transmit counters, as the kernel keeps them."""
    tx = ns.link("vncap0")["stats64"]["tx"]
    return int(tx["packets"]), int(tx["dropped"])


def captured_in(summary: str) -> int:
    match = re.search(r"(\d+) frames captured, (\d+) filtered out, (\d+) dropped", summary)
    assert match, summary
    return int(match[1])


@pytest.mark.parametrize(
    ("sig", "ignored"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "SIGINT-to-a-background-job"],
)
def test_cli_stops_on_a_signal_with_a_complete_file(
    tap_ns: Netns, tmp_path: Path, sig: signal.Signals, ignored: bool
) -> None:
    """Also when started with SIGINT ignored (a background job of a script): `kill -INT`
    stops it as Ctrl-C does (CI saw a capture ignore it when so started)."""
    path = tmp_path / "sig.pcapng"
    proc = start_capture(tap_ns, "-w", str(path), sigint_ignored=ignored)
    pinger = flood(tap_ns, 100_000)
    try:
        # Mid-flood: frames are being written when the signal lands (the flood is far
        # longer than this wait).
        read, _ = settle(lambda: read_by_capture(tap_ns), lambda r: r[0] >= 500, timeout=30)
        assert read >= 500, f"the capture read {read} frames of the flood in 30 s"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        pinger.kill()
        pinger.wait()
    assert proc.returncode == 0, err
    assert ("SIGINT" if sig == signal.SIGINT else "SIGTERM") in err
    n = captured_in(err)
    assert n > 100, err
    assert tshark_count(path) == n  # every frame the summary counts, no warning


def dropped_in(summary: str) -> int:
    match = re.search(r"(\d+) dropped by the kernel", summary)
    assert match, summary
    return int(match[1])


def test_cli_rotates_by_size_into_complete_files(tap_ns: Netns, tmp_path: Path) -> None:
    base = tmp_path / "size.pcapng"
    assert tap_ns.read_sys("vncap0/tx_queue_len") == "1000"
    proc = start_capture(tap_ns, "-w", str(base), "-C", "0.05", "udp")
    pinger = flood(tap_ns, 3000, report=True)
    try:
        out, _ = pinger.communicate(timeout=30)
        # The capture drains the queue: every datagram read or dropped (a frame read is
        # written before a signal is handled, src/bindings/capture.rs).
        settle(lambda: read_by_capture(tap_ns), lambda r: sum(r) >= int(out), timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        for p in (proc, pinger):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert proc.returncode == 0, err
    sent = int(out)
    files = [base] + sorted(
        (p for p in tmp_path.iterdir() if p.name != base.name),
        key=lambda p: int(p.name[len(base.name) :]),
    )
    captured = captured_in(err)
    # Every datagram the stack took was captured or counted as dropped; with the raised
    # queue (8192 frames, put back to 1000 afterwards) none should have been dropped.
    assert captured + dropped_in(err) == sent, err
    assert captured >= sent - 100, err
    assert tap_ns.read_sys("vncap0/tx_queue_len") == "1000"
    assert len(files) >= 3, files  # ~3000 x 140-byte blocks in 50 kB files
    assert [p.name for p in files[1:3]] == ["size.pcapng1", "size.pcapng2"]
    counts = frame_counts(files)
    assert sum(counts) == captured
    for p in files[:-1]:  # rotated when a file reached 50 kB (checked between reads)
        assert 50_000 <= p.stat().st_size < 50_000 + 256 * 200, (p, p.stat().st_size)


def test_cli_rotates_by_time_with_strftime_names(tap_ns: Netns, tmp_path: Path) -> None:
    pattern = str(tmp_path / "t-%H%M%S.pcap")
    proc = start_capture(tap_ns, "-w", pattern, "-G", "1", "-F", "pcap")
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", tap_ns.name, "ping", "-q", "-i", "0.01", "-c", "250", PEER],
        stdout=subprocess.DEVNULL,
    )
    try:
        # Every request read (the ping itself would linger 10 s for replies that never come).
        settle(lambda: read_by_capture(tap_ns), lambda r: r[0] >= 250, timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        pinger.kill()
        pinger.wait()
    files = sorted(tmp_path.glob("t-*.pcap"))
    assert len(files) >= 2, (files, err)
    for p in files:
        assert re.fullmatch(r"t-\d{6}\.pcap", p.name)
    counts = frame_counts(files)
    assert sum(counts) == captured_in(err) >= 250


def test_cli_prints_one_line_per_frame(tap_ns: Netns) -> None:
    proc = start_capture(tap_ns, "-c", "5", "icmp")
    tap_ns.exec("ping", "-c", "5", "-i", "0.01", "-W", "0.1", PEER, check=False)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 5
    for seq, line in enumerate(lines, start=1):
        assert re.fullmatch(
            rf"\d\d:\d\d:\d\d\.\d{{9}} IP 192\.0\.2\.1 > 192\.0\.2\.9: ICMP echo request, "
            rf"id \d+, seq {seq}, length 64",
            line,
        ), line
    assert captured_in(err) == 5


def test_cli_writes_pcapng_to_standard_output_for_tshark(tap_ns: Netns) -> None:
    """`-w -`, as tcpdump: the capture streams into a pipe (plain sequential writes, no
    direct I/O) and tshark reads it as it comes."""
    proc = start_capture(tap_ns, "-w", "-", "-c", "5", "icmp", text=False)
    tap_ns.exec("ping", "-c", "5", "-i", "0.01", "-W", "0.1", PEER, check=False)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    shark = subprocess.run(
        ["tshark", "-r", "-", "-T", "fields", "-e", "icmp.seq", "-e", "frame.interface_name"],
        input=out, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert shark.stdout.decode().split() == [x for i in range(1, 6) for x in (str(i), "vncap0")]
    assert captured_in(err.decode()) == 5


def test_cli_unwritable_path_is_a_clear_error(tap_ns: Netns, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "x.pcapng"
    result = subprocess.run(
        vnetio_cmd("capture", "-i", "vncap0", "--netns", tap_ns.name, "-w", str(target)),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot create capture file {target}" in result.stderr
    assert "No such file or directory" in result.stderr
    missing = subprocess.run(
        vnetio_cmd("capture", "-i", "vnnope0", "--netns", tap_ns.name, "-w", str(target)),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert missing.returncode == 1 and "no TUN/TAP adapter named vnnope0" in missing.stderr


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A 256 KiB tmpfs mounted in a temporary directory (unmounted in finally)."""
    mountpoint = Path(tempfile.mkdtemp(prefix="vnetio-t-full-"))
    run(["mount", "-t", "tmpfs", "-o", "size=256k", "vnetio-test", str(mountpoint)])
    try:
        yield mountpoint
    finally:
        run(["umount", str(mountpoint)], check=False)
        mountpoint.rmdir()


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "cached"])
@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_full_disk_is_a_clear_error_and_the_file_stays_readable(
    small_tmpfs: Path, fmt: str, direct_io: bool
) -> None:
    path = small_tmpfs / f"full.{fmt}"
    frames = [udp_frame(i, payload=900) for i in range(64)]
    w = Writer(path, format=fmt, linktype="ethernet", direct_io=direct_io)  # type: ignore[arg-type]
    with pytest.raises(OSError) as info:
        for _ in range(100):  # ~6 MB: far more than fits
            w.write_batch(frames)
        w.flush()
    exc = info.value
    assert exc.errno == errno.ENOSPC
    assert exc.filename == str(path)
    assert "ending at a complete record" in str(exc)
    written = exc.frames  # type: ignore[attr-defined]
    assert written > 0 and w.frames == written
    with pytest.raises(OSError, match="unusable after an earlier write error"):
        w.write(frames[0])
    w.close()
    assert tshark_count(path) == written
    with Reader(path) as r:
        assert sum(len(b) for b in r) == written


def test_capture_to_on_a_full_disk_keeps_a_readable_file_and_restores_the_adapter(
    tap_ns: Netns, small_tmpfs: Path
) -> None:
    """The disk fills while capture_to writes a flood from a TAP: ENOSPC naming the file
    and the frames it keeps, the file readable up to its last complete frame, and the
    adapter's raised queue and filter put back."""
    path = small_tmpfs / "api.pcapng"
    with vnetio.Tap("vncap0", netns=tap_ns.name) as tap:
        pinger = flood(tap_ns, 200_000)
        try:
            with pytest.raises(OSError) as info:
                tap.capture_to(path, filter="udp", duration=20)
        finally:
            pinger.kill()
            pinger.wait()
        assert tap.queue_length == 1000
        assert tap.filter is None
    exc = info.value
    assert exc.errno == errno.ENOSPC and exc.filename == str(path)
    assert "ending at a complete record" in str(exc)
    written = exc.frames  # type: ignore[attr-defined]
    assert written > 0
    assert tshark_count(path) == written
    with Reader(path) as r:
        assert sum(len(b) for b in r) == written


def test_cli_full_disk_stops_with_the_frames_so_far(tap_ns: Netns, small_tmpfs: Path) -> None:
    path = small_tmpfs / "cli.pcapng"
    proc = start_capture(tap_ns, "-w", str(path))
    pinger = flood(tap_ns, 100_000)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        pinger.kill()
        pinger.wait()
    assert proc.returncode == 1, err
    assert "No space left on device" in err and "stopped by an error" in err
    assert tshark_count(path) == captured_in(err) > 0


def test_cli_replays_a_capture_into_a_tun(netns: Netns, tmp_path: Path) -> None:
    """The kernel behind the TUN counts what arrived, and answers every echo request."""
    path = tmp_path / "echo.pcapng"
    requests = [ipv4_echo_request("192.0.2.2", "192.0.2.1", 77, i, bytes(32)) for i in range(50)]
    with Writer(path, linktype="raw") as w:
        for i, packet in enumerate(requests):
            w.write(packet, timestamp_ns=1_700_000_000_000_000_000 + i * 1_000_000)
    with vnetio.Tun("vnrep0", netns=netns.name, persist=True) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
    try:
        before = netns.link("vnrep0")["stats64"]["rx"]["packets"]
        result = subprocess.run(
            vnetio_cmd(
                "replay", "-i", "vnrep0", "--netns", netns.name, "--rate", "1000", str(path)
            ),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "50 frames sent" in result.stderr
        after = netns.link("vnrep0")["stats64"]["rx"]["packets"]
        assert after - before == 50
        snmp = netns.exec("cat", "/proc/net/snmp")
        in_echos = int(_snmp(snmp, "Icmp", "InEchos"))
        assert in_echos == 50
        wrong = subprocess.run(
            vnetio_cmd("replay", "-i", "vnrep0", "--netns", netns.name, str(_tap_file(tmp_path))),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert wrong.returncode == 1 and "replay it into a TAP" in wrong.stderr
    finally:
        netns.ip("link", "del", "dev", "vnrep0", check=False)


def _tap_file(tmp_path: Path) -> Path:
    path = tmp_path / "tap.pcap"
    with Writer(path, format="pcap", linktype="ethernet") as w:
        w.write(udp_frame(0))
    return path


def _snmp(text: str, group: str, field: str) -> str:
    rows = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
    header, values = rows[0], rows[1]
    return values[header.index(field)]


def test_replay_with_send_batch_reaches_the_bridge_peer(
    bridge_pair: BridgePair, tmp_path: Path
) -> None:
    frames = [
        b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + udp_frame(i)[12:]
        for i in range(300)
    ]
    path = tmp_path / "bridge.pcapng"
    with Writer(path, linktype="ethernet") as w:
        w.write_batch(frames)
    ns = bridge_pair.ns.name
    with vnetio.Tap(bridge_pair.a, netns=ns) as a, vnetio.Tap(bridge_pair.b, netns=ns) as b:
        bridge_pair.wait_forwarding()
        with Reader(path) as r:
            sent = sum(a.send_batch(batch) for batch in r)
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < len(frames) and time.monotonic() < deadline:
            got += [
                bytes(f) for f in b.recv_batch(timeout=0.2) if bytes(f)[6:12] == frames[0][6:12]
            ]
    assert sent == len(frames)
    assert got == frames


def test_status_line_on_a_terminal_only(tap_ns: Netns, tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            vnetio_cmd(
                "capture", "-i", "vncap0", "--netns", tap_ns.name, "-w", str(tmp_path / "s.pcapng")
            ),
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        deadline = time.monotonic() + 10
        while tap_ns.read_sys("vncap0/carrier") != "1" and time.monotonic() < deadline:
            time.sleep(0.02)
        pinger = flood(tap_ns, 2000)
        # Until the status line has been refreshed three times (not a fixed wait: the
        # capture's start is slow on a loaded machine).
        screen = b""
        deadline = time.monotonic() + 30
        while screen.count(b"frames/s") < 3 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:  # EIO: the capture is gone
                    break
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        pinger.kill()
        pinger.wait()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(master)
    text = screen.decode()
    updates = [u for u in text.split("\r") if "frames/s" in u]
    assert len(updates) >= 3, text
    # A few a second, not more: each line starts with its time since the capture began
    # (one decimal), and lines come at least STATUS_INTERVAL (0.25 s) apart.
    times = [float(u.split()[0]) for u in updates]
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(times)), times
    assert "Mbit/s" in updates[-1] and "written" in updates[-1] and "lost" in updates[-1]
    assert "frames captured" in text.splitlines()[-2]  # the summary, then the file
