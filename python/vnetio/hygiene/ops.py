"""Adapter hygiene: ``create_adapter``, ``delete_adapter`` and ``cleanup``, which never
touch an adapter in use or an interface of another kind."""

from __future__ import annotations

import errno
import time
from typing import Any

from .. import _core
from .ledger import _ledger_dir, _ledger_file, _ledger_forget, _ledger_write
from .listing import _find, _tun_state, list_adapters
from .model import (
    AdapterInfo,
    CleanupEntry,
    CleanupResult,
    Mode,
    _resolve_id,
    format_duration,
    parse_duration,
)
from .scan import _named_ns, _own_ns

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
    if not info.holders_complete:
        return (
            "possibly held open: the kernel keeps no count of a macvtap link's descriptors and "
            "this process cannot see every process's descriptors (run as root)"
        )
    count = info.queues + info.disabled_queues
    plural = "s" if count != 1 else ""
    return f"held open by {count} descriptor{plural} of a process not visible here"


def delete_adapter(name: str, *, netns: str | None = None, force: bool = False) -> AdapterInfo:
    """Delete the TUN/TAP adapter or macvtap link ``name``; returns what it was.

    Without ``force`` an adapter that a process holds open is refused (``EBUSY``, naming the
    process): the adapter is attached, made non-persistent and closed, as ``ip tuntap del``
    does, so the owner of an adapter may delete it without CAP_NET_ADMIN. A macvtap link is
    deleted over rtnetlink once the process scan finds no holder (the kernel keeps no count:
    a process that opens it in between, or one this process cannot see, loses it). With
    ``force`` it is removed over rtnetlink even when held (its holders then get errors);
    that needs CAP_NET_ADMIN.

    Raises:
        FileNotFoundError: no interface of that name.
        ValueError: the interface exists but is neither a TUN/TAP adapter nor a macvtap link
            (it is never touched).
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
                    "TUN/TAP adapter or macvtap link; vnetio deletes only those"
                )
        raise FileNotFoundError(errno.ENOENT, f"no adapter named {name}{where}")
    if force:
        _core.delete_link(name, netns=netns, ifindex=info.ifindex)
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
    if info.mode == "macvtap":
        _release_macvtap(info)
        return
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


def _release_macvtap(info: AdapterInfo) -> None:
    """Delete macvtap link ``info`` if a fresh look still finds it with nobody holding it."""
    now = _find(info.name, info.netns)
    if now is None or now.ifindex != info.ifindex or now.mode != "macvtap":
        raise _Gone(info.name)
    if now.held:
        raise OSError(errno.EBUSY, f"{now.where} is {_held_message(now)}")
    try:
        _core.delete_link(info.name, netns=info.netns, ifindex=info.ifindex)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise _Gone(info.name) from exc
        raise


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
    """Delete orphaned persistent TUN/TAP adapters (persistent, no descriptor attached) and
    macvtap links that no process holds open.

    Never deletes an adapter that a process holds open, and never looks at interfaces of any
    other kind. A macvtap link counts as held when this process cannot see every process's
    descriptors (not root); see :func:`list_adapters` for processes it cannot see at all. ``older_than`` (seconds, or a duration such as ``"1h"``) keeps orphans whose
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
        what = (
            "no process holds it open"
            if info.mode == "macvtap"
            else "persistent, no process attached"
        )
        reason = f"orphaned: {what}, {_age_text(info)}"
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
