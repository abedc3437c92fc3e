"""Error paths and blocking behaviour on real adapters."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import vnetio

from tests.adapters import blocked_then_closed
from tests.netutil import Netns
from tests.packets import make_frame

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]
IPV4_PACKET = bytes([0x45]) + bytes(19)


def kernel_counters(ns: Netns, dev: str) -> dict[str, Any]:
    stats: dict[str, Any] = ns.link(dev)["stats64"]
    return stats


def test_write_to_a_down_tap_is_eio(netns: Netns) -> None:
    with vnetio.Tap("vndown0", netns=netns.name) as tap:
        tap.down()
        with pytest.raises(OSError) as info:
            tap.send(make_frame(1, 60))
        assert info.value.errno == errno.EIO
        message = str(info.value)
        assert "vndown0" in message, message
        assert info.value.strerror
        assert tap.stats().tx_frames == 0
        assert tap.stats().tx_errors == 1


def test_send_batch_to_a_down_tap_reports_sent(netns: Netns) -> None:
    with vnetio.Tap("vndown0", netns=netns.name) as tap:
        with pytest.raises(OSError) as info:
            tap.send_batch([make_frame(i, 60) for i in range(5)])
        assert info.value.errno == errno.EIO
        assert getattr(info.value, "sent", None) == 0
        tap.up()
        assert tap.send_batch([make_frame(i, 60) for i in range(5)]) == 5


@pytest.mark.parametrize(("mtu", "extra"), [(1500, 1), (1500, 500), (576, 1)])
def test_tap_frame_larger_than_mtu_plus_14_before_any_syscall(
    netns: Netns, mtu: int, extra: int
) -> None:
    with vnetio.Tap("vnbig0", mtu=mtu, netns=netns.name) as tap:
        tap.up()
        tap.send(make_frame(0, mtu + 14))  # the largest untagged frame fits
        stats, kernel = tap.stats().as_dict(), kernel_counters(netns, "vnbig0")
        too_big = make_frame(1, mtu + 14 + extra)
        with pytest.raises(ValueError):
            tap.send(too_big)
        with pytest.raises(ValueError):
            tap.send_batch([make_frame(2, 60), too_big])
        assert tap.stats().as_dict() == stats
        assert kernel_counters(netns, "vnbig0") == kernel


def test_tun_packet_larger_than_mtu_before_any_syscall(netns: Netns) -> None:
    with vnetio.Tun("vnbig0", netns=netns.name) as tun:
        tun.up()
        stats, kernel = tun.stats().as_dict(), kernel_counters(netns, "vnbig0")
        with pytest.raises(ValueError):
            tun.send(IPV4_PACKET + bytes(1500))
        assert tun.stats().as_dict() == stats
        assert kernel_counters(netns, "vnbig0") == kernel


@pytest.mark.parametrize("size", [0, 1, 13])
def test_tap_frame_shorter_than_14_bytes(netns: Netns, size: int) -> None:
    with vnetio.Tap("vnshort0", netns=netns.name) as tap:
        tap.up()
        with pytest.raises(ValueError):
            tap.send(b"\x02" * size)
        with pytest.raises(ValueError):
            tap.send_batch([make_frame(0, 60), b"\x02" * size])
        assert tap.stats().tx_frames == 0
        assert kernel_counters(netns, "vnshort0")["rx"]["packets"] == 0


@pytest.mark.parametrize("first", [0x00, 0x35, 0x50, 0x70, 0xFF])
def test_tun_frame_must_start_with_version_4_or_6(netns: Netns, first: int) -> None:
    with vnetio.Tun("vnver0", netns=netns.name) as tun:
        tun.up()
        with pytest.raises(ValueError):
            tun.send(bytes([first]) + bytes(39))
        with pytest.raises(ValueError):
            tun.send(b"")
        assert tun.stats().tx_frames == 0
        assert kernel_counters(netns, "vnver0")["rx"]["packets"] == 0


@pytest.mark.parametrize("cls", [vnetio.Tap, vnetio.Tun], ids=["tap", "tun"])
def test_recv_timeout(netns: Netns, cls: type[vnetio.Tap | vnetio.Tun]) -> None:
    with cls("vnto0", netns=netns.name) as adapter:
        adapter.up()
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            adapter.recv(timeout=0.2)
        assert time.monotonic() - start >= 0.18
        with pytest.raises(TimeoutError):
            adapter.recv(timeout=0)
        assert len(adapter.recv_batch(timeout=0)) == 0
        assert len(adapter.recv_batch(timeout=0.1)) == 0


@pytest.mark.parametrize("cls", [vnetio.Tap, vnetio.Tun], ids=["tap", "tun"])
def test_close_from_another_thread_wakes_recv_batch(
    netns: Netns, cls: type[vnetio.Tap | vnetio.Tun]
) -> None:
    with cls("vnblk0", netns=netns.name) as adapter:
        adapter.up()
        job = blocked_then_closed(lambda: adapter.recv_batch(timeout=None), adapter.close)
        assert isinstance(job.error, vnetio.AdapterClosedError), job.error
        assert adapter.closed
    assert not netns.has_link("vnblk0")


def test_close_from_another_thread_wakes_recv(netns: Netns) -> None:
    with vnetio.Tap("vnblk0", netns=netns.name) as tap:
        tap.up()
        job = blocked_then_closed(lambda: tap.recv(timeout=None), tap.close)
        assert isinstance(job.error, vnetio.AdapterClosedError), job.error


def test_close_wakes_a_blocked_queue(netns: Netns) -> None:
    with vnetio.Tun("vnblk0", queues=2, netns=netns.name) as tun:
        tun.up()
        job = blocked_then_closed(lambda: tun.queues[1].recv_batch(timeout=None), tun.close)
        assert isinstance(job.error, vnetio.AdapterClosedError), job.error


def test_use_after_close(netns: Netns) -> None:
    tap = vnetio.Tap("vnuac0", netns=netns.name)
    tap.close()
    for call in (
        lambda: tap.send(make_frame(0, 60)),
        lambda: tap.send_batch([make_frame(0, 60)]),
        lambda: tap.recv(timeout=0),
        lambda: tap.recv_batch(timeout=0),
        tap.fileno,
    ):
        with pytest.raises(vnetio.AdapterClosedError):
            call()


INTERRUPT_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, threading, time, sys
    import vnetio
    tap = vnetio.Tap("vnint0", netns=sys.argv[1])
    tap.up()
    sent_at = []
    def interrupt():
        time.sleep(0.3)
        sent_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    outcome = "returned"
    try:
        tap.recv_batch(timeout=None)
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt"
    done = time.monotonic()
    tap.close()
    print(json.dumps({"outcome": outcome, "latency": done - sent_at[0]}))
    """
)


def test_sigint_interrupts_a_blocking_tap_receive(netns: Netns) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT, netns.name],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] == "KeyboardInterrupt", result
    assert result["latency"] < 0.5, result
