"""Adapter hygiene: create, delete, list and clean up persistent TUN/TAP adapters.

A *persistent* adapter outlives the process that made it; one that no process holds open
is *orphaned* and usually a leftover (the cause of many ``EBUSY``/``EINVAL`` surprises).
This module lists every TUN/TAP adapter of a network namespace with what the kernel knows
about it, tells which processes hold it open, and removes orphans without ever touching an
adapter that is in use or an interface of another kind.

Where each fact comes from:

* mode, owner, group, persistence, multi-queue, attached queues, MTU, carrier: rtnetlink
  (``vnetio._core.list_links``), which works inside any namespace;
* flags: the ``tun_flags`` file in the namespace's sysfs (read through ``ip netns exec``
  for another namespace); when sysfs cannot be read they are derived from the rtnetlink
  attributes, which lack ``IFF_NAPI``/``IFF_NAPI_FRAGS``;
* holders: every process's descriptors on ``/dev/net/tun`` (``/proc/PID/fd``) and their
  ``iff:`` line in ``/proc/PID/fdinfo``; the fdinfo names the adapter but not its
  namespace, so as root each descriptor is also asked for its adapter's namespace
  (``pidfd_getfd`` + ``TUNGETDEVNETNS``); without that, descriptors are matched by name.
  For a multi-queue adapter the kernel also reports how many queues are attached; for a
  single-queue one, carrier (on exactly while its descriptor is attached, unless the holder
  turned it off) and the scan decide. Deleting never relies on either: see below;
* age: the kernel records no creation time for a network device. vnetio keeps a small
  ledger (``/run/vnetio`` for root, ``$XDG_RUNTIME_DIR/vnetio`` otherwise,
  ``$VNETIO_STATE_DIR`` when set) of when it created an adapter or first saw it, and also
  takes the change time of the adapter's sysfs directory. Both are at or after the adapter's
  creation, so the age is a *lower bound*: ``cleanup(older_than=...)`` may keep an adapter
  that is older than it knows, never delete one that is younger.

Deleting an adapter (``delete_adapter`` without ``force``, and ``cleanup``) works the way
``ip tuntap del`` does: attach to it, clear ``TUNSETPERSIST`` and close, so the kernel
removes it on the last close. A single-queue adapter that someone holds refuses the attach
(``EBUSY``); a multi-queue one is checked for other queues after the attach; and the kernel
removes a non-persistent adapter only when its *last* descriptor closes, so a process that
is using an adapter never loses it (one that attaches in the instant between that check and
the close keeps the adapter, no longer persistent, until it closes it). This also lets a
non-root owner remove their own adapters.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import grp
import math
import os
import platform
import pwd
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import _core

__all__ = [
    "AdapterInfo",
    "CleanupEntry",
    "CleanupResult",
    "Holder",
    "cleanup",
    "create_adapter",
    "delete_adapter",
    "format_duration",
    "list_adapters",
    "parse_duration",
]

Mode = Literal["tap", "tun"]

# include/uapi/linux/if_tun.h
_IFF_NAMES = (
    (0x0001, "IFF_TUN"),
    (0x0002, "IFF_TAP"),
    (0x0010, "IFF_NAPI"),
    (0x0020, "IFF_NAPI_FRAGS"),
    (0x0100, "IFF_MULTI_QUEUE"),
    (0x0800, "IFF_PERSIST"),
    (0x1000, "IFF_NO_PI"),
    (0x2000, "IFF_ONE_QUEUE"),
    (0x4000, "IFF_VNET_HDR"),
    (0x8000, "IFF_TUN_EXCL"),
)
_TUNGETDEVNETNS = 0x54E3  # _IO('T', 227)
_SYS_PIDFD_GETFD = 438  # the same number on every architecture but alpha
_TUN_RDEV = os.makedev(10, 200)
_NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))


# --- public types ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holder:
    """A process holding an adapter open.

    Attributes:
        pid: Process id.
        command: Its name (``/proc/PID/comm``).
        fds: Its descriptors attached to the adapter.
    """

    pid: int
    command: str
    fds: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": self.command, "fds": list(self.fds)}

    def __str__(self) -> str:
        return f"PID {self.pid} ({self.command})"


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One TUN/TAP adapter as :func:`list_adapters` found it.

    Attributes:
        name: Interface name.
        netns: Network namespace name (``ip netns list``); None for the caller's own.
        ifindex: Interface index in its namespace.
        mode: ``"tap"`` (Ethernet frames) or ``"tun"`` (IP packets).
        flags: The ``IFF_*`` bits of sysfs ``tun_flags``.
        flag_names: ``flags`` decoded, e.g. ``("IFF_TAP", "IFF_PERSIST", "IFF_NO_PI")``.
        owner, group: uid / gid allowed to attach without CAP_NET_ADMIN (None: not set).
        owner_name, group_name: Their names on this system, when known.
        persistent: Whether it outlives its last descriptor (``IFF_PERSIST``).
        multi_queue: Created with ``IFF_MULTI_QUEUE``.
        up: Administratively up.
        carrier: Has carrier (a TAP/TUN has it only while a descriptor is attached).
        mtu: MTU in bytes.
        queues: Descriptors attached now: the kernel's count for a multi-queue adapter; for
            a single-queue one (the kernel reports no count) 1 when it has carrier or a
            holder was found, else 0.
        disabled_queues: Attached descriptors whose queue is disabled (``IFF_DETACH_QUEUE``).
        holders: The processes holding it open, as far as this process can see them.
        known_since: Epoch seconds vnetio knows it existed at (see ``known_since_source``);
            the adapter is at least this old. None when nothing is known.
        known_since_source: ``"created"`` (vnetio created it then), ``"first-seen"``
            (vnetio first saw it then) or ``"sysfs"`` (its sysfs directory's change time).
    """

    name: str
    netns: str | None
    ifindex: int
    mode: Mode
    flags: int
    flag_names: tuple[str, ...]
    owner: int | None
    owner_name: str | None
    group: int | None
    group_name: str | None
    persistent: bool
    multi_queue: bool
    up: bool
    carrier: bool
    mtu: int
    queues: int
    disabled_queues: int
    holders: tuple[Holder, ...] = ()
    known_since: float | None = None
    known_since_source: str | None = None

    @property
    def held(self) -> bool:
        """Some descriptor is attached (the kernel's count, not the process scan)."""
        return self.queues + self.disabled_queues > 0

    @property
    def orphaned(self) -> bool:
        """Persistent and held by no process: a leftover that :func:`cleanup` removes."""
        return self.persistent and not self.held

    @property
    def age(self) -> float | None:
        """Seconds since ``known_since`` (a lower bound of the real age), or None."""
        if self.known_since is None:
            return None
        return max(0.0, time.time() - self.known_since)

    @property
    def where(self) -> str:
        """``"vn0"`` or ``"vn0 (netns blue)"``, for messages."""
        return self.name if self.netns is None else f"{self.name} (netns {self.netns})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field plus ``held``, ``orphaned`` and ``age_seconds``."""
        age = self.age
        return {
            "name": self.name,
            "netns": self.netns,
            "ifindex": self.ifindex,
            "mode": self.mode,
            "flags": self.flags,
            "flag_names": list(self.flag_names),
            "owner": self.owner,
            "owner_name": self.owner_name,
            "group": self.group,
            "group_name": self.group_name,
            "persistent": self.persistent,
            "multi_queue": self.multi_queue,
            "up": self.up,
            "carrier": self.carrier,
            "mtu": self.mtu,
            "queues": self.queues,
            "disabled_queues": self.disabled_queues,
            "held": self.held,
            "holders": [h.as_dict() for h in self.holders],
            "orphaned": self.orphaned,
            "known_since": self.known_since,
            "known_since_source": self.known_since_source,
            "age_seconds": None if age is None else round(age, 3),
        }


