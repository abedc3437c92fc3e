"""pcap/pcapng writing and reading, checked against readers no one here wrote: tshark,
capinfos, editcap and scapy (files written by them are read back too)."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
import vnetio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vnetio.capture import Reader, Writer, capture_to, summarize

from tests.netutil import need
from tests.packets import ethernet, udp4

# tshark run as root prints this line on stderr; it is about us, not the file.
ROOT_NOTE = 'Running as user "root" and group "root". This could be dangerous.'
T0 = 1_700_000_000_123_456_789


def tool(*argv: str) -> str:
    """Run a Wireshark tool; fail on any stderr output other than the root note."""
    result = subprocess.run(
        [need(argv[0], "tshark"), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    warnings = [line for line in result.stderr.splitlines() if line.strip() != ROOT_NOTE]
    assert result.returncode == 0 and not warnings, (result.returncode, result.stderr)
    return result.stdout


def udp_frame(i: int, payload: int = 4) -> bytes:
    """Ethernet/IPv4/UDP, 192.0.2.1:40000+i → 192.0.2.2:53 (broadcast MAC), ``payload``
    zero bytes, checksums right."""
    packet = udp4("192.0.2.1", "192.0.2.2", 40000 + i, 53, bytes(payload), flags=0)
    return ethernet(b"\xff" * 6, bytes.fromhex("020000000001"), packet)


def frames_and_times(n: int) -> tuple[list[bytes], list[int]]:
    frames = [udp_frame(i, payload=(i * 37) % 1400) for i in range(n)]
    times = [T0 + i * 1_000_001 for i in range(n)]
    return frames, times


def write_file(path: Path, fmt: str, frames: list[bytes], times: list[int], **kw: object) -> None:
    with Writer(path, format=fmt, **kw) as w:  # type: ignore[arg-type]
        for frame, ts in zip(frames, times, strict=True):
            w.write(frame, timestamp_ns=ts)


@pytest.fixture(params=["pcapng", "pcap"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_fix_helper_builds_valid_frames() -> None:
    assert vnetio.checksum.verify(udp_frame(3), "tap") == (True, True)


def test_tshark_reads_every_frame_length_and_nanosecond(tmp_path: Path, fmt: str) -> None:
    frames, times = frames_and_times(50)
    path = tmp_path / f"x.{fmt}"
    write_file(path, fmt, frames, times, interface="vn7", filter="udp port 53", linktype="ethernet")
    out = tool(
        "tshark", "-r", str(path), "-T", "fields",
        "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.time_epoch",
        "-e", "udp.srcport", "-e", "frame.interface_name",
    )  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(frames)
    for i, (row, frame, ts) in enumerate(zip(rows, frames, times, strict=True)):
        assert int(row[0]) == int(row[1]) == len(frame)
        assert int(Decimal(row[2]) * 10**9) == ts
        assert int(row[3]) == 40000 + i  # tshark dissected our frame as we built it
        if fmt == "pcapng":
            assert row[4] == "vn7"


def test_capinfos_agrees_on_counts_bytes_interface_and_filter(tmp_path: Path) -> None:
    frames, times = frames_and_times(20)
    path = tmp_path / "x.pcapng"
    write_file(
        path, "pcapng", frames, times, linktype="ethernet", interface="vn7",
        filter="udp and host 192.0.2.1",
    )  # fmt: skip
    info = tool("capinfos", "-M", str(path))
    assert f"Number of packets:   {len(frames)}" in info
    assert f"Data size:           {sum(map(len, frames))} bytes" in info
    assert "Name = vn7" in info
    assert "Filter string = udp and host 192.0.2.1" in info
    assert "Time precision = nanoseconds (9)" in info
    assert f"Capture application: vnetio {vnetio.__version__}" in info
    assert "Encapsulation = Ethernet" in info


def test_tun_files_are_raw_ip_to_tshark(tmp_path: Path, fmt: str) -> None:
    packets = [udp_frame(i)[14:] for i in range(3)]
    path = tmp_path / f"tun.{fmt}"
    write_file(path, fmt, packets, [T0, T0 + 1, T0 + 2], linktype="raw")
    out = tool("tshark", "-r", str(path), "-T", "fields", "-e", "ip.src", "-e", "frame.protocols")
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("192.0.2.1\traw:ip:udp") for line in lines), lines


def test_snaplen_cuts_frames_and_keeps_the_original_length(tmp_path: Path, fmt: str) -> None:
    frames, _ = frames_and_times(10)
    path = tmp_path / f"cut.{fmt}"
    with Writer(path, format=fmt, snaplen=60, linktype="ethernet") as w:  # type: ignore[arg-type]
        w.write_batch(vnetio.Batch.from_frames(frames))
        assert w.truncated_frames == sum(len(f) > 60 for f in frames)
    out = tool("tshark", "-r", str(path), "-T", "fields", "-e", "frame.len", "-e", "frame.cap_len")
    for line, frame in zip(out.splitlines(), frames, strict=True):
        assert line.split("\t") == [str(len(frame)), str(min(60, len(frame)))]
    with Reader(path) as r:
        batch = r.read_batch(100)
        assert batch.lengths == [min(60, len(f)) for f in frames]
        assert r.truncated_frames == sum(len(f) > 60 for f in frames)


def test_scapy_reads_the_same_frames_and_timestamps(
    tmp_path: Path, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    import scapy.layers.l2  # noqa: F401  (registers link type 1 with scapy's readers)
    from scapy.utils import PcapNgReader, RawPcapReader, rdpcap

    frames, times = frames_and_times(30)
    path = tmp_path / f"x.{fmt}"
    write_file(path, fmt, frames, times, linktype="ethernet", interface="vn1")
    with caplog.at_level(logging.WARNING):
        packets = rdpcap(str(path))
        if fmt == "pcapng":
            with PcapNgReader(str(path)) as reader:
                more = list(reader)
            assert [bytes(p) for p in more] == frames
        else:
            with RawPcapReader(str(path)) as reader:
                assert len(list(reader)) == len(frames)
    assert not [r for r in caplog.records if r.name.startswith("scapy")], caplog.text
    assert [bytes(p) for p in packets] == frames
    assert [int(Decimal(p.time) * 10**9) for p in packets] == times


def test_batch_timestamps_are_kept_and_zero_means_now(tmp_path: Path) -> None:
    a, b = vnetio.loopback_pair(kind="tap")
    a.send_batch([udp_frame(i) for i in range(3)])
    received = b.recv_batch(timeout=1.0)
    path = tmp_path / "x.pcapng"
    with Writer(path, interface=b) as w:
        assert w.write_batch(received) == 3
        w.write_batch([udp_frame(9)])  # built in memory: timestamp 0 → now
        assert (w.frames, w.bytes) == (4, received.nbytes + len(udp_frame(9)))
    with Reader(path) as r:
        batch = r.read_batch()
        assert r.kind == "tap" and r.linktype == 1
    assert batch.timestamps_ns[:3] == received.timestamps_ns
    assert batch.timestamps_ns[3] >= received.timestamps_ns[2]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    frames=st.lists(st.binary(min_size=0, max_size=1600), max_size=40),
    times=st.lists(st.integers(min_value=1, max_value=2**63), min_size=40, max_size=40),
    fmt=st.sampled_from(["pcapng", "pcap"]),
    snaplen=st.sampled_from([1, 64, 1500, 262144]),
    batch_size=st.integers(min_value=1, max_value=50),
)
def test_round_trip(
    tmp_path: Path, frames: list[bytes], times: list[int], fmt: str, snaplen: int, batch_size: int
) -> None:
    if fmt == "pcap":  # classic pcap stores 32-bit seconds
        times = [t % (2**32 * 10**9) or 1 for t in times]
    times = times[: len(frames)]
    path = tmp_path / f"rt.{fmt}"
    write_file(path, fmt, frames, times, snaplen=snaplen, linktype="ethernet")
    got: list[bytes] = []
    got_times: list[int] = []
    with Reader(path) as r:
        for batch in iter(lambda: r.read_batch(batch_size), None):
            if len(batch) == 0:
                break
            assert len(batch) <= batch_size
            got += batch.to_list()
            got_times += batch.timestamps_ns
        assert r.frames == len(frames)
    assert got == [f[:snaplen] for f in frames]
    assert got_times == times


def test_files_written_by_other_tools_are_read(tmp_path: Path) -> None:
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgWriter, wrpcap

    frames, times = frames_and_times(12)
    ours = tmp_path / "ours.pcapng"
    write_file(ours, "pcapng", frames, times, linktype="ethernet", interface="vn3")
    # editcap: microsecond pcap and a pcapng it rewrites itself.
    as_pcap = tmp_path / "editcap.pcap"
    as_ng = tmp_path / "editcap.pcapng"
    tool("editcap", "-F", "pcap", str(ours), str(as_pcap))
    tool("editcap", "-F", "pcapng", str(ours), str(as_ng))
    with Reader(as_pcap) as r:
        batch = r.read_batch(100)
        assert r.format == "pcap"
    assert batch.to_list() == frames
    assert batch.timestamps_ns == [t // 1000 * 1000 for t in times]  # µs precision
    with Reader(as_ng) as r:
        batch = r.read_batch(100)
        assert r.interfaces[0]["name"] == "vn3"
    assert batch.to_list() == frames and batch.timestamps_ns == times
    # scapy's writers (µs pcap; pcapng with its own block layout).
    packets = [Ether(f) for f in frames]
    for p, t in zip(packets, times, strict=True):
        p.time = Decimal(t) / 10**9
    wrpcap(str(tmp_path / "scapy.pcap"), packets)
    with PcapNgWriter(str(tmp_path / "scapy.pcapng")) as w:
        for p in packets:
            w.write(p)
    for name in ("scapy.pcap", "scapy.pcapng"):
        with Reader(tmp_path / name) as r:
            batch = r.read_batch(100)
        assert batch.to_list() == frames, name
        assert all(abs(a - b) < 1000 for a, b in zip(batch.timestamps_ns, times, strict=True))


def test_reader_errors_name_the_offset(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ValueError, match="not a pcap or pcapng file") as info:
        Reader(garbage)
    assert info.value.offset == 0  # type: ignore[attr-defined]
    frames, times = frames_and_times(5)
    good = tmp_path / "good.pcapng"
    write_file(good, "pcapng", frames, times, linktype="ethernet")
    data = good.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-10])
    with Reader(cut) as r:
        assert len(r.read_batch(4)) == 4
        with pytest.raises(ValueError, match=r"cut short.*byte offset \d+") as info:
            r.read_batch(4)
    assert info.value.offset == len(data) - len(frames[-1]) - 32 - (-len(frames[-1]) % 4)  # type: ignore[attr-defined]
    with pytest.raises(FileNotFoundError) as missing:
        Reader(tmp_path / "nope.pcap")
    assert missing.value.filename == str(tmp_path / "nope.pcap")


def test_writer_refuses_bad_arguments_before_creating_the_file(tmp_path: Path) -> None:
    path = tmp_path / "never.pcapng"
    with pytest.raises(ValueError, match="interface=adapter"):
        Writer(path)
    with pytest.raises(ValueError, match="format"):
        Writer(path, format="erf", linktype="raw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="syntax error|filter|parse"):
        Writer(path, linktype="ethernet", filter="udp and and")
    a, _ = vnetio.loopback_pair(kind="tun")
    with pytest.raises(ValueError, match="does not carry"):
        Writer(path, interface=a, linktype="ethernet")
    with pytest.raises(TypeError):
        Writer(path, interface=42)  # type: ignore[arg-type]
    assert not path.exists()


def direct_io_works_in(directory: Path) -> bool:
    """Whether this filesystem takes O_DIRECT opens (tmpfs does since Linux 6.6)."""
    try:
        fd = os.open(directory / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    os.unlink(directory / "probe")
    return True


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_direct_and_cached_writes_make_the_same_file(tmp_path: Path, fmt: str) -> None:
    """~6 MB across many buffers, flushed at odd moments (the unaligned tail goes through
    the page cache and is rewritten by the next whole-page write): byte for byte what the
    page-cache-only writer makes, and what tshark reads."""
    frames, _ = frames_and_times(997)
    files = {}
    for direct in (True, False):
        path = tmp_path / f"{direct}.{fmt}"
        with Writer(path, format=fmt, linktype="ethernet", direct_io=direct) as w:  # type: ignore[arg-type]
            assert w.direct_io == (direct and direct_io_works_in(tmp_path))
            for i in range(8):
                for frame in frames:
                    w.write(frame, timestamp_ns=10**18 + i)
                if i % 3 == 1:
                    w.flush()
                    assert path.stat().st_size == w.file_bytes
            size = w.file_bytes
        assert path.stat().st_size == size
        files[direct] = path.read_bytes()
    assert files[True] == files[False]
    out = tool("tshark", "-r", str(tmp_path / f"True.{fmt}"), "-T", "fields", "-e", "frame.len")
    assert out.split() == [str(len(f)) for f in frames] * 8


def test_snaplen_above_libpcaps_maximum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snaplen must be 1 to 262144"):
        Writer(tmp_path / "x.pcap", linktype="ethernet", snaplen=262145)
    assert not (tmp_path / "x.pcap").exists()


def test_unwritable_path_is_a_clear_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        Writer(tmp_path / "no" / "dir" / "x.pcapng", linktype="ethernet")
    assert info.value.filename == str(tmp_path / "no" / "dir" / "x.pcapng")
    assert "cannot create capture file" in str(info.value)


def test_closed_writer_refuses_frames(tmp_path: Path) -> None:
    w = Writer(tmp_path / "x.pcap", format="pcap", linktype="ethernet")
    w.close()
    w.close()  # idempotent
    assert w.closed
    with pytest.raises(ValueError, match="closed"):
        w.write(udp_frame(0))


def test_capture_to_counts_captured_filtered_and_kernel_drops(tmp_path: Path) -> None:
    a, b = vnetio.loopback_pair(capacity=64, kind="tap", overflow="drop")
    arp = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06" + bytes(28)
    a.send_batch([udp_frame(i) for i in range(40)] + [arp] * 10 + [udp_frame(0)] * 30)
    # 80 sent into a queue of 64: 16 dropped before the capture reads anything.
    stats = b.capture_to(tmp_path / "c.pcapng", filter="udp", duration=0.3)
    assert (stats.captured, stats.filtered, stats.lost_elsewhere) == (54, 10, 0)
    assert stats.dropped_kernel == 0  # the drops happened before the capture started
    assert stats.files == [str(tmp_path / "c.pcapng")]
    out = tool("tshark", "-r", str(tmp_path / "c.pcapng"), "-T", "fields", "-e", "udp.dstport")
    assert out.split() == ["53"] * 54
    a.send_batch([udp_frame(i) for i in range(5)])
    stats = capture_to(b, tmp_path / "d.pcap", format="pcap", count=3, duration=5.0)
    assert stats.captured == 3 and stats.reason == "count"
    with pytest.raises(ValueError, match="would never end"):
        capture_to(b, tmp_path / "e.pcap")
    with pytest.raises(ValueError, match="count must be"):
        capture_to(b, tmp_path / "e.pcap", count=0)


def test_capture_to_counts_drops_during_the_capture(tmp_path: Path) -> None:
    a, b = vnetio.loopback_pair(capacity=8, kind="tap", overflow="drop")
    import threading

    def flood() -> None:
        # Inside the capture's window: once it has read a first frame (not after a guessed
        # delay, which a loaded machine can make too short or too long).
        a.send(udp_frame(0))
        deadline = time.monotonic() + 10
        while b.pending and time.monotonic() < deadline:
            time.sleep(0.001)
        for _ in range(200):
            a.send_batch([udp_frame(0)] * 50)

    t = threading.Thread(target=flood)
    t.start()
    stats = b.capture_to(tmp_path / "f.pcapng", duration=1.0)
    t.join()
    rest = len(b.recv_batch(max_frames=100, timeout=0))
    # Every frame sent was written, dropped by the full queue, or is still queued.
    total_dropped = b.stats().rx_dropped
    assert stats.captured + total_dropped + rest == 1 + 200 * 50
    assert 0 < stats.dropped_kernel <= total_dropped
    assert stats.lost_elsewhere == 0
    with Reader(tmp_path / "f.pcapng") as r:
        assert sum(len(x) for x in r) == stats.captured


def test_summaries_name_what_tshark_names(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether

    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    packets = [
        e / IP(src="192.0.2.1", dst="198.51.100.7") / TCP(sport=1234, dport=80, flags="SA"),
        e / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=5000, dport=53) / b"abc",
        e / IP(src="192.0.2.1", dst="198.51.100.7") / ICMP(id=7, seq=9) / bytes(56),
        e / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=3, seq=4),
        e / Dot1Q(vlan=100) / IP(src="203.0.113.1", dst="203.0.113.2") / UDP(sport=1, dport=2),
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
        / ARP(psrc="192.0.2.1", pdst="192.0.2.9"),
    ]
    frames = [bytes(p) for p in packets]
    batch = vnetio.Batch.from_frames(frames)
    lines = summarize(batch, "tap", utc_offset=0).splitlines()
    assert len(lines) == len(frames)
    path = tmp_path / "s.pcapng"
    write_file(path, "pcapng", frames, [T0] * len(frames), linktype="ethernet")
    out = tool(
        "tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
        "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
        "-e", "tcp.srcport", "-e", "udp.srcport", "-e", "udp.length", "-e", "icmp.seq",
        "-e", "arp.dst.proto_ipv4", "-e", "vlan.id",
    )  # fmt: skip
    for line, row in zip(lines, out.splitlines(), strict=True):
        for value in filter(None, row.split("|")):
            if value.isdigit() and row.split("|")[6] == value:  # udp.length: header + data
                assert f"length {int(value) - 8}" in line, (line, row)
            else:
                assert value in line, (line, row)
    assert lines[0].endswith("Flags [S.], seq 0, ack 0, win 8192, length 0")
    assert "ICMP echo request, id 7, seq 9, length 64" in lines[2]
    assert "ICMP6, echo request, id 3, seq 4" in lines[3]
    assert lines[4].startswith("00:00:00.") and "vlan 100, IP 203.0.113.1.1 > " in lines[4]
    assert "ARP, Request who-has 192.0.2.9 tell 192.0.2.1" in lines[5]


def block(kind: int, body: bytes) -> bytes:
    """A big-endian pcapng block."""
    body += bytes(-len(body) % 4)
    return struct.pack(">II", kind, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))


def test_big_endian_pcapng_with_every_packet_block_reads_as_tshark_reads_it(
    tmp_path: Path,
) -> None:
    """A file no writer here made: big-endian, if_tsresol 2^-10 s, if_tsoffset, an unknown
    block, then an Enhanced, a Simple and an obsolete Packet Block; a second section with
    its own interface (microseconds, a name). tshark is the reference."""
    shb = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1) + bytes(4))
    options = struct.pack(">HHB3x", 9, 1, 0x80 | 10) + struct.pack(">HHq", 14, 8, 100) + bytes(4)
    idb = block(1, struct.pack(">HHI", 101, 0, 0) + options)
    ip = bytes.fromhex("45000014000000004001") + bytes(10)
    epb = block(6, struct.pack(">IIIII", 0, 0, 3 * 1024 + 512, 20, 20) + ip)
    spb = block(3, struct.pack(">I", 20) + ip)
    legacy = block(2, struct.pack(">HHIIII", 0, 0, 0, 1024, 20, 20) + ip)
    unknown = block(0x0BADBEEF, b"skip me")
    name = b"second\0\0"
    idb2 = block(1, struct.pack(">HHI", 101, 0, 0) + struct.pack(">HH", 2, 6) + name + bytes(4))
    epb2 = block(6, struct.pack(">IIIII", 0, 0, 2_500_000, 20, 20) + ip)
    path = tmp_path / "be.pcapng"
    path.write_bytes(shb + idb + unknown + epb + spb + legacy + shb + idb2 + epb2)
    out = tool(
        "tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len"
    )
    expected = [
        (Decimal(t) if t else None, int(n)) for t, n in (r.split("\t") for r in out.splitlines())
    ]
    with Reader(path) as r:
        batch = r.read_batch(10)
        assert r.kind == "tun"
        assert [i["name"] for i in r.interfaces] == [None, "second"]
    got = [
        (Decimal(t) / 10**9 if t else None, n)
        for t, n in zip(batch.timestamps_ns, batch.lengths, strict=True)
    ]
    assert got == expected
    assert expected[0] == (Decimal("103.5"), 20)  # 3.5 s in 2^-10 units + 100 s offset


def test_a_microsecond_count_of_one_second_is_carried_as_tshark_does(tmp_path: Path) -> None:
    """scapy's PcapWriter can round 0.9999995 s up to 1000000 µs; readers carry it."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    frame = udp_frame(0)
    record = struct.pack("<IIII", 1_700_000_000, 1_000_000, len(frame), len(frame)) + frame
    path = tmp_path / "carry.pcap"
    path.write_bytes(header + record)
    out = tool("tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch")
    with Reader(path) as r:
        (ts,) = r.read_batch().timestamps_ns
    # tshark keeps the fields as they are (1000000000 ns) and prints them side by side.
    seconds, nanoseconds = out.strip().split(".")
    assert ts == int(seconds) * 10**9 + int(nanoseconds) == 1_700_000_001 * 10**9


