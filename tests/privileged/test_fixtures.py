"""The fixtures themselves, checked with plain `ip`, sysfs and raw file descriptors only.

If these fail, the vnetio tests that use the fixtures prove nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import BridgePair
from tests.netutil import NETNS_DIR, NETNS_PREFIX, Netns, random_suffix, root_tuntaps
from tests.packets import make_frame

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]


def test_netns_is_fresh_and_private(netns: Netns) -> None:
    assert netns.name.startswith(NETNS_PREFIX)
    assert (NETNS_DIR / netns.name).exists()
    assert netns.links() == {"lo"}
    assert "UP" in netns.link("lo")["flags"]
    # IPv6 is off by default, for devices created later too.
    assert netns.exec("sysctl", "-n", "net.ipv6.conf.default.disable_ipv6").strip() == "1"
    assert netns.exec("sysctl", "-n", "net.ipv6.conf.all.disable_ipv6").strip() == "1"
    # The test process itself stays in its own namespace.
    assert os.readlink("/proc/self/ns/net") != netns.exec("readlink", "/proc/self/ns/net").strip()


@pytest.mark.ipv6
def test_netns_ipv6_marker_keeps_ipv6(netns: Netns) -> None:
    assert netns.exec("sysctl", "-n", "net.ipv6.conf.default.disable_ipv6").strip() == "0"
    assert "::1/128" in netns.addresses("lo")


def test_bridge_pair_setup(bridge_pair: BridgePair) -> None:
    ns = bridge_pair.ns
    bridge = ns.link(bridge_pair.bridge)["linkinfo"]["info_data"]
    assert bridge["stp_state"] == 0
    assert bridge["mcast_snooping"] == 0
    for tap in (bridge_pair.a, bridge_pair.b):
        info = ns.link(tap)
        assert info["master"] == bridge_pair.bridge
        assert info["linkinfo"]["info_kind"] == "tun"
        assert info["linkinfo"]["info_data"]["type"] == "tap"
        assert info["linkinfo"]["info_data"]["persist"] is True
        assert "UP" in info["flags"]
        # No reader attached yet: no carrier, so the port is not forwarding (pitfall 4).
        assert ns.brport_state(tap) != 3
    nf = ns.exec("sh", "-c", "cat /proc/sys/net/bridge/bridge-nf-call-* 2>/dev/null; true")
    assert set(nf.split()) <= {"0"}


# Opens both TAPs with raw ioctls inside the namespace, waits for forwarding, sends frames
# on A and prints what B received: proves the bridge fixture independently of vnetio.
RAW_BRIDGE_SCRIPT = textwrap.dedent(
    """
    import fcntl, json, os, select, struct, sys, time
    from tests.packets import make_frame, frame_seq
    a_name, b_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def open_tap(name):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))
        return fd
    a, b = open_tap(a_name), open_tap(b_name)
    deadline = time.monotonic() + 10
    while any(open(f"/sys/class/net/{p}/brport/state").read().strip() != "3"
              for p in (a_name, b_name)):
        assert time.monotonic() < deadline, "ports never forwarded"
        time.sleep(0.02)
    sent = [make_frame(i, 60 + i * 29) for i in range(count)]
    for f in sent:
        os.write(a, f)
    got = []
    while len(got) < count and select.select([b], [], [], 2)[0]:
        f = os.read(b, 65536)
        if frame_seq(f) is not None:
            got.append(f.hex())
    print(json.dumps(got))
    """
)


def test_bridge_pair_carries_frames_with_raw_fds(bridge_pair: BridgePair) -> None:
    count = 50
    out = subprocess.run(
        ["ip", "netns", "exec", bridge_pair.ns.name, sys.executable, "-c", RAW_BRIDGE_SCRIPT,
         bridge_pair.a, bridge_pair.b, str(count)],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    received = [bytes.fromhex(h) for h in json.loads(out.stdout)]
    assert received == [make_frame(i, 60 + i * 29) for i in range(count)]


# --- the policy and the leak guard, run as a nested pytest on a synthetic test file -------

SYNTHETIC_TESTS = textwrap.dedent(
    """
    import subprocess, pytest

    @pytest.mark.privileged
    def test_needs_privileges():
        pass

    def test_leaks_namespace():
        subprocess.run(["ip", "netns", "add", "{leak_ns}"], check=True)

    def test_leaks_root_tap():
        subprocess.run(["ip", "tuntap", "add", "dev", "{leak_tap}", "mode", "tap"], check=True)
    """
)


def run_nested_pytest(
    tmp_path: Path, selection: str, *, prefix: list[str], ci: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    env["VNETIO_TEST_NETNS_PREFIX"] = NETNS_PREFIX  # the nested guard watches our names
    if ci is not None:
        env["CI"] = ci
    argv = [*prefix, sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
            "-W", "ignore::pytest.PytestUnknownMarkWarning", "-rA", "-q",
            f"test_synthetic.py::{selection}"]  # fmt: skip
    return subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, str, str]:
    leak_ns, leak_tap = f"{NETNS_PREFIX}leak-{random_suffix()}", f"vnleak{random_suffix(2)}"
    (tmp_path / "test_synthetic.py").write_text(
        SYNTHETIC_TESTS.format(leak_ns=leak_ns, leak_tap=leak_tap)
    )
    return tmp_path, leak_ns, leak_tap


DROP_NET_ADMIN = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"]


@pytest.mark.parametrize(("ci", "outcome"), [(None, "SKIPPED"), ("1", "ERROR")])
def test_policy_without_net_admin(
    synthetic: tuple[Path, str, str], ci: str | None, outcome: str
) -> None:
    tmp_path, _, _ = synthetic
    proc = run_nested_pytest(tmp_path, "test_needs_privileges", prefix=DROP_NET_ADMIN, ci=ci)
    report = proc.stdout + proc.stderr
    assert f"{outcome} " in report, report
    assert "CAP_NET_ADMIN" in report, report
    assert (proc.returncode == 0) == (outcome == "SKIPPED"), report


def test_policy_with_privileges_runs(synthetic: tuple[Path, str, str]) -> None:
    tmp_path, _, _ = synthetic
    proc = run_nested_pytest(tmp_path, "test_needs_privileges", prefix=[], ci="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout


@pytest.mark.parametrize("which", ["test_leaks_namespace", "test_leaks_root_tap"])
def test_leak_guard_fails_and_cleans_up(synthetic: tuple[Path, str, str], which: str) -> None:
    tmp_path, leak_ns, leak_tap = synthetic
    try:
        proc = run_nested_pytest(tmp_path, which, prefix=[], ci=None)
        report = proc.stdout + proc.stderr
        assert proc.returncode != 0, report
        assert "leaked" in report, report
        assert (leak_ns if which == "test_leaks_namespace" else leak_tap) in report
    finally:
        # The guard must have removed the leak; remove it here too if it did not.
        ns_left = (NETNS_DIR / leak_ns).exists()
        tap_left = leak_tap in root_tuntaps()
        subprocess.run(["ip", "netns", "del", leak_ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", leak_tap], capture_output=True, check=False)
    assert not ns_left
    assert not tap_left