@dataclass(frozen=True, slots=True)
class CleanupEntry:
    """One adapter :func:`cleanup` looked at, and why it was removed or kept."""

    adapter: AdapterInfo
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter.as_dict(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CleanupResult:
    """What :func:`cleanup` did.

    Attributes:
        dry_run: Nothing was deleted; ``removed`` lists what would have been.
        older_than: The age limit in seconds, if one was given.
        removed: Orphans deleted (or, in a dry run, that would be).
        kept: Adapters left alone, each with the reason.
        failed: Orphans whose deletion failed, with the error.
    """

    dry_run: bool
    older_than: float | None
    removed: tuple[CleanupEntry, ...] = ()
    kept: tuple[CleanupEntry, ...] = ()
    failed: tuple[CleanupEntry, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than": self.older_than,
            "removed": [e.as_dict() for e in self.removed],
            "kept": [e.as_dict() for e in self.kept],
            "failed": [e.as_dict() for e in self.failed],
        }


# --- durations -------------------------------------------------------------------------------

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)", re.IGNORECASE)


def parse_duration(text: str | float) -> float:
    """Seconds in ``"90"``, ``"45s"``, ``"10m"``, ``"1h30m"``, ``"2d"``, ``"1w"`` (or a number).

    Raises:
        ValueError: not a duration, or negative.
    """
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        rest = text.strip()
        if not rest:
            raise ValueError("empty duration")
        seconds, pos = 0.0, 0
        while pos < len(rest):
            match = _DURATION_PART.match(rest, pos)
            if match is None:
                raise ValueError(
                    f"invalid duration {text!r}: use a number with an optional unit s, m, h, "
                    "d or w, e.g. 90s, 10m, 1h30m, 2d"
                )
            seconds += float(match.group(1)) * _UNITS[match.group(2).lower()]
            pos = match.end()
            while pos < len(rest) and rest[pos].isspace():
                pos += 1
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite number >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: ``"42s"``, ``"5m07s"``, ``"1h"``, ``"3h05m"``, ``"2d04h"``."""
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            rest = s % size // sub_size
            return f"{s // size}{unit}{rest:02d}{sub}" if rest else f"{s // size}{unit}"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    return f"{s}s"


# --- users and groups ------------------------------------------------------------------------


def _resolve_id(value: int | str | None, what: Literal["user", "group"]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a name or a numeric id, not a bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, str):
        try:
            if what == "user":
                return pwd.getpwnam(value).pw_uid
            return grp.getgrnam(value).gr_gid
        except KeyError:
            raise LookupError(f"no {what} named {value!r} on this system") from None
    else:
        raise TypeError(f"{what} must be a name or a numeric id, not {type(value).__name__}")
    if not 0 <= number < 0xFFFFFFFF:
        raise ValueError(f"{what} id {number} is out of range")
    return number


def _user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int | None) -> str | None:
    if gid is None:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


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

_SYSFS_SCRIPT = (
    'cd /sys/class/net && for d in *; do [ -e "$d/tun_flags" ] && '
    'echo "$d $(cat "$d/ifindex") $(cat "$d/tun_flags") $(stat -c %.9Z "$d")"; done; true'
)


def _ip_binary() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("ip", path=path)


def _sysfs_facts(ns: _Ns) -> dict[tuple[str, int], tuple[int, float]]:
    """{(name, ifindex): (tun_flags, sysfs dir ctime)} for every TUN/TAP of ``ns``.

    Empty when that namespace's sysfs cannot be read (the caller derives what it can).
    """
    facts: dict[tuple[str, int], tuple[int, float]] = {}
    if ns.name is None:
        base = Path("/sys/class/net")
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                try:
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


def _derived_flags(tun: dict[str, Any]) -> int:
    flags = 0x0002 if tun.get("mode") == "tap" else 0x0001
    if not tun.get("pi"):
        flags |= 0x1000
    if tun.get("vnet_hdr"):
        flags |= 0x4000
    if tun.get("persist"):
        flags |= 0x0800
    if tun.get("multi_queue"):
        flags |= 0x0100
    return flags


def _flag_names(flags: int) -> tuple[str, ...]:
    names = [name for bit, name in _IFF_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _IFF_NAMES)
    if rest:
        names.append(f"0x{rest:x}")
    return tuple(names)


# --- holders: /proc/*/fd + fdinfo ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TunFd:
    pid: int
    fd: int
    iff: str
    ns: tuple[int, int] | None  # the adapter's namespace, when the kernel told us


class _PidfdGetfd:
    """``pidfd_getfd(2)`` through libc's ``syscall``; None where it cannot work."""

    def __init__(self) -> None:
        self._fn: Any = None
        if platform.machine().startswith("alpha"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.syscall
        except (OSError, AttributeError):
            return
        fn.restype = ctypes.c_long
        self._fn = fn

    def __call__(self, pidfd: int, fd: int) -> int | None:
        if self._fn is None:
            return None
        c_long = ctypes.c_long
        result = int(self._fn(c_long(_SYS_PIDFD_GETFD), c_long(pidfd), c_long(fd), c_long(0)))
        return result if result >= 0 else None


def _fd_netns(getfd: _PidfdGetfd, pidfd: int | None, fd: int) -> tuple[int, int] | None:
    """The namespace of the adapter behind another process's tun descriptor (root only)."""
    if pidfd is None:
        return None
    dup = getfd(pidfd, fd)
    if dup is None:
        return None
    try:
        nsfd = fcntl.ioctl(dup, _TUNGETDEVNETNS)
    except OSError:
        return None
    finally:
        os.close(dup)
    try:
        st = os.fstat(nsfd)
        return (st.st_dev, st.st_ino)
    finally:
        os.close(nsfd)


def _tun_fds() -> list[_TunFd]:
    """Every descriptor on /dev/net/tun this process can see that is attached to an adapter."""
    found: list[_TunFd] = []
    getfd: _PidfdGetfd | None = None
    with os.scandir("/proc") as procs:
        pids = [int(e.name) for e in procs if e.name.isdigit()]
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to look at
            continue
        pidfd: int | None = None
        try:
            for name in fds:
                try:
                    st = os.stat(f"/proc/{pid}/fd/{name}")
                except OSError:
                    continue
                if not stat.S_ISCHR(st.st_mode) or st.st_rdev != _TUN_RDEV:
                    continue
                iff = _fdinfo_iff(pid, name)
                if not iff:  # opened but not attached to any adapter
                    continue
                if getfd is None:
                    getfd = _PidfdGetfd()
                if pidfd is None:
                    with contextlib.suppress(OSError):
                        pidfd = os.pidfd_open(pid)
                found.append(_TunFd(pid, int(name), iff, _fd_netns(getfd, pidfd, int(name))))
        finally:
            if pidfd is not None:
                os.close(pidfd)
    return found


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


# --- the age ledger --------------------------------------------------------------------------


def _ledger_dir() -> Path | None:
    explicit = os.environ.get("VNETIO_STATE_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/run/vnetio")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "vnetio" if runtime else None


def _ledger_file(root: Path, ns: _Ns, ifindex: int, name: str) -> Path:
    return root / "adapters" / ns.ledger_key / f"{ifindex}-{name}"


def _ledger_read(path: Path) -> tuple[float, str] | None:
    try:
        when, source = path.read_text().split()[:2]
        return float(when), source
    except (OSError, ValueError):
        return None


def _ledger_write(path: Path, when: float, source: str, *, replace: bool) -> bool:
    """Record (when, source); without ``replace`` only if nothing is recorded yet."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(f"{when:.6f} {source}\n")
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic "create if absent"
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        return False


def _ledger_prune(root: Path, ns: _Ns, present: set[str]) -> None:
    """Forget adapters of ``ns`` that are gone, and namespaces that no longer exist."""
    base = root / "adapters"
    with contextlib.suppress(OSError):
        for entry in (base / ns.ledger_key).iterdir():
            if entry.name not in present and not entry.name.startswith("."):
                entry.unlink(missing_ok=True)
    live = set()
    for name in _named_namespaces():
        with contextlib.suppress(OSError):
            live.add(_named_ns(name).ledger_key)
    with contextlib.suppress(OSError):
        for directory in base.iterdir():
            if directory.name.startswith("netns-") and directory.name not in live:
                shutil.rmtree(directory, ignore_errors=True)


def _ledger_forget(info: AdapterInfo) -> None:
    root = _ledger_dir()
    if root is None:
        return
    with contextlib.suppress(OSError):
        ns = _own_ns() if info.netns is None else _named_ns(info.netns)
        path = _ledger_file(root, ns, info.ifindex, info.name)
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # fails, as it should, while other entries remain


def _known_since(
    root: Path | None, ns: _Ns, link: dict[str, Any], sysfs_ctime: float | None
) -> tuple[float | None, str | None]:
    """The earliest time the adapter is known to have existed at, and where that comes from."""
    candidates: list[tuple[float, str]] = []
    if root is not None:
        path = _ledger_file(root, ns, link["ifindex"], link["name"])
        record = _ledger_read(path)
        if record is None and _ledger_write(path, link["seen_at"], "first-seen", replace=False):
            record = _ledger_read(path)
        if record is not None:
            candidates.append(record)
    if sysfs_ctime is not None and sysfs_ctime > 0:
        candidates.append((sysfs_ctime, "sysfs"))
    if not candidates:
        return None, None
    return min(candidates)


# --- listing ---------------------------------------------------------------------------------


def _tun_links(ns: _Ns) -> list[dict[str, Any]]:
    """The TUN/TAP links of ``ns``, each with ``seen_at``: a time at which it existed."""
    links = _core.list_links(ns.name)
    seen_at = time.time()  # after the dump: every adapter in it existed by now
    tuns = [link for link in links if link.get("kind") == "tun" and link.get("tun") is not None]
    for link in tuns:
        link["seen_at"] = seen_at
    return tuns


def list_adapters(netns: str | None = None, all_namespaces: bool = False) -> list[AdapterInfo]:
    """Every TUN/TAP adapter of namespace ``netns`` (None: the caller's), or of the caller's
    and every named namespace with ``all_namespaces=True``.

    Also records in vnetio's ledger when each adapter was first seen (see the module doc).

    Raises:
        FileNotFoundError: ``netns`` does not exist.
        PermissionError: entering ``netns`` needs CAP_SYS_ADMIN.
    """
    found: list[tuple[_Ns, dict[str, Any]]] = []
    for ns in _scope(netns, all_namespaces):
        try:
            links = _tun_links(ns)
        except FileNotFoundError:
            if all_namespaces:  # deleted while we looked
                continue
            raise
        found.extend((ns, link) for link in links)
    return _describe(found, prune=True)


def _describe(found: list[tuple[_Ns, dict[str, Any]]], *, prune: bool) -> list[AdapterInfo]:
    """AdapterInfo for each (namespace, link); ``prune``: ``found`` is everything in those
    namespaces, so ledger entries of adapters not in it are stale."""
    holders = _assign_holders(_tun_fds(), found) if found else {}
    root = _ledger_dir()
    sysfs: dict[str | None, dict[tuple[str, int], tuple[int, float]]] = {}
    spaces: dict[str | None, _Ns] = {}
    result = []
    for ns, link in found:
        if ns.name not in sysfs:
            sysfs[ns.name] = _sysfs_facts(ns)
            spaces[ns.name] = ns
        tun = link["tun"]
        flags_ctime = sysfs[ns.name].get((link["name"], link["ifindex"]))
        flags = flags_ctime[0] if flags_ctime else _derived_flags(tun)
        who = holders.get((ns.name, link["ifindex"]), ())
        if tun["multi_queue"]:
            queues, disabled = int(tun["queues"] or 0), int(tun["disabled_queues"] or 0)
        else:
            # The kernel reports queue counts for multi-queue adapters only. A single-queue
            # adapter has carrier exactly while its one descriptor is attached (unless the
            # holder turned carrier off), and the descriptor scan covers that case.
            queues, disabled = (1 if link["carrier"] or who else 0), 0
        since, source = _known_since(root, ns, link, flags_ctime[1] if flags_ctime else None)
        result.append(
            AdapterInfo(
                name=link["name"],
                netns=ns.name,
                ifindex=link["ifindex"],
                mode="tap" if tun["mode"] == "tap" else "tun",
                flags=flags,
                flag_names=_flag_names(flags),
                owner=tun["owner"],
                owner_name=_user_name(tun["owner"]),
                group=tun["group"],
                group_name=_group_name(tun["group"]),
                persistent=bool(tun["persist"]),
                multi_queue=bool(tun["multi_queue"]),
                up=bool(link["up"]),
                carrier=bool(link["carrier"]),
                mtu=int(link["mtu"]),
                queues=queues,
                disabled_queues=disabled,
                holders=who,
                known_since=since,
                known_since_source=source,
            )
        )
    if root is not None and prune:
        for name, ns in spaces.items():
            present = {f"{a.ifindex}-{a.name}" for a in result if a.netns == name}
            _ledger_prune(root, ns, present)
    return result


def _find(name: str, netns: str | None) -> AdapterInfo | None:
    ns = _own_ns() if netns is None else _named_ns(netns)
    links = [link for link in _tun_links(ns) if link["name"] == name]
    return _describe([(ns, link) for link in links], prune=False)[0] if links else None


def _tun_state(ns_name: str | None, ifindex: int) -> dict[str, Any] | None:
    for link in _core.list_links(ns_name):
        if link["ifindex"] == ifindex and link.get("tun") is not None:
            tun: dict[str, Any] = link["tun"]
            return tun
    return None


# --- create / delete -------------------------------------------------------------------------


def create_adapter(
    name: str,
    mode: Mode,
    *,
    owner: int | str | None = None,
    group: int | str | None = None,
    queues: int = 1,
    mtu: int | None = None,
    netns: str | None = None,
) -> AdapterInfo:
    """Create a persistent TUN or TAP adapter and return it as :func:`list_adapters` sees it.

    Args:
        name: Interface name, or a pattern such as ``"vn%d"`` (the kernel picks the number).
        mode: ``"tap"`` (Ethernet frames) or ``"tun"`` (IP packets).
        owner: User (name or uid) that may attach without CAP_NET_ADMIN.
        group: Group (name or gid) that may attach without CAP_NET_ADMIN.
        queues: More than 1 creates a multi-queue adapter (``IFF_MULTI_QUEUE``).
        mtu: MTU to set.
        netns: Network namespace (``ip netns list``) to create it in.

    Raises:
        FileExistsError: an interface with that name already exists.
        LookupError: no such user or group.
        PermissionError: CAP_NET_ADMIN is missing.
        ValueError: a bad name, mode, queue count or MTU.
    """
    if mode not in ("tap", "tun"):
        raise ValueError(f"mode must be 'tap' or 'tun', not {mode!r}")
    _core.validate_ifname(name)
    uid = _resolve_id(owner, "user")
    gid = _resolve_id(group, "group")
    ns = _own_ns() if netns is None else _named_ns(netns)
    if "%" not in name:
        for link in _core.list_links(netns):
            if link["name"] == name:
                raise FileExistsError(errno.EEXIST, _exists_message(name, netns, link))
    cls = _core.Tap if mode == "tap" else _core.Tun
    adapter = cls(name, persist=True, owner=uid, group=gid, queues=queues, mtu=mtu, netns=netns)
    with adapter:
        if not adapter.created:  # it appeared between our check and the open
            raise FileExistsError(
                errno.EEXIST, f"{name} already exists (created by someone else just now)"
            )
        actual, ifindex = adapter.name, adapter.ifindex
    root = _ledger_dir()
    if root is not None:
        _ledger_write(_ledger_file(root, ns, ifindex, actual), time.time(), "created", replace=True)
    info = _find(actual, netns)
    if info is None:  # deleted by someone else in the meantime
        raise FileNotFoundError(errno.ENOENT, f"{actual} was created but is gone again")
    return info


def _exists_message(name: str, netns: str | None, link: dict[str, Any]) -> str:
    where = "" if netns is None else f" in network namespace {netns}"
    tun = link.get("tun")
    if tun is not None:
        what = f"a {str(tun['mode']).upper()} adapter"
        return f"{name} already exists{where} ({what}); remove it first: vnetio delete {name}"
    kind = link.get("kind") or "network"
    return f"{name} already exists{where} as a {kind} interface (not TUN/TAP); pick another name"


def _held_message(info: AdapterInfo) -> str:
    if info.holders:
        return "held open by " + ", ".join(str(h) for h in info.holders)
    count = info.queues + info.disabled_queues
    plural = "s" if count != 1 else ""
    return f"held open by {count} descriptor{plural} of a process not visible here"


def delete_adapter(name: str, *, netns: str | None = None, force: bool = False) -> AdapterInfo:
    """Delete the TUN/TAP adapter ``name``; returns what it was.

    Without ``force`` an adapter that a process holds open is refused (``EBUSY``, naming the
    process): the adapter is attached, made non-persistent and closed, as ``ip tuntap del``
    does, so the owner of an adapter may delete it without CAP_NET_ADMIN. With ``force`` it is
    removed over rtnetlink even when held (its holders then get errors); that needs
    CAP_NET_ADMIN.

    Raises:
        FileNotFoundError: no interface of that name.
        ValueError: the interface exists but is not a TUN/TAP adapter (it is never touched).
        OSError: errno EBUSY when held and ``force`` is false.
    """
    _core.validate_ifname(name)
    info = _find(name, netns)
    if info is None:
        where = "" if netns is None else f" in network namespace {netns}"
        for link in _core.list_links(netns):
            if link["name"] == name:
                raise ValueError(
                    f"{name}{where} is a {link.get('kind') or 'network'} interface, not a "
                    "TUN/TAP adapter; vnetio deletes only TUN/TAP adapters"
                )
        raise FileNotFoundError(errno.ENOENT, f"no adapter named {name}{where}")
    if force:
        _core.delete_link(name, netns=netns)
    else:
        try:
            _release(info)
        except _Gone:
            raise FileNotFoundError(
                errno.ENOENT, f"{info.where} disappeared before it could be deleted"
            ) from None
    _ledger_forget(info)
    return info


class _Gone(Exception):
    """The adapter disappeared before we could remove it."""


def _release(info: AdapterInfo) -> None:
    """Remove ``info`` the way ``ip tuntap del`` does, never from under a holder.

    Raises OSError(EBUSY) when a process holds it, _Gone when it no longer exists.
    """
    if info.held:
        raise OSError(errno.EBUSY, f"{info.where} is {_held_message(info)}")
    cls = _core.Tap if info.mode == "tap" else _core.Tun
    ours = 2 if info.multi_queue else 1
    try:
        adapter = cls(info.name, netns=info.netns, queues=ours)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise OSError(errno.EBUSY, f"{info.where}: a process attached it just now") from exc
        raise
    with adapter:
        if adapter.created:  # it was gone and we made a new, non-persistent one: closing ends it
            raise _Gone(info.name)
        state = _tun_state(info.netns, info.ifindex)
        if state is None or adapter.ifindex != info.ifindex:
            raise _Gone(info.name)  # replaced by another adapter of that name: not ours to touch
        attached = (state["queues"] or 0) + (state["disabled_queues"] or 0)  # None: single-queue
        if attached > ours:  # another multi-queue holder
            raise OSError(errno.EBUSY, f"{info.where}: a process attached it just now")
        adapter.set_persistent(False)
    # The kernel unregisters a non-persistent adapter when its last queue detaches.
    if _tun_state(info.netns, info.ifindex) is not None:
        raise OSError(
            errno.EBUSY,
            f"{info.where} still exists: a process attached it while it was being removed; it "
            "is no longer persistent and goes away when that process closes it",
        )


# --- cleanup ---------------------------------------------------------------------------------

_SOURCE_TEXT = {
    "created": "created by vnetio",
    "first-seen": "first seen by vnetio",
    "sysfs": "by its sysfs entry",
}


def _age_text(info: AdapterInfo) -> str:
    age = info.age
    if age is None:
        return "age unknown"
    source = _SOURCE_TEXT.get(info.known_since_source or "", info.known_since_source or "")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.known_since))
    return f"known for {format_duration(age)} ({source} at {stamp})"


def _keep_reason(info: AdapterInfo, limit: float | None) -> str | None:
    """Why cleanup must leave ``info`` alone, or None when it is an orphan to remove."""
    if info.held:
        reason = _held_message(info)
        if not info.persistent:
            reason += "; not persistent (it goes away when closed)"
        return reason
    if not info.persistent:  # cannot exist without a holder, but never delete it
        return "not persistent"
    age = info.age
    if limit is not None and (age is None or age < limit):
        return f"orphaned but not older than {format_duration(limit)}: {_age_text(info)}"
    return None


def cleanup(
    dry_run: bool = False,
    older_than: float | str | None = None,
    netns: str | None = None,
    all_namespaces: bool = False,
) -> CleanupResult:
    """Delete orphaned persistent TUN/TAP adapters (persistent, no descriptor attached).

    Never deletes an adapter that a process holds open, and never looks at interfaces of any
    other kind. ``older_than`` (seconds, or a duration such as ``"1h"``) keeps orphans whose
    known age is lower (the age is a lower bound, see the module doc). ``dry_run`` deletes
    nothing and reports what would go.
    """
    limit = None if older_than is None else parse_duration(older_than)
    removed: list[CleanupEntry] = []
    kept: list[CleanupEntry] = []
    failed: list[CleanupEntry] = []
    for info in list_adapters(netns, all_namespaces):
        keep = _keep_reason(info, limit)
        if keep is not None:
            kept.append(CleanupEntry(info, keep))
            continue
        reason = f"orphaned: persistent, no process attached, {_age_text(info)}"
        if dry_run:
            removed.append(CleanupEntry(info, reason))
            continue
        try:
            _release(info)
        except _Gone:
            kept.append(CleanupEntry(info, "it disappeared before cleanup reached it"))
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                kept.append(CleanupEntry(info, exc.strerror or str(exc)))
            else:
                failed.append(CleanupEntry(info, f"{type(exc).__name__}: {exc}"))
        else:
            _ledger_forget(info)
            removed.append(CleanupEntry(info, reason))
    return CleanupResult(dry_run, limit, tuple(removed), tuple(kept), tuple(failed))