def test_replay_counts_the_frames_a_failed_send_got_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A send that stops part-way (here a full in-memory queue: QueueFullError.sent) is
    counted frame by frame in the summary, not as the whole batch or nothing."""
    import argparse

    from vnetio.cli.capture import _replay

    frames, times = frames_and_times(20)
    path = tmp_path / "r.pcapng"
    write_file(path, "pcapng", frames, times, linktype="ethernet")
    a, b = vnetio.loopback_pair(capacity=8, kind="tap", overflow="error")
    args = argparse.Namespace(rate=None, topspeed=True)
    with Reader(path) as r:
        assert _replay(r, a, args) == 1
    err = capsys.readouterr().err
    want = sum(len(f) for f in frames[:8])
    assert f"8 frames sent ({want} bytes)" in err, err
    assert "stopped by an error" in err
    assert b.recv_batch(max_frames=64, timeout=0).to_list() == frames[:8]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "0"], "-c COUNT must be at least 1"),
        (["-s", "262145"], "-s SNAPLEN must be 1 to 262144"),
        (["-s", "-1"], "-s SNAPLEN must be 1 to 262144"),
        (["-C", "1"], "-C rotates files: it needs -w FILE"),
        (["-w", "-", "-G", "5"], "-G rotates files: it needs -w FILE (not -w -)"),
        (["--queue", "-2"], "--queue FRAMES must be at least 1"),
        (["--tun"], "--tun goes with --create"),
    ],
)
def test_capture_command_refuses_bad_flags_before_touching_an_adapter(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from vnetio.cli import main

    with pytest.raises(SystemExit) as info:
        main(["capture", "-i", "vnetio-no-such-adapter", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def simple_packet_file(path: Path, frames: list[bytes], snaplen: int = 0) -> None:
    """A pcapng file whose packets are Simple Packet Blocks (no timestamps), by hand."""

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        total = 12 + len(body)
        return struct.pack("<II", kind, total) + body + struct.pack("<I", total)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, snaplen))
    for f in frames:
        out += block(3, struct.pack("<I", len(f)) + f)
    path.write_bytes(out)


def test_simple_packet_blocks_have_no_timestamp_not_the_epoch(tmp_path: Path) -> None:
    frames = [udp_frame(i, payload=i) for i in range(5)]
    simple_packet_file(tmp_path / "spb.pcapng", frames)
    with Reader(tmp_path / "spb.pcapng") as r:
        batch = r.read_batch(100)
    assert batch.to_list() == frames
    assert batch.timestamps_ns == [None] * 5
    assert summarize(batch).splitlines()[0].startswith("--:--:--.--------- ")
    assert all(p.time != 0 for p in batch.to_scapy())  # scapy keeps its own default
    # Written back, they stay Simple Packet Blocks (tshark reads them), time still unknown.
    with Writer(tmp_path / "again.pcapng", linktype="ethernet") as w:
        w.write_batch(batch)
    with Reader(tmp_path / "again.pcapng") as r:
        again = r.read_batch(100)
    assert again.to_list() == frames and again.timestamps_ns == [None] * 5
    lines = tool("tshark", "-r", str(tmp_path / "again.pcapng"), "-T", "fields", "-e", "frame.len")
    assert lines.split() == [str(len(f)) for f in frames]
