"""Adapter hygiene: what the system knows about TUN/TAP adapters and macvtap links: network
namespaces, sysfs flags and change times, and which processes hold them open (``/proc``
plus the core's ``tun_fd_netns``; a macvtap's holders by the device number of its
character device)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _core
from .model import Holder

_TUN_RDEV = os.makedev(10, 200)  # the character device /dev/net/tun
_NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))

# --- namespaces ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ns:
    """A network namespace: its name (None: the caller's) and its nsfs identity."""

    name: str | None
    ident: tuple[int, int] | None  # (st_dev, st_ino) of its nsfs inode
    ctime_ns: int = 0  # a named namespace's nsfs inode lives as long as its mount

    @property
    def ledger_key(self) -> str:
        ino = self.ident[1] if self.ident else 0
        if self.name is None:
            return f"self-{ino}"
        return f"netns-{self.name}-{ino}-{self.ctime_ns}"


def _netns_path(name: str) -> Path | None:
    for directory in _NETNS_DIRS:
        path = directory / name
        if path.exists():
            return path
    return None


def _own_ns() -> _Ns:
    try:
        st = os.stat("/proc/thread-self/ns/net")
    except OSError:
        return _Ns(None, None)
    return _Ns(None, (st.st_dev, st.st_ino))


def _named_ns(name: str) -> _Ns:
    path = _netns_path(name)
    if path is None:
        raise FileNotFoundError(
            errno.ENOENT,
            f"network namespace {name!r} does not exist (see `ip netns list`; "
            f"create it with `ip netns add {name}`)",
        )
    st = os.stat(path)
    return _Ns(name, (st.st_dev, st.st_ino), st.st_ctime_ns)


def _named_namespaces() -> list[str]:
    names: set[str] = set()
    for directory in _NETNS_DIRS:
        with contextlib.suppress(OSError):
            names.update(p.name for p in directory.iterdir())
    return sorted(names)


def _scope(netns: str | None, all_namespaces: bool) -> list[_Ns]:
    if all_namespaces:
        if netns is not None:
            raise ValueError("give either netns or all_namespaces, not both")
        own = _own_ns()
        spaces = [own]
        for name in _named_namespaces():
            try:
                ns = _named_ns(name)
            except OSError:  # deleted meanwhile
                continue
            if ns.ident is None or ns.ident != own.ident:
                spaces.append(ns)
        return spaces
    return [_own_ns() if netns is None else _named_ns(netns)]


# --- sysfs: tun_flags and the directory's change time ----------------------------------------

# TUN/TAP adapters print their tun_flags, macvtap links 0x0.
_SYSFS_SCRIPT = (
    "cd /sys/class/net && for d in *; do "
    'if [ -e "$d/tun_flags" ]; then f=$(cat "$d/tun_flags"); '
    'elif [ -d "$d/macvtap" ]; then f=0x0; else continue; fi; '
    'echo "$d $(cat "$d/ifindex") $f $(stat -c %.9Z "$d")"; done; true'
)


def _ip_binary() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("ip", path=path)


def _sysfs_facts(ns: _Ns) -> dict[tuple[str, int], tuple[int, float]]:
    """{(name, ifindex): (tun_flags, sysfs dir ctime)} for every TUN/TAP of ``ns``, and
    (0, ctime) for every macvtap link.

    Empty when that namespace's sysfs cannot be read (the caller derives what it can).
    """
    facts: dict[tuple[str, int], tuple[int, float]] = {}
    if ns.name is None:
        base = Path("/sys/class/net")
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                try:
                    if (entry / "macvtap").is_dir():
                        flags = 0
                    else:
                        flags = int((entry / "tun_flags").read_text().strip(), 16)
                    ifindex = int((entry / "ifindex").read_text().strip())
                    ctime = os.stat(entry).st_ctime  # follows the class symlink
                except (OSError, ValueError):
                    continue
                facts[(entry.name, ifindex)] = (flags, ctime)
        return facts
    ip = _ip_binary()
    if ip is None or os.geteuid() != 0:  # `ip netns exec` needs root
        return facts
    try:
        proc = subprocess.run(
            [ip, "netns", "exec", ns.name, "sh", "-c", _SYSFS_SCRIPT],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return facts
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        with contextlib.suppress(ValueError):
            facts[(parts[0], int(parts[1]))] = (int(parts[2], 16), float(parts[3]))
    return facts


# --- holders: /proc/*/fd + fdinfo ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TunFd:
    pid: int
    fd: int
    iff: str
    ns: tuple[int, int] | None  # the adapter's namespace, when the kernel told us


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one pass over every process's descriptors found."""

    tun: list[_TunFd]
    chr: dict[int, list[tuple[int, int]]]  # st_rdev asked for -> [(pid, fd)]
    complete: bool  # every process's descriptor table could be read


def _scan_fds(devices: Collection[int] = ()) -> _Scan:
    """Every descriptor on /dev/net/tun this process can see that is attached to an adapter,
    and every descriptor on one of the character devices ``devices`` (``st_rdev`` values:
    macvtap links' ``/dev/tapN``, found by device number wherever the node lives)."""
    found: list[_TunFd] = []
    chr_fds: dict[int, list[tuple[int, int]]] = {}
    complete = True
    with os.scandir("/proc") as procs:
        pids = [int(e.name) for e in procs if e.name.isdigit()]
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:  # gone meanwhile
            continue
        except OSError:  # not ours to look at: whatever it holds is unknown
            complete = False
            continue
        for name in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if not stat.S_ISCHR(st.st_mode):
                continue
            if st.st_rdev in devices:
                chr_fds.setdefault(st.st_rdev, []).append((pid, int(name)))
                continue
            if st.st_rdev != _TUN_RDEV:
                continue
            iff = _fdinfo_iff(pid, name)
            if not iff:  # opened but not attached to any adapter
                continue
            # pidfd_getfd + TUNGETDEVNETNS, in the core's sys module; None without root.
            found.append(_TunFd(pid, int(name), iff, _core.tun_fd_netns(pid, int(name))))
    return _Scan(found, chr_fds, complete)


def _tun_fds() -> list[_TunFd]:
    """Every descriptor on /dev/net/tun this process can see that is attached to an adapter."""
    return _scan_fds().tun


def macvtap_rdev(link: dict[str, Any]) -> int | None:
    """The device number (``st_rdev``) of a macvtap link's character device, from a
    ``list_links`` entry; None when unknown."""
    dev = (link.get("macvtap") or {}).get("dev")
    return None if dev is None else os.makedev(int(dev[0]), int(dev[1]))


def holders_by_device(scan: _Scan, rdev: int) -> tuple[Holder, ...]:
    """The processes holding character device ``rdev`` open, in ``scan``."""
    by_pid: dict[int, list[int]] = {}
    for pid, fd in scan.chr.get(rdev, ()):
        by_pid.setdefault(pid, []).append(fd)
    return tuple(Holder(pid, _comm(pid), tuple(sorted(fds))) for pid, fds in sorted(by_pid.items()))


def macvtap_holders(
    links: Iterable[dict[str, Any]],
) -> tuple[dict[int, tuple[Holder, ...]], bool]:
    """Holders of the macvtap links among ``links`` (``list_links`` entries of one
    namespace), by ifindex, and whether the scan saw every process and every link's device
    numbers (otherwise a link without holders may still be held)."""
    rdevs = {link["ifindex"]: macvtap_rdev(link) for link in links if link.get("macvtap")}
    if not rdevs:
        return {}, True
    scan = _scan_fds({r for r in rdevs.values() if r is not None})
    holders = {i: holders_by_device(scan, r) for i, r in rdevs.items() if r is not None}
    return holders, scan.complete and None not in rdevs.values()


def _fdinfo_iff(pid: int, fd: str) -> str:
    try:
        text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("iff:"):
            return line[4:].strip()
    return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _assign_holders(
    tun_fds: Iterable[_TunFd], adapters: list[tuple[_Ns, dict[str, Any]]]
) -> dict[tuple[str | None, int], tuple[Holder, ...]]:
    """Holders per (netns name, ifindex) of the held adapters in ``adapters``."""
    by_key: dict[tuple[str | None, int], dict[int, list[int]]] = {}
    for fd in tun_fds:
        for ns, link in adapters:
            tun = link["tun"]
            if link["name"] != fd.iff:
                continue
            if tun["multi_queue"] and tun["queues"] + tun["disabled_queues"] == 0:
                continue  # the kernel's count says nobody: a same-named adapter elsewhere
            if fd.ns is not None and ns.ident is not None and fd.ns != ns.ident:
                continue
            by_key.setdefault((ns.name, link["ifindex"]), {}).setdefault(fd.pid, []).append(fd.fd)
    return {
        key: tuple(Holder(pid, _comm(pid), tuple(sorted(fds))) for pid, fds in sorted(d.items()))
        for key, d in by_key.items()
    }
