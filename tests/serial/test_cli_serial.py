"""``vnetio serial pair`` and ``vnetio slip attach`` as a user runs them (subprocesses,
ended by SIGINT/SIGTERM sent to their own PIDs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial  # pyserial
import vnetio

from tests.netutil import Netns
from tests.packets import ipv4_echo_request, parse_ipv4_echo

CLI = [sys.executable, "-m", "vnetio.cli"]


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serial_pair_prints_its_ends_and_holds_them(tmp_path: Path) -> None:
    with running("serial", "pair", "cliA", "cliB", "--link-dir", str(tmp_path)) as proc:
        assert proc.stdout is not None
        ends = [proc.stdout.readline().split(" -> ") for _ in range(2)]
        assert [e[0] for e in ends] == [str(tmp_path / "cliA"), str(tmp_path / "cliB")]
        with (
            serial.Serial(ends[0][0], timeout=5) as a,
            serial.Serial(ends[1][0], timeout=5) as b,
        ):
            a.write(b"over the cable")
            assert b.read(14) == b"over the cable"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "a_to_b: 14 bytes delivered" in err
    assert not os.path.lexists(tmp_path / "cliA")


def test_serial_pair_ends_on_sigterm_and_refuses_taken_names(tmp_path: Path) -> None:
    with running("serial", "pair", "x0", "x1", "--link-dir", str(tmp_path), "--baud", "9600") as p:
        assert p.stdout is not None
        p.stdout.readline()
        taken = subprocess.run(
            [*CLI, "serial", "pair", "x0", "x2", "--link-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        assert taken.returncode == 1 and "x0" in taken.stderr
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
    assert p.returncode == 0


@pytest.mark.privileged
def test_slip_attach_bridges_a_tun(netns: Netns) -> None:
    """`vnetio slip attach` on one end of a pair, a SlipLink adapter on the other: the
    kernel behind the attached Tun answers a ping sent over the line."""
    with vnetio.SerialPair(None) as pair, vnetio.SlipLink(pair.paths[1]) as far:
        args = ["slip", "attach", pair.paths[0], "--tun", "vnslcli0", "--netns", netns.name]
        args += ["--address", "192.0.2.1/32", "--peer", "192.0.2.2/32"]
        with running(*args) as proc:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            assert "vnslcli0" in banner and "MTU 1006" in banner
            assert "192.0.2.2 dev vnslcli0" in netns.ip("route")
            ident = os.getpid() & 0xFFFF
            far.send(ipv4_echo_request("192.0.2.2", "192.0.2.1", ident, 1, b"ping"))
            reply = parse_ipv4_echo(far.recv(timeout=5))
            assert reply is not None and reply.ident == ident and reply.payload == b"ping"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "1 packets from the line, 1 to it" in err
        time.sleep(0.1)
        assert not netns.has_link("vnslcli0")
