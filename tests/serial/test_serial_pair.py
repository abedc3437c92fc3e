"""SerialPair with pyserial on both ends: open by symlink, write, read, timeouts, a 10 MB
transfer byte-exact, pacing at 115200 bit/s, and the fault counters against what actually
arrived. Pseudo-terminals need no privileges.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial  # pyserial
import vnetio

from tests.waiting import settle


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[vnetio.SerialPair]:
    with vnetio.SerialPair(("ttyVNa", "ttyVNb"), link_dir=tmp_path) as p:
        yield p


def open_end(path: str, **kwargs: object) -> serial.Serial:
    return serial.Serial(path, baudrate=115200, timeout=2, **kwargs)  # type: ignore[arg-type]


def read_exactly(port: serial.Serial, n: int, timeout: float) -> bytes:
    """Read until ``n`` bytes arrived or ``timeout`` passed (pyserial's read returns early
    on its own per-call timeout)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += port.read(min(n - len(out), max(1, port.in_waiting)))
    return bytes(out)


def write_in_background(port: serial.Serial, data: bytes) -> threading.Thread:
    """Write from another thread: a large write blocks until the far end reads."""
    writer = threading.Thread(target=port.write, args=(data,), daemon=True)
    writer.start()
    return writer


def read_all_relayed(pair: vnetio.SerialPair, port: serial.Serial, sent: int) -> bytes:
    """Read end b until the relay has taken all ``sent`` bytes from end a and all it passed
    on has arrived (what it dropped never will). Not "until the line is quiet": the relay
    or the writer may pause that long on a loaded machine."""
    port.timeout = 0.05
    out = bytearray()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out += port.read(65536)
        ab = pair.stats()["a_to_b"]
        done = ab["bytes_in"] == sent and ab["bytes_out"] + ab["dropped"] == sent
        if done and len(out) >= ab["bytes_out"]:
            break
    return bytes(out)


def read_until_quiet(port: serial.Serial, quiet: float = 0.5) -> bytes:
    port.timeout = quiet
    out = bytearray()
    while chunk := port.read(65536):
        out += chunk
    return bytes(out)


def test_ends_are_stable_symlinks_to_ptys(tmp_path: Path) -> None:
    with vnetio.SerialPair(("ttyVNa", "ttyVNb"), link_dir=tmp_path) as p:
        assert p.paths == (str(tmp_path / "ttyVNa"), str(tmp_path / "ttyVNb"))
        for link, pty in zip(p.paths, p.ptys, strict=True):
            assert os.readlink(link) == pty
            assert pty.startswith("/dev/pts/")
            assert stat.S_ISCHR(os.stat(link).st_mode)
        # The names are taken while the pair lives.
        with pytest.raises(FileExistsError):
            vnetio.SerialPair(("ttyVNa", "other"), link_dir=tmp_path)
        assert "ttyVNa" in repr(p)
    assert p.closed
    assert not (tmp_path / "ttyVNa").exists()
    assert not os.path.lexists(tmp_path / "ttyVNb")


def test_without_links_the_ends_are_the_ptys() -> None:
    with vnetio.SerialPair(None) as p:
        assert p.paths == p.ptys


def test_pyserial_writes_reads_and_times_out(pair: vnetio.SerialPair) -> None:
    with open_end(pair.paths[0]) as a, open_end(pair.paths[1]) as b:
        a.write(b"hello\n")
        assert b.readline() == b"hello\n"
        b.write(bytes(range(256)))  # every byte value passes untouched (raw line)
        assert read_exactly(a, 256, 5) == bytes(range(256))
        # Nothing sent: read returns what it has when its timeout passes.
        b.timeout = 0.3
        started = time.monotonic()
        assert b.read(10) == b""
        assert 0.25 <= time.monotonic() - started < 1.5
        a.write(b"xyz")
        assert b.read(10) == b"xyz"  # three bytes, then the timeout
        assert a.in_waiting == 0
    stats = pair.stats()
    assert stats["a_to_b"]["bytes_out"] == 6 + 3
    assert stats["b_to_a"]["bytes_out"] == 256


def test_ten_megabytes_byte_exact(pair: vnetio.SerialPair) -> None:
    data = os.urandom(10 << 20)
    with open_end(pair.paths[0], write_timeout=60) as a, open_end(pair.paths[1]) as b:
        writer = write_in_background(a, data)
        got = read_exactly(b, len(data), timeout=60)
        writer.join(5)
        # The relay counts a write just after making it.
        ab = settle(lambda: pair.stats()["a_to_b"], lambda ab: ab["bytes_out"] >= len(data))
    assert len(got) == len(data)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert ab["bytes_in"] == ab["bytes_out"] == len(data)
    assert ab["dropped"] == ab["corrupted"] == 0


