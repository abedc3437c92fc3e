"""Helpers around `ip` for the test fixtures: namespaces, links, sysfs, privilege probing;
and :func:`need`, for a test that runs a program someone else wrote.

Everything here shells out to iproute2 so that what the tests check comes from the kernel,
not from vnetio.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The pid keeps concurrent test runs (two developers, or a helper and CI) from taking each
# other's namespaces for leaks; a nested run is handed its parent's prefix.
NETNS_PREFIX = os.environ.get("VNETIO_TEST_NETNS_PREFIX") or f"vnetio-t-{os.getpid()}-"
NETNS_DIR = Path("/run/netns")
SYS_CLASS_NET = Path("/sys/class/net")
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
# brport/state values from include/uapi/linux/if_bridge.h
BR_STATE_FORWARDING = 3


class CommandError(RuntimeError):
    """A helper command failed; carries what it printed."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 20) -> str:
    """Run ``argv``, return stdout; raise CommandError with stderr when it fails."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)!s} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc.stdout


def need(tool: str, package: str) -> str:
    """The path of the program ``tool`` the calling test runs. When it is not installed the
    test is skipped, naming the Debian ``package`` that has it; with ``CI`` set that skip is
    a failure, as every skip is (tests/conftest.py)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is missing (`make system-deps` installs {package})")
    return path


def random_suffix(nbytes: int = 4) -> str:
    return secrets.token_hex(nbytes)


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


@functools.cache
def privilege_problem() -> str | None:
    """Why privileged tests cannot run here, or None when they can (probed once)."""
    caps = effective_caps()
    if not caps & (1 << CAP_NET_ADMIN):
        return "CAP_NET_ADMIN is missing (run as root)"
    if not caps & (1 << CAP_SYS_ADMIN):
        return "CAP_SYS_ADMIN is missing (needed for `ip netns`)"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed (make system-deps)"
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        return f"cannot open /dev/net/tun: {exc}"
    os.close(fd)
    probe = f"{NETNS_PREFIX}probe-{random_suffix()}"
    try:
        run(["ip", "netns", "add", probe])
    except (CommandError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        run(["ip", "netns", "del", probe])
    except CommandError as exc:
        return f"cannot delete a network namespace: {exc}"
    return None


def our_namespaces() -> set[str]:
    try:
        return {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX)}
    except OSError:
        return set()


def root_tuntaps() -> set[str]:
    """TUN/TAP adapters visible in this process's namespace (they have ``tun_flags``)."""
    try:
        return {p.name for p in SYS_CLASS_NET.iterdir() if (p / "tun_flags").exists()}
    except OSError:
        return set()


@dataclass(frozen=True)
class Netns:
    """A network namespace created by a fixture; every helper runs inside it."""

    name: str

    def ip(self, *args: str, check: bool = True) -> str:
        return run(["ip", "-n", self.name, *args], check=check)

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        out = run(["ip", "-n", self.name, "-j", *args])
        return json.loads(out) if out.strip() else []

    def exec(self, *argv: str, check: bool = True, timeout: float = 20) -> str:
        return run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def link(self, dev: str) -> dict[str, Any]:
        """``ip -d -s link show dev`` as a dict (details and statistics)."""
        (info,) = self.ip_json("-d", "-s", "link", "show", "dev", dev)
        return info

    def links(self) -> set[str]:
        return {entry["ifname"] for entry in self.ip_json("link", "show")}

    def has_link(self, dev: str) -> bool:
        return dev in self.links()

    def addresses(self, dev: str) -> set[str]:
        (info,) = self.ip_json("addr", "show", "dev", dev)
        return {f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", [])}

    def read_sys(self, relpath: str) -> str:
        """Read a file under this namespace's /sys/class/net (sysfs is per namespace)."""
        return self.exec("cat", f"/sys/class/net/{relpath}").strip()

    def sysctl(self, settings: dict[str, str]) -> None:
        """Write /proc/sys keys (dotted names) inside the namespace, in one process."""
        self.exec("sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items()))

    def set_links(self, devs: Iterable[str], *args: str) -> None:
        for dev in devs:
            self.ip("link", "set", "dev", dev, *args)

    def brport_state(self, port: str) -> int:
        return int(self.read_sys(f"{port}/brport/state"))

    def wait_forwarding(self, *ports: str, timeout: float = 10.0) -> None:
        """Wait until every bridge port is forwarding (TAP-FACTS pitfall 4)."""
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            pending = [p for p in pending if self.brport_state(p) != BR_STATE_FORWARDING]
            if not pending:
                return
            if time.monotonic() > deadline:
                states = {p: self.brport_state(p) for p in pending}
                raise TimeoutError(f"bridge ports not forwarding after {timeout}s: {states}")
            time.sleep(0.02)


def create_netns(*, ipv6: bool = False) -> Netns:
    ns = Netns(f"{NETNS_PREFIX}{random_suffix()}")
    run(["ip", "netns", "add", ns.name])
    try:
        if ipv6:
            # Addresses usable at once: no DAD wait, no tentative state.
            ns.sysctl(
                {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
            )
        else:
            # Before any device exists, so none gets IPv6 (TAP-FACTS pitfall 3: less noise).
            ns.sysctl(
                {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
            )
        ns.ip("link", "set", "dev", "lo", "up")
    except BaseException:
        delete_netns(ns.name)
        raise
    return ns


def delete_netns(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)
