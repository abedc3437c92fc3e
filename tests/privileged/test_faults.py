"""Faults made real on TUN/TAP adapters: the kernel really refuses, nothing of vnetio is
mocked.

- A kernel that refuses coalesced (GRO) writes with EINVAL: a seccomp filter in a child
  process hands every ``writev`` on the offload TAP's descriptor to a supervisor thread,
  which reads the virtio-net header the call points at and fails exactly the calls that
  carry a GSO super-frame (tests/syscall_faults.py).
- The adapter deleted (``ip link del``) underneath a blocked reader, and while
  ``send_batch`` writes.
- A capture killed with SIGKILL while the adapter's kernel queue is raised: the next
  ``vnetio doctor`` names the raised queue and ``vnetio cleanup`` restores it.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import vnetio
from vnetio.hygiene.queues import raised_queues

from tests.conftest import BridgePair
from tests.netutil import Netns
from tests.packets import TCP_ACK, frame_seq, make_frame, tcp4
from tests.syscall_faults import run_child
from tests.waiting import settle

pytestmark = pytest.mark.privileged


def tcp_run(count: int, *, seq: int = 1000, payload: int = 1000) -> list[bytes]:
    """``count`` frames of one TCP flow (192.0.2.1:40000 → 192.0.2.2:5201), ACK only,
    consecutive sequence numbers, checksums right: what the writer merges into one
    super-frame on an offload adapter."""
    return [
        tcp4(bytes([i & 0xFF]) * payload, seq=seq + i * payload, ident=i, flags=TCP_ACK)
        for i in range(count)
    ]


GRO_CHILD = """
import errno, time, vnetio
from tests.netutil import Netns
from tests.packets import SRC_MAC, frame_seq, make_frame
from tests.privileged.test_faults import tcp_run
from tests.syscall_faults import SYSCALLS, USER_NOTIF, Arg, Rule, Supervisor, read_iovecs

ns = Netns(PARAMS["ns"])
a = vnetio.Tap(PARAMS["a"], netns=ns.name, offload=True)
b = vnetio.Tap(PARAMS["b"], netns=ns.name)
ns.wait_forwarding(PARAMS["a"], PARAMS["b"])

def deliver(frames):
    '''Send `frames` into A; what of ours comes out of B.'''
    sent = a.send_batch(frames)
    got, deadline = [], time.monotonic() + 5
    while len(got) < len(frames) and time.monotonic() < deadline:
        got += [bytes(f) for f in b.recv_batch(timeout=0.2) if bytes(f[6:12]) == SRC_MAC]
    return sent, got

def refuse_superframes(nr, args):
    '''writev(fd, iov, n) on A: the first iovec is the virtio-net header; byte 1 is its
    gso_type. EINVAL for a super-frame, as kernels that refuse merged writes answer.'''
    header = read_iovecs(args[1], args[2])[0]
    return errno.EINVAL if header[1] != 0 else 0

out = {"offloads": a.offloads}
frames = tcp_run(48)
sent, got = deliver(frames[:16])  # the control: this kernel takes merged writes
s = a.stats()
out["control"] = {"sent": sent, "received": len(got), "coalesced": s.tx_coalesced,
                  "fallbacks": s.coalesce_fallbacks}
supervisor = Supervisor(refuse_superframes)
supervisor.install([Rule("writev", USER_NOTIF, [Arg(0, "eq", a.fileno())])])
for name, part in (("refused", frames[16:32]), ("after", frames[32:48])):
    sent, got = deliver(part)
    s = a.stats()
    out[name] = {"sent": sent, "same": got == part, "received": len(got),
                 "coalesced": s.tx_coalesced, "fallbacks": s.coalesce_fallbacks,
                 "tx_errors": s.tx_errors, "kernel_refused": supervisor.refused,
                 "kernel_took": supervisor.allowed}
