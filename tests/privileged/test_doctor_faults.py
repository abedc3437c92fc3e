"""`vnetio doctor`'s adapter checks against faults built for real.

Each row of the fault table builds one fault in its own private namespace (the `netns`
fixture), runs `vnetio doctor --json --netns NS` as a separate process, and asserts that the
doctor reports exactly that fault about that namespace, naming the adapter and the
namespace, with a fix. Then it applies the fix (or the action the fix names) and checks
that the finding is gone. Helper processes are ended by PID, also when a test fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from tests.netutil import Netns

pytestmark = pytest.mark.privileged

DOCTOR = [sys.executable, "-m", "vnetio._doctor", "--json"]
NOBODY = 65534
OWNER = 4321  # a uid nobody on the machine runs as
AS_NOBODY = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=+dac_read_search",
]

# include/uapi/linux/if_tun.h
IFF_TAP, IFF_NO_PI, IFF_MULTI_QUEUE, IFF_VNET_HDR = 0x0002, 0x1000, 0x0100, 0x4000
TUN_F_CSUM, TUN_F_TSO4 = 0x01, 0x02


def _iow_t(nr: int) -> int:
    write = 0x80000000 if platform.machine().startswith(("ppc", "mips", "sparc")) else 0x40000000
    return write | 4 << 16 | ord("T") << 8 | nr


TUNSETIFF, TUNSETPERSIST, TUNSETOWNER, TUNSETOFFLOAD = (_iow_t(n) for n in (202, 203, 204, 208))

# Opens /dev/net/tun with raw ioctls (what another program would do), inside the namespace.
# argv: name flags offload(-1: none) owner(-1: none) persist(0/1) hold(0/1)
RAW_TUN = f"""
import fcntl, os, struct, sys, time
name, flags, offload, owner, persist, hold = sys.argv[1], *map(int, sys.argv[2:])
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, {TUNSETIFF}, struct.pack("16sH22x", name.encode(), flags))
if offload >= 0:
    fcntl.ioctl(fd, {TUNSETOFFLOAD}, offload)
if owner >= 0:
    fcntl.ioctl(fd, {TUNSETOWNER}, owner)
if persist:
    fcntl.ioctl(fd, {TUNSETPERSIST}, 1)
print("ready", flush=True)
if hold:
    time.sleep(120)