def test_baud_paces_the_transfer_at_the_line_rate(tmp_path: Path) -> None:
    size = 64_000  # 10 bits a byte at 115200 bit/s: 5.56 s
    expected = size * 10 / 115200
    data = os.urandom(size)
    with (
        vnetio.SerialPair(None, baud=115200) as p,
        open_end(p.paths[0], write_timeout=30) as a,
        open_end(p.paths[1]) as b,
    ):
        assert p.baud == 115200
        started = time.monotonic()
        writer = write_in_background(a, data)
        got = read_exactly(b, size, timeout=expected * 2)
        took = time.monotonic() - started
        writer.join(5)
    assert got == data
    # Never faster than the line (the pacing), within 5 %; slower by at most 15 %: the relay
    # makes up its own lateness, but a writer or reader thread descheduled on a loaded
    # machine idles the line (5.87 s for 5.56 s seen at load 10). 15 % still catches a
    # wrong bit count per byte (8N1 is 10 bits; a 12-bit byte would be +20 %).
    assert -0.05 < (took - expected) / expected < 0.15, f"{took:.3f} s for {expected:.3f} s of line"


def test_a_reader_that_does_not_read_blocks_the_line(pair: vnetio.SerialPair) -> None:
    with open_end(pair.paths[0], write_timeout=0.5) as a, open_end(pair.paths[1]) as b:
        with pytest.raises(serial.SerialTimeoutException):
            a.write(bytes(1 << 20))  # far more than the ptys' queues hold
        time.sleep(0.3)
        blocked = pair.stats()["a_to_b"]["blocked_s"]
        assert blocked >= 0.3
        assert read_until_quiet(b)  # reading unblocks it
        assert pair.stats()["a_to_b"]["blocked_s"] >= blocked


def test_corrupted_bytes_are_exactly_the_bytes_that_changed() -> None:
    data = os.urandom(50_000)
    with (
        vnetio.SerialPair(None, faults={"corrupt": 0.003, "seed": 5}) as p,
        open_end(p.paths[0]) as a,
        open_end(p.paths[1]) as b,
    ):
        writer = write_in_background(a, data)
        got = read_exactly(b, len(data), timeout=30)
        writer.join(5)
        counted = p.stats()["a_to_b"]
    assert len(got) == len(data)
    changed = sum(x != y for x, y in zip(data, got, strict=True))
    assert changed == counted["corrupted"] > 50
    assert counted["dropped"] == 0


def test_dropped_bytes_are_exactly_the_bytes_missing() -> None:
    data = bytes(range(256)) * 200
    with (
        vnetio.SerialPair(None, faults={"drop": 0.002, "seed": 9}) as p,
        open_end(p.paths[0]) as a,
        open_end(p.paths[1]) as b,
    ):
        writer = write_in_background(a, data)
        got = read_all_relayed(p, b, len(data))
        writer.join(5)
        counted = p.stats()["a_to_b"]
    assert len(data) - len(got) == counted["dropped"] > 20
    # What arrived is the data with bytes left out, in order.
    it = iter(data)
    assert all(byte in it for byte in got)


def test_delays_stall_the_line() -> None:
    with (
        vnetio.SerialPair(None, faults={"delay": 0.01, "delay_ms": 20, "seed": 3}) as p,
        open_end(p.paths[0]) as a,
        open_end(p.paths[1]) as b,
    ):
        started = time.monotonic()
        a.write(bytes(1000))
        assert read_exactly(b, 1000, timeout=10) == bytes(1000)
        took = time.monotonic() - started
        delays = p.stats()["a_to_b"]["delays"]
    assert delays > 3
    assert took >= delays * 0.020


def test_same_seed_same_faults() -> None:
    def run() -> bytes:
        with (
            vnetio.SerialPair(None, faults={"drop": 0.01, "corrupt": 0.01, "seed": 42}) as p,
            open_end(p.paths[0]) as a,
            open_end(p.paths[1]) as b,
        ):
            data = bytes(range(256)) * 20
            writer = write_in_background(a, data)
            got = read_all_relayed(p, b, len(data))
            writer.join(5)
            return got

    assert run() == run()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"links": ("a", "a")}, ValueError),
        ({"links": ("a/b", "c")}, ValueError),
        ({"faults": {"drop": 2.0}}, ValueError),
        ({"faults": {"drop": 0.6, "corrupt": 0.6}}, ValueError),
        ({"faults": {"jitter": 0.1}}, ValueError),
        ({"baud": 10}, ValueError),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        vnetio.SerialPair(link_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