out["supervisor_errors"] = supervisor.errors
report(out)
"""


def test_kernel_refusing_coalesced_writes_turns_merging_off_and_loses_nothing(
    bridge_pair: BridgePair,
) -> None:
    result = run_child(
        GRO_CHILD, ns=bridge_pair.ns.name, a=bridge_pair.a, b=bridge_pair.b, timeout=60
    )
    if not {"tso4", "csum"} <= set(result["offloads"]):
        pytest.fail(f"the kernel took no TSO4 offload on the TAP: {result['offloads']}")
    assert result["supervisor_errors"] == []
    control = result["control"]
    # Without the fault the 16 frames went as one merged write (the kernel re-split them).
    assert control == {"sent": 16, "received": 16, "coalesced": 16, "fallbacks": 0}, control
    refused = result["refused"]
    # One merged write tried and refused; the run went out frame by frame, unchanged.
    assert refused["kernel_refused"] == 1, refused
    assert refused["fallbacks"] == 1 and refused["coalesced"] == 16, refused
    assert refused["sent"] == 16 and refused["same"], refused
    assert refused["tx_errors"] == 0, refused
    after = result["after"]
    # Merging stays off for this queue: no further super-frame is even tried.
    assert after["kernel_refused"] == 1 and after["fallbacks"] == 1, after
    assert after["coalesced"] == 16 and after["sent"] == 16 and after["same"], after
    assert after["kernel_took"] == refused["kernel_took"] + 16, after


# --- the adapter deleted underneath ------------------------------------------------------

GONE = "the adapter no longer exists"


def test_adapter_deleted_under_a_blocked_reader(bridge_pair: BridgePair) -> None:
    """The reader blocks in recv_batch after taking 60 frames; `ip link del` of its adapter
    wakes it at once with an error that says the adapter is gone; the batches it already
    holds keep every frame, byte for byte."""
    ns = bridge_pair.ns
    frames = [make_frame(i, 300) for i in range(60)]
    batches: list[vnetio.Batch] = []
    errors: list[BaseException] = []
    woke = threading.Event()
    with (
        vnetio.Tap(bridge_pair.a, netns=ns.name) as a,
        vnetio.Tap(bridge_pair.b, netns=ns.name) as b,
    ):
        bridge_pair.wait_forwarding()

        def reader() -> None:
            try:
                while True:
                    batches.append(b.recv_batch(timeout=30))
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                errors.append(exc)
            woke.set()

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for burst in range(3):
                a.send_batch(frames[burst * 20 : (burst + 1) * 20])
                time.sleep(0.1)
            deadline = time.monotonic() + 5
            while received(batches) < frames and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the reader is now blocked in the kernel's poll
            assert not woke.is_set()
            deleted_at = time.monotonic()
            ns.ip("link", "del", "dev", bridge_pair.b)
            assert woke.wait(5), "the blocked reader did not wake when its adapter was deleted"
            waited = time.monotonic() - deleted_at
        finally:
            if not woke.is_set():
                b.close()  # wakes it, whatever happened
            thread.join(10)
        assert waited < 2, waited
        (error,) = errors
        assert isinstance(error, OSError), repr(error)
        assert error.errno == errno.EBADFD, error
        assert bridge_pair.b in str(error) and GONE in str(error), str(error)
        # Again: the same error at once, never a hang.
        with pytest.raises(OSError, match=GONE):
            b.recv_batch(timeout=5)
    assert received(batches) == frames


def test_adapter_deleted_during_send_batch(bridge_pair: BridgePair) -> None:
    """A sender writes batches of 50 into A, paced so B's reader keeps up; `ip link del A`
    ends it with an error that says the adapter is gone and how many frames of that batch
    went out. Every frame reported sent came out of B, in order, unchanged."""
    ns = bridge_pair.ns
    frames = [make_frame(i, 200) for i in range(20_000)]
    sent = 0
    errors: list[BaseException] = []
    got: list[bytes] = []
    stop = threading.Event()
    with (
        vnetio.Tap(bridge_pair.a, netns=ns.name) as a,
        vnetio.Tap(bridge_pair.b, netns=ns.name) as b,
    ):
        b.queue_length = 20_000  # room for every frame: nothing may be dropped for lack of it
        bridge_pair.wait_forwarding()

        def sender() -> None:
            nonlocal sent
            try:
                for start in range(0, len(frames), 50):
                    sent += a.send_batch(frames[start : start + 50])
                    time.sleep(0.002)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                sent += getattr(exc, "sent", 0)
                errors.append(exc)

        def reader() -> None:
            while not stop.is_set():
                got.extend(bytes(f) for f in b.recv_batch(timeout=0.1) if frame_seq(f) is not None)

        threads = [threading.Thread(target=sender), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 10
            while len(got) < 2_000 and time.monotonic() < deadline:
                time.sleep(0.01)
            ns.ip("link", "del", "dev", bridge_pair.a)
            threads[0].join(10)
            assert not threads[0].is_alive(), "send_batch did not end when its adapter went"
            # The reader drains B: until it has as many frames as were reported sent (not a
            # fixed wait; on a loaded machine its thread may lag far behind the sender).
            settle(lambda: len(got), lambda n: n >= sent, timeout=20)
            time.sleep(0.3)  # and any frame beyond those (there must be none) too
        finally:
            stop.set()
            a.close()  # ends the sender if it is still running
            for t in threads:
                t.join(10)
        dropped = b.stats().rx_dropped
    (error,) = errors
    assert isinstance(error, OSError), repr(error)
    assert error.errno in (errno.EIO, errno.EBADFD), error
    assert bridge_pair.a in str(error) and GONE in str(error), str(error)
    assert "call up()" not in str(error)
    assert 2_000 <= sent < len(frames)
    assert dropped == 0
    assert got == frames[:sent]


def received(batches: list[vnetio.Batch]) -> list[bytes]:
    """Our frames in ``batches``, in order (noise from the bridge skipped)."""
    return [bytes(f) for batch in batches for f in batch if frame_seq(f) is not None]


# --- a panic in an ordinary method -------------------------------------------------------

# The kernel refuses new threads (EAGAIN, as at a pids cgroup's or RLIMIT_NPROC's limit):
# clone3/clone(CLONE_THREAD) fail while `armed`. Opening an adapter in a namespace runs
# on a thread of its own (src/device/netns.rs, std::thread::scope), and std's scoped
# spawn panics when the thread cannot be made: a real panic, deep in the core, with the
# interpreter released, in an ordinary constructor (not the _panic_for_test hook). The
# capture writer reports the same refusal as OSError(EAGAIN); should netns.rs ever do so
# too (Builder::spawn_scoped), this test needs another real panic to stand on.
PANIC_CHILD = """
import errno, vnetio
from tests.packets import make_frame
from tests.syscall_faults import CLONE_THREAD, USER_NOTIF, Arg, Rule, Supervisor