"""


def raw_tun(
    ns: Netns,
    stack: ExitStack,
    name: str,
    flags: int,
    *,
    offload: int = -1,
    owner: int = -1,
    persist: bool = True,
    hold: bool = False,
) -> None:
    """Run RAW_TUN in ``ns``; with ``hold`` the process keeps the descriptor until cleanup."""
    argv = [name, str(flags), str(offload), str(owner), str(int(persist)), str(int(hold))]
    spawn(ns, stack, ["-c", RAW_TUN, *argv], wait=not hold)


def spawn(ns: Netns, stack: ExitStack, python_args: list[str], *, wait: bool) -> int:
    """Start ``python ARGS`` inside ``ns``; wait until it prints "ready". Returns its PID.

    Not waited for: it is ended by PID (SIGKILL) when ``stack`` closes.
    """
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, *python_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def end() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)

    stack.callback(end)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        end()
        raise AssertionError(f"helper failed: {line}{proc.stderr.read() if proc.stderr else ''}")
    if wait:
        proc.wait(timeout=10)
    return proc.pid


@dataclass(frozen=True)
class Run:
    status: int
    findings: list[dict[str, Any]]
    stdout: str

    def about(self, ns: str | None) -> list[dict[str, Any]]:
        """Adapter findings about namespace ``ns`` (None: the doctor's own)."""
        return [
            f
            for f in self.findings
            if f["netns"] == ns and (f["adapter"] is not None or f["check"] == "adapters")
        ]

    def problems(self, ns: str | None) -> list[dict[str, Any]]:
        return [f for f in self.about(ns) if f["status"] != "ok"]


def doctor(*args: str, prefix: tuple[str, ...] = ()) -> Run:
    proc = subprocess.run(
        [*prefix, *DOCTOR, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout, f"no output; exit {proc.returncode}, stderr: {proc.stderr}"
    findings = json.loads(proc.stdout)
    for f in findings:
        assert set(f) == {"check", "status", "summary", "detail", "fix", "adapter", "netns"}
    return Run(proc.returncode, findings, proc.stdout)


def doctor_in(ns: Netns, *args: str) -> Run:
    return doctor("--netns", ns.name, *args)


# --- the faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What the doctor must say about the fault, and how to fix it for real."""

    check: str
    status: str
    adapter: str
    summary: tuple[str, ...]  # substrings of the summary
    fix: tuple[str, ...]  # substrings of the fix ({ns} is the namespace)
    apply: Callable[[Netns, ExitStack], None]  # carries out the fix (or the action it names)
    after: str = "clean"  # "clean": no problem left in the namespace; else a check still left


def run_cmd(*argv: str) -> Callable[[Netns, ExitStack], None]:
    def apply(ns: Netns, stack: ExitStack) -> None:
        subprocess.run([a.format(ns=ns.name) for a in argv], check=True, timeout=20)

    return apply


def build_orphan(ns: Netns, stack: ExitStack) -> Expect:
    """A process creates a persistent adapter and is killed (SIGKILL) while holding it."""
    with ExitStack() as proc_stack:
        spawn(
            ns,
            proc_stack,
            [
                "-c",
                (
                    "import time, vnetio; t = vnetio.Tap('vnorph', persist=True); "
                    "print('ready', flush=True); time.sleep(120)"
                ),
            ],
            wait=False,
        )
    # The killed process left it behind:
    (link,) = [link for link in list_links(ns) if link["name"] == "vnorph"]
    assert link["tun"]["persist"] and not link["carrier"]
    return Expect(
        "adapter-orphan",
        "warn",
        "vnorph",
        ("persistent tap that no process holds",),
        ("vnetio delete vnorph --netns {ns}", "ip -n {ns} link del dev vnorph"),
        run_cmd("ip", "-n", "{ns}", "link", "del", "dev", "vnorph"),
    )


def build_stale_offload(ns: Netns, stack: ExitStack) -> Expect:
    """An offload user (IFF_VNET_HDR + TUNSETOFFLOAD CSUM|TSO4) made it persistent and left."""
    raw_tun(ns, stack, "vnoff", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, offload=TUN_F_CSUM | TUN_F_TSO4)
    return Expect(
        "adapter-offload",
        "warn",
        "vnoff",
        ("checksum/TSO offload left on with no process attached", "super-frames"),
        ("ip netns exec {ns} ethtool -K vnoff tx off tso off",),
        run_cmd("ip", "netns", "exec", "{ns}", "ethtool", "-K", "vnoff", "tx", "off", "tso", "off"),
        after="adapter-orphan",  # offload off, but still a left-over adapter
    )


def build_stale_offload_reset_by_vnetio(ns: Netns, stack: ExitStack) -> Expect:
    """The same fault, fixed the other way the finding offers: one vnetio open and close."""
    expect = build_stale_offload(ns, stack)

    def open_once(ns: Netns, stack: ExitStack) -> None:
        import vnetio

        vnetio.Tap("vnoff", netns=ns.name).close()

    return dataclasses.replace(expect, fix=("vnetio.Tap('vnoff', netns='{ns}')",), apply=open_once)


def build_flags_mismatch(ns: Netns, stack: ExitStack) -> Expect:
    """The stale offload mask above, and a plain reader (no IFF_VNET_HDR) attached to it."""
    raw_tun(ns, stack, "vnmix", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, offload=TUN_F_CSUM | TUN_F_TSO4)
    raw_tun(ns, stack, "vnmix", IFF_TAP | IFF_NO_PI, persist=False, hold=True)
    return Expect(
        "adapter-flags",
        "fail",
        "vnmix",
        ("offload is on but the process attached opened it without IFF_VNET_HDR",),
        ("ip netns exec {ns} ethtool -K vnmix tx off tso off",),
        run_cmd("ip", "netns", "exec", "{ns}", "ethtool", "-K", "vnmix", "tx", "off", "tso", "off"),
    )


def add_bridge(ns: Netns, bridge: str, *options: str) -> None:
    ns.ip("link", "add", bridge, "type", "bridge", "mcast_snooping", "0", *options)
    ns.ip("link", "set", "dev", bridge, "up")


def build_no_carrier_port(ns: Netns, stack: ExitStack) -> Expect:
    """A persistent TAP up and enslaved to a bridge, with no descriptor attached."""
    add_bridge(ns, "vnbr0", "stp_state", "0", "forward_delay", "0")
    ns.ip("tuntap", "add", "dev", "vnport", "mode", "tap")
    ns.ip("link", "set", "dev", "vnport", "master", "vnbr0")
    ns.ip("link", "set", "dev", "vnport", "up")
    assert ns.brport_state("vnport") == 0  # disabled: frames to it vanish

    def attach_reader(ns: Netns, stack: ExitStack) -> None:
        import vnetio

        stack.enter_context(vnetio.Tap("vnport", netns=ns.name))
        ns.wait_forwarding("vnport")

    return Expect(
        "adapter-no-carrier",
        "warn",
        "vnport",
        ("up as a port of bridge vnbr0", "no process holds it", "vanish"),
        ("ip -n {ns} link set dev vnport down", "vnetio.Tap('vnport', netns='{ns}')"),
        attach_reader,
    )


def build_port_not_forwarding(ns: Netns, stack: ExitStack) -> Expect:
    """A held TAP (carrier on) on a bridge running STP: the port listens for 30 s."""
    import vnetio

    add_bridge(ns, "vnbr1", "stp_state", "1", "forward_delay", "3000")
    ns.ip("tuntap", "add", "dev", "vnstp", "mode", "tap")
    ns.ip("link", "set", "dev", "vnstp", "master", "vnbr1")
    stack.enter_context(vnetio.Tap("vnstp", netns=ns.name))
    ns.ip("link", "set", "dev", "vnstp", "up")
    assert ns.brport_state("vnstp") in (1, 2)  # listening or learning

    def stp_off(ns: Netns, stack: ExitStack) -> None:
        ns.ip("link", "set", "dev", "vnbr1", "type", "bridge", "stp_state", "0")
        bridge = ["bridge", "-n", ns.name, "link", "set", "dev", "vnstp", "state", "3"]
        subprocess.run(bridge, check=True, timeout=20)
        ns.wait_forwarding("vnstp", timeout=2)

    return Expect(
        "bridge-port",
        "warn",
        "vnstp",
        ("port of bridge vnbr1 is listening, not forwarding",),
        (
            "wait about 60 s",
            (
                "ip -n {ns} link set dev vnbr1 type bridge stp_state 0 && "
                "bridge -n {ns} link set dev vnstp state 3"
            ),
        ),
        stp_off,
    )


def build_multi_queue(ns: Netns, stack: ExitStack) -> Expect:
    """A persistent multi-queue TAP: a plain (one-queue) open fails with EINVAL."""
    import vnetio

    ns.ip("tuntap", "add", "dev", "vnmq", "mode", "tap", "multi_queue")
    with pytest.raises(OSError) as err:
        vnetio.Tap("vnmq", netns=ns.name)
    assert err.value.errno == 22  # EINVAL, as the finding says

    def open_two_queues(ns: Netns, stack: ExitStack) -> None:
        stack.enter_context(vnetio.Tap("vnmq", netns=ns.name, queues=2))

    return Expect(
        "adapter-multi-queue",
        "fail",
        "vnmq",
        ("multi-queue tap that no process holds", "EINVAL"),
        ("vnetio.Tap('vnmq', queues=2, netns='{ns}')", "ip -n {ns} link del dev vnmq"),
        open_two_queues,
    )


FAULTS = {
    "orphan-killed-process": build_orphan,
    "stale-offload": build_stale_offload,
    "stale-offload-reset-by-vnetio": build_stale_offload_reset_by_vnetio,
    "mismatched-flags": build_flags_mismatch,
    "no-carrier-bridge-port": build_no_carrier_port,
    "bridge-port-not-forwarding": build_port_not_forwarding,
    "multi-queue": build_multi_queue,
}


def list_links(ns: Netns) -> list[dict[str, Any]]:
    import vnetio._core

    return vnetio._core.list_links(ns.name)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.mark.parametrize("fault", FAULTS)
def test_fault(fault: str, netns: Netns, stack: ExitStack) -> None:
    expect = FAULTS[fault](netns, stack)
    run = doctor_in(netns)

    problems = run.problems(netns.name)
    assert [(f["check"], f["status"], f["adapter"]) for f in problems] == [
        (expect.check, expect.status, expect.adapter)
    ], run.stdout
    (finding,) = problems
    assert finding["summary"].startswith(f"{expect.adapter} (netns {netns.name}): ")
    for text in expect.summary:
        assert text in finding["summary"]
    for text in expect.fix:
        assert text.format(ns=netns.name) in finding["fix"], finding["fix"]
    assert finding["detail"]
    # Exit status: 1 exactly when something is "fail" (the machine's own findings included).
    assert run.status == (1 if any(f["status"] == "fail" for f in run.findings) else 0)
    if expect.status == "fail":
        assert run.status == 1
    # The text report shows the same finding with its fix under it.
    text = subprocess.run(
        [*DOCTOR[:-1], "--netns", netns.name], capture_output=True, text=True, check=False
    ).stdout
    tag = "FAIL" if expect.status == "fail" else "warn"
    assert f"[{tag}] {finding['summary']}\n    fix: {finding['fix']}" in text

    expect.apply(netns, stack)
    after = doctor_in(netns).problems(netns.name)
    if expect.after == "clean":
        assert after == [], after
    else:
        assert [f["check"] for f in after] == [expect.after], after


def test_non_owner_user(netns: Netns, stack: ExitStack) -> None:
    """A persistent TAP owned by another uid: a user without CAP_NET_ADMIN is told who owns
    it; root (who may attach to anything) is not bothered, and the adapter is not an orphan
    (it is reserved for its owner)."""
    raw_tun(netns, stack, "vnown", IFF_TAP | IFF_NO_PI, owner=OWNER)

    as_nobody = doctor(prefix=("ip", "netns", "exec", netns.name, *AS_NOBODY))
    problems = as_nobody.problems(None)  # the doctor runs inside the namespace
    assert [(f["check"], f["status"], f["adapter"]) for f in problems] == [
        ("adapter-owner", "fail", "vnown")
    ], as_nobody.stdout
    (finding,) = problems
    assert f"owned by uid {OWNER}" in finding["summary"]
    assert f"uid {NOBODY}" in finding["summary"]
    assert "EPERM" in finding["summary"]
    assert f"run as uid {OWNER}" in finding["fix"]
    assert f"vnetio.Tap('vnown', owner={NOBODY})" in finding["fix"]
    assert as_nobody.status == 1

    as_root = doctor_in(netns)
    assert as_root.problems(netns.name) == [], as_root.stdout
    (ok,) = as_root.about(netns.name)
    assert "vnown" in ok["summary"] and f"owner {OWNER}" in ok["detail"]

    # The fix root is offered: attach with owner= hands it over, then nobody is fine.
    import vnetio

    vnetio.Tap("vnown", netns=netns.name, owner=NOBODY).close()
    after = doctor(prefix=("ip", "netns", "exec", netns.name, *AS_NOBODY))
    assert after.problems(None) == [], after.stdout


def test_clean_namespace(netns: Netns) -> None:
    run = doctor_in(netns)
    assert [(f["check"], f["status"]) for f in run.about(netns.name)] == [("adapters", "ok")]
    assert run.about(netns.name)[0]["summary"] == (
        f"network namespace {netns.name}: no TUN/TAP adapters"
    )


def test_healthy_adapters_are_ok(netns: Netns, stack: ExitStack) -> None:
    """Held adapters, a forwarding bridge port and a reserved persistent one: no finding."""
    import vnetio

    add_bridge(netns, "vnbr0", "stp_state", "0", "forward_delay", "0")
    tap = stack.enter_context(vnetio.Tap("vnok0", netns=netns.name))
    netns.ip("link", "set", "dev", "vnok0", "master", "vnbr0")
    tap.up()
    netns.wait_forwarding("vnok0")
    stack.enter_context(vnetio.Tap("vnok1", netns=netns.name, queues=2))
    stack.enter_context(vnetio.Tun("vnok2", netns=netns.name))
    # Offload in use by a reader that asked for it (IFF_VNET_HDR): fine.
    flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
    raw_tun(netns, stack, "vnok3", flags, offload=TUN_F_CSUM | TUN_F_TSO4, persist=False, hold=True)
    vnetio.Tap("vnok4", netns=netns.name, persist=True, owner=OWNER).close()

    run = doctor_in(netns)
    assert run.problems(netns.name) == [], run.stdout
    (ok,) = run.about(netns.name)
    assert "5 TUN/TAP adapters (vnok0 vnok1 vnok2 vnok3 vnok4), nothing to fix" in ok["summary"]


def test_pi_and_vnet_hdr_left_set_are_not_a_fault(netns: Netns) -> None:
    """IFF_VNET_HDR and packet info (no IFF_NO_PI) left by the last user, no offload: the
    next open replaces them with its own flags, so the doctor says nothing about them."""
    import vnetio

    flags = IFF_TAP | IFF_VNET_HDR  # no IFF_NO_PI: packet information on
    with ExitStack() as stack:
        raw_tun(netns, stack, "vnpi", flags, owner=0)
    (tun,) = [link["tun"] for link in list_links(netns) if link["name"] == "vnpi"]
    assert tun["pi"] and tun["vnet_hdr"]

    run = doctor_in(netns)
    assert run.problems(netns.name) == [], run.stdout

    with vnetio.Tap("vnpi", netns=netns.name):
        (tun,) = [link["tun"] for link in list_links(netns) if link["name"] == "vnpi"]
        assert not tun["pi"] and not tun["vnet_hdr"]  # the open's own flags


def test_all_namespaces_and_strict(netns: Netns, stack: ExitStack) -> None:
    """--all-namespaces finds a fault in a namespace it was not told about; a warning alone
    exits 0, and 1 with --strict."""
    build_orphan(netns, stack)
    run = doctor("--all-namespaces")
    (finding,) = run.problems(netns.name)
    assert (finding["check"], finding["adapter"]) == ("adapter-orphan", "vnorph")
    assert any(f["netns"] is None and f["check"] == "adapters" for f in run.findings)

    quiet = doctor_in(netns)
    assert not any(f["status"] == "fail" for f in quiet.findings), quiet.stdout
    assert quiet.status == 0
    assert doctor_in(netns, "--strict").status == 1


def test_unknown_namespace_fails() -> None:
    run = doctor("--netns", "vnetio-t-does-not-exist")
    (finding,) = run.problems("vnetio-t-does-not-exist")
    assert (finding["check"], finding["status"]) == ("adapters", "fail")
    assert "ip netns list" in finding["fix"]
    assert run.status == 1


def test_offload_support_probe_leaves_nothing() -> None:
    """The probe's TAP lives in a namespace of its own that ends with the probe."""
    before = set(os.listdir("/sys/class/net"))
    run = doctor()
    (offload,) = [f for f in run.findings if f["check"] == "offload"]
    assert offload["status"] == "ok", offload
    for flag in ("CSUM", "TSO4", "TSO6"):
        assert flag in offload["summary"]
    assert set(os.listdir("/sys/class/net")) == before
