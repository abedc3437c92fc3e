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
from tests.conftest import BridgePair
from tests.netutil import Netns
from tests.packets import make_frame
from tests.syscall_faults import run_child

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]
IPV4_PACKET = bytes([0x45]) + bytes(19)


def kernel_counters(ns: Netns, dev: str) -> dict[str, Any]:
    stats: dict[str, Any] = ns.link(dev)["stats64"]
    return stats


# README, "Errors": a write to an adapter that is down is EIO saying "call up()".
CALL_UP = "call up()"


def test_write_to_a_down_tap_is_eio(netns: Netns) -> None:
    with vnetio.Tap("vndown0", netns=netns.name) as tap:
        tap.down()
        with pytest.raises(OSError) as info:
            tap.send(make_frame(1, 60))
        assert info.value.errno == errno.EIO
        message = str(info.value)
        assert "vndown0" in message, message
        assert CALL_UP in message, message
        assert info.value.strerror
        assert tap.stats().tx_frames == 0
        assert tap.stats().tx_errors == 1


def test_send_batch_to_a_down_tap_reports_sent(netns: Netns) -> None:
    with vnetio.Tap("vndown0", netns=netns.name) as tap:
        with pytest.raises(OSError) as info:
            tap.send_batch([make_frame(i, 60) for i in range(5)])
        assert info.value.errno == errno.EIO
        assert getattr(info.value, "sent", None) == 0
        assert CALL_UP in str(info.value), str(info.value)
        tap.up()
        assert tap.send_batch([make_frame(i, 60) for i in range(5)]) == 5


# The sender's side of a part-way refusal, in a child (seccomp): the N+1-th write on A's
# descriptor is handed to a supervisor thread, which takes A down (`ip link set down`)
# and lets the call run, so the kernel itself refuses it (tun_get_user: EIO on a down
# device) after taking the first N. Nothing of vnetio is changed or mocked.
PARTIAL_CHILD = """
import subprocess, time, vnetio
from tests.netutil import Netns
from tests.packets import frame_seq, make_frame
from tests.syscall_faults import USER_NOTIF, Arg, Rule, Supervisor

ns = Netns(PARAMS["ns"])
a = vnetio.Tap(PARAMS["a"], netns=ns.name, offload=PARAMS["offload"])
b = vnetio.Tap(PARAMS["b"], netns=ns.name)
ns.wait_forwarding(PARAMS["a"], PARAMS["b"])
cut, writes = PARAMS["cut"], []

def down_before_write(nr, args):
    writes.append(nr)
    if len(writes) == cut + 1:
        subprocess.run(["ip", "-n", ns.name, "link", "set", "dev", PARAMS["a"], "down"],
                       check=True)
    return 0  # the call runs: the kernel answers it

def ours(end, count, seconds):
    got, deadline = [], time.monotonic() + seconds
    while len(got) < count and time.monotonic() < deadline:
        got += [bytes(f) for f in end.recv_batch(timeout=0.1) if frame_seq(f) is not None]
    return got

frames = [make_frame(i, 300) for i in range(20)]
kernel_rx = ns.link(PARAMS["a"])["stats64"]["rx"]["packets"]
supervisor = Supervisor(down_before_write)
supervisor.install([Rule(PARAMS["syscall"], USER_NOTIF, [Arg(0, "eq", a.fileno())])])
out = {}
try:
    out["returned"] = a.send_batch(frames)
except OSError as exc:
    out["error"] = {"type": type(exc).__name__, "errno": exc.errno,
                    "sent": getattr(exc, "sent", None), "message": str(exc)}
s = a.stats()
out["stats"] = {"tx_frames": s.tx_frames, "tx_errors": s.tx_errors}
out["kernel_rx"] = ns.link(PARAMS["a"])["stats64"]["rx"]["packets"] - kernel_rx
out["writes"] = len(writes)
# What came out of the bridge's other port: wait until nothing more arrives.
got = ours(b, len(frames), 2.0)
out["peer"] = [frame_seq(f) for f in got]
out["peer_same"] = got == frames[: len(got)]
# The frames not reported sent go out once the adapter is up again.
a.up()
ns.wait_forwarding(PARAMS["a"], PARAMS["b"])
sent = out["error"]["sent"] if "error" in out else len(frames)
out["resent"] = a.send_batch(frames[sent:])
rest = ours(b, len(frames) - sent, 5.0)
out["peer_rest"] = [frame_seq(f) for f in rest]
out["supervisor_errors"] = supervisor.errors
report(out)
"""


@pytest.mark.parametrize(
    ("offload", "syscall"), [(False, "write"), (True, "writev")], ids=["plain", "offload"]
)
def test_kernel_refusing_part_way_through_send_batch_reports_what_went_out(
    bridge_pair: BridgePair, offload: bool, syscall: str
) -> None:
    """README: "If the kernel refuses a write part-way, the OSError carries .sent, the
    number of frames that went out." 7 of 20 frames go out, the 8th meets a down adapter:
    .sent is 7, exactly frames 0-6 come out of the bridge, the refused frame is counted in
    tx_errors, and the other 13 are neither counted as sent nor lost (sent again later)."""
    cut = 7
    result = run_child(
        PARTIAL_CHILD, ns=bridge_pair.ns.name, a=bridge_pair.a, b=bridge_pair.b,
        offload=offload, syscall=syscall, cut=cut, timeout=60,
    )  # fmt: skip
    assert result["supervisor_errors"] == [], result
    assert "returned" not in result, result
    error = result["error"]
    assert (error["type"], error["errno"], error["sent"]) == ("OSError", errno.EIO, cut), error
    assert bridge_pair.a in error["message"] and CALL_UP in error["message"], error
    assert result["writes"] == cut + 1, result  # stopped at the refused write
    assert result["kernel_rx"] == cut, result  # what the kernel took from the TAP
    assert result["stats"] == {"tx_frames": cut, "tx_errors": 1}, result
    assert result["peer"] == list(range(cut)) and result["peer_same"], result
    assert result["resent"] == 20 - cut, result
    assert result["peer_rest"] == list(range(cut, 20)), result


def test_non_buffer_frames_are_type_errors_before_any_write(netns: Netns) -> None:
    """README: a non-buffer frame is a TypeError (naming its index in a batch), and nothing
    of the batch was sent; a frame too long for any arena is a ValueError the same way."""
    with vnetio.Tap("vntype0", netns=netns.name) as tap:
        tap.up()
        good = make_frame(0, 60)
        tap.send(good)  # the control: this adapter takes frames
        stats, kernel = tap.stats().as_dict(), kernel_counters(netns, "vntype0")
        for bad in (42, "a str is not a frame", None, [good]):
            with pytest.raises(TypeError, match="expected a bytes-like object"):
                tap.send(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"frame 2\b.*got int"):
            tap.send_batch([good, good, 42, good])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"frame 1\b.*got str"):
            tap.send_batch(iter([bytearray(good), "frame"]))  # type: ignore[list-item]
        with pytest.raises(ValueError, match=r"frame 1 is 4294967296 bytes"):
            tap.send_batch([good, bytes(2**32)])  # calloc'd: costs no memory
        assert tap.stats().as_dict() == stats
        assert kernel_counters(netns, "vntype0") == kernel


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
    # Python installs its Ctrl-C handler only when SIGINT is not ignored at startup (a
    # background job of a non-interactive shell starts with it ignored): set it here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