armed = [True]
supervisor = Supervisor(lambda nr, args: errno.EAGAIN if armed[0] else 0)
supervisor.install([Rule("clone3", USER_NOTIF),
                    Rule("clone", USER_NOTIF, [Arg(0, "bits", CLONE_THREAD)])])
out = {}
try:
    vnetio.Tap("vnpanic0", netns=PARAMS["ns"])
    out["outcome"] = "opened"
except BaseException as exc:  # PanicException is a BaseException
    out["outcome"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
    out["message"] = str(exc)
out["refused"] = supervisor.refused
armed[0] = False
# Alive, and vnetio works: the same open now succeeds (nothing was left behind) and moves frames.
with vnetio.Tap("vnpanic0", netns=PARAMS["ns"]) as tap:
    tap.up()
    out["created"] = tap.created
    out["sent"] = tap.send_batch([make_frame(i, 60) for i in range(4)])
out["alive"] = True
report(out)
"""


def test_a_panic_in_an_ordinary_method_leaves_the_interpreter_alive(netns: Netns) -> None:
    """README, "Errors": a bug in the Rust core is a PanicException and the interpreter
    survives. Here a real kernel refusal makes std panic inside `Tap(netns=...)`."""
    result = run_child(PANIC_CHILD, ns=netns.name, timeout=60)
    assert result["outcome"] == "pyo3_runtime.PanicException", result
    assert "failed to spawn thread" in result["message"], result
    assert result["refused"] >= 1, result
    assert result["alive"] and result["created"] is True and result["sent"] == 4, result
    assert "panicked" in result["stderr"], result["stderr"]  # Rust's own report of it
    assert not netns.has_link("vnpanic0")


# --- SIGKILL during a capture with a raised queue ----------------------------------------

CAPTURE_CHILD = """
import sys, vnetio
with vnetio.Tap(sys.argv[1], netns=sys.argv[2]) as tap:
    tap.capture_to(sys.argv[3], duration=60)
"""


def vnetio_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vnetio.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def queue_findings(ns: Netns) -> list[dict[str, object]]:
    doctor = vnetio_cli("doctor", "--netns", ns.name, "--json")
    findings: list[dict[str, object]] = json.loads(doctor.stdout)
    return [f for f in findings if f["check"] == "adapter-queue-raised"]


def test_sigkill_during_capture_leaves_a_raised_queue_that_doctor_names_and_cleanup_restores(
    netns: Netns, tmp_path: Path
) -> None:
    netns.ip("tuntap", "add", "dev", "vnq0", "mode", "tap")
    try:
        # A capture that ends puts the queue back and leaves no record.
        with vnetio.Tap("vnq0", netns=netns.name) as tap:
            assert tap.capture_to(tmp_path / "ok.pcapng", duration=0.1).queue_length == 8192
        assert netns.read_sys("vnq0/tx_queue_len") == "1000"
        assert raised_queues(netns.name) == []
        # One that is killed cannot.
        child = subprocess.Popen(
            [sys.executable, "-c", CAPTURE_CHILD, "vnq0", netns.name, str(tmp_path / "k.pcapng")]
        )
        try:
            deadline = time.monotonic() + 20
            while netns.read_sys("vnq0/tx_queue_len") != "8192":
                assert child.poll() is None and time.monotonic() < deadline, "capture never ran"
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait()
        assert netns.read_sys("vnq0/tx_queue_len") == "8192"
        (finding,) = queue_findings(netns)
        assert finding["adapter"] == "vnq0" and finding["netns"] == netns.name
        assert finding["status"] == "warn"
        summary = str(finding["summary"])
        assert "raised to 8192" in summary and "was 1000" in summary, summary
        assert f"PID {child.pid}" in summary, summary
        assert "vnetio cleanup" in str(finding["fix"]), finding
        # --older-than keeps the (young) orphan itself: only its queue is put back.
        out = vnetio_cli("cleanup", "--netns", netns.name, "--older-than", "1h")
        assert out.returncode == 0, out.stderr
        assert "restored queue of  vnq0" in out.stdout and "8192 -> 1000" in out.stdout
        assert netns.read_sys("vnq0/tx_queue_len") == "1000"
        assert netns.has_link("vnq0")
        assert queue_findings(netns) == []
        assert raised_queues(netns.name) == []
    finally:
        netns.ip("link", "del", "dev", "vnq0", check=False)
