"""Adapter hygiene: the public result types (``AdapterInfo``, ``Holder``,
``CleanupEntry``, ``CleanupResult``), durations, user and group names, and TUN flag
names."""

from __future__ import annotations

import grp
import math
import pwd
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["tap", "tun"]
#: What :func:`list_adapters` lists: TUN/TAP adapters and macvtap links.
AdapterMode = Literal["tap", "tun", "macvtap"]

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
    """One TUN/TAP adapter or macvtap link as :func:`list_adapters` found it.

    Attributes:
        name: Interface name.
        netns: Network namespace name (``ip netns list``); None for the caller's own.
        ifindex: Interface index in its namespace.
        mode: ``"tap"`` (Ethernet frames), ``"tun"`` (IP packets) or ``"macvtap"`` (a
            macvtap link: Ethernet frames through its character device ``/dev/tapN``).
        flags: The ``IFF_*`` bits of sysfs ``tun_flags`` (0 for a macvtap link).
        flag_names: ``flags`` decoded, e.g. ``("IFF_TAP", "IFF_PERSIST", "IFF_NO_PI")``.
        owner, group: uid / gid allowed to attach without CAP_NET_ADMIN (None: not set).
        owner_name, group_name: Their names on this system, when known.
        persistent: Whether it outlives its last descriptor (``IFF_PERSIST``; always True
            for a macvtap link, which lives until it is deleted).
        multi_queue: Created with ``IFF_MULTI_QUEUE``.
        up: Administratively up.
        carrier: Has carrier (a TAP/TUN has it only while a descriptor is attached; a
            macvtap link while its lower device has).
        mtu: MTU in bytes.
        queues: Descriptors attached now: the kernel's count for a multi-queue adapter; for
            a single-queue one (the kernel reports no count) 1 when it has carrier or a
            holder was found, else 0; for a macvtap link (the kernel keeps no count) the
            descriptors on its character device that the process scan found.
        disabled_queues: Attached descriptors whose queue is disabled (``IFF_DETACH_QUEUE``).
        holders: The processes holding it open, as far as this process can see them.
        known_since: Epoch seconds vnetio knows it existed at (see ``known_since_source``);
            the adapter is at least this old. None when nothing is known.
        known_since_source: ``"created"`` (vnetio created it then), ``"first-seen"``
            (vnetio first saw it then) or ``"sysfs"`` (its sysfs directory's change time).
        lower: A macvtap link's lower device (None: not a macvtap link, or its lower device
            is in another namespace).
        macvtap_mode: A macvtap link's mode: ``"private"``, ``"vepa"``, ``"bridge"``,
            ``"passthru"`` or ``"source"`` (None for TUN/TAP adapters).
        holders_complete: Whether ``holders`` is known to be complete where it matters: False
            for a macvtap link when some process's descriptors could not be read (not root)
            or its device numbers are unknown, so a holder may have been missed (the link
            then counts as held).
        wireguard: The PID of the process that carries WireGuard through this TUN (a
            vnetio ``wireguard.Interface`` serving its userspace API socket, such as
            ``vnetio wg up``), or None.
    """

    name: str
    netns: str | None
    ifindex: int
    mode: AdapterMode
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
    lower: str | None = None
    macvtap_mode: str | None = None
    holders_complete: bool = True
    wireguard: int | None = None

    @property
    def held(self) -> bool:
        """Some descriptor is attached: the kernel's count for a TUN/TAP adapter; for a
        macvtap link the process scan, and True when that scan may have missed a holder."""
        return self.queues + self.disabled_queues > 0 or not self.holders_complete

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
            "lower": self.lower,
            "macvtap_mode": self.macvtap_mode,
            "holders_complete": self.holders_complete,
            "wireguard": self.wireguard,
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
