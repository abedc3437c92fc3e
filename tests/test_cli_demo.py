"""`vnetio demo` and `vnetio --version`: the project's main job, run as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import vnetio

VNETIO = [sys.executable, "-m", "vnetio.cli"]
FRAME_LINE = re.compile(r"02:76:6e:10:00:01 -> 02:76:6e:10:00:02\s+type 0x88b5\s+len\s+64")


def run(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VNETIO, *args], capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"vnetio {vnetio.__version__}"


def test_demo_on_the_loopback_pair() -> None:
    out = run("demo", "--loopback", "--seconds", "0.3", "--size", "64")
    assert out.returncode == 0, out.stderr
    assert "--loopback" in out.stdout
    assert len(FRAME_LINE.findall(out.stdout)) == 3, out.stdout
    assert "\r" not in out.stdout  # not a terminal: plain lines, no carriage returns
    received = re.search(r"received ([\d,]+)", out.stdout)
    assert received and int(received.group(1).replace(",", "")) > 0, out.stdout


@pytest.mark.parametrize("args", [("--size", "20"), ("--seconds", "0")])
def test_demo_rejects_bad_arguments(args: tuple[str, str]) -> None:
    assert run("demo", "--loopback", *args).returncode == 2


def test_demo_without_net_admin_falls_back_and_says_why() -> None:
    out = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
         *VNETIO, "demo", "--seconds", "0.3", "--size", "64"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "CAP_NET_ADMIN" in out.stdout
    assert FRAME_LINE.search(out.stdout), out.stdout


@pytest.mark.privileged
def test_demo_as_root_uses_real_taps_and_cleans_up() -> None:
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    out = run("demo", "--seconds", "0.5", "--size", "64")
    assert out.returncode == 0, out.stderr
    ns = re.search(r"network namespace (vnetio-demo-[\w-]+)", out.stdout)
    assert ns, out.stdout
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    # Its own namespace is gone, and it left no other demo namespace (others' namespaces
    # may come and go meanwhile: only the demo's prefix is this test's business).
    assert ns.group(1) not in after, (ns.group(1), after)
    assert {n for n in after - before if n.startswith("vnetio-demo-")} == set(), after
    assert FRAME_LINE.search(out.stdout), out.stdout
