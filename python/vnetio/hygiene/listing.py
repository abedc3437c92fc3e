"""Adapter hygiene: ``list_adapters`` — every TUN/TAP adapter and macvtap link of one or
all namespaces with its facts, holders and age."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .. import _core
from .ledger import _known_since, _ledger_dir, _ledger_prune
from .model import AdapterInfo, _derived_flags, _flag_names, _group_name, _user_name
from .scan import (
    _assign_holders,
    _named_ns,
    _Ns,
    _own_ns,
    _Scan,
    _scan_fds,
    _scope,
    _sysfs_facts,
    holders_by_device,
    macvtap_rdev,
)

# --- listing ---------------------------------------------------------------------------------


def _is_tun(link: dict[str, Any]) -> bool:
    return link.get("kind") == "tun" and link.get("tun") is not None


def _is_macvtap(link: dict[str, Any]) -> bool:
    return link.get("kind") == "macvtap" and link.get("macvtap") is not None


def _links(ns: _Ns) -> list[dict[str, Any]]:
    """The TUN/TAP adapters and macvtap links of ``ns``, each with ``seen_at``: a time at
    which it existed."""
    links = _core.list_links(ns.name)
    seen_at = time.time()  # after the dump: every adapter in it existed by now
    ours = [link for link in links if _is_tun(link) or _is_macvtap(link)]
    for link in ours:
        link["seen_at"] = seen_at
    return ours


def list_adapters(netns: str | None = None, all_namespaces: bool = False) -> list[AdapterInfo]:
    """Every TUN/TAP adapter and macvtap link of namespace ``netns`` (None: the caller's),
    or of the caller's and every named namespace with ``all_namespaces=True``.

    A macvtap link's holders are the processes with a descriptor on its character device;
    the kernel keeps no count of them, so only processes this one can see are found (as
    root: every process of this PID namespace; not those in a container's).

    Also records in vnetio's ledger when each adapter was first seen (see the module doc).

    Raises:
        FileNotFoundError: ``netns`` does not exist.
        PermissionError: entering ``netns`` needs CAP_SYS_ADMIN.
    """
    found: list[tuple[_Ns, dict[str, Any]]] = []
    for ns in _scope(netns, all_namespaces):
        try:
            links = _links(ns)
        except FileNotFoundError:
            if all_namespaces:  # deleted while we looked
                continue
            raise
        found.extend((ns, link) for link in links)
    return _describe(found, prune=True)


def _describe(found: list[tuple[_Ns, dict[str, Any]]], *, prune: bool) -> list[AdapterInfo]:
    """AdapterInfo for each (namespace, link); ``prune``: ``found`` is everything in those
    namespaces, so ledger entries of adapters not in it are stale."""
    rdevs = {(ns.name, link["ifindex"]): macvtap_rdev(link) for ns, link in found}
    scan = _scan_fds({r for r in rdevs.values() if r is not None}) if found else None
    tuns = [(ns, link) for ns, link in found if _is_tun(link)]
    holders = _assign_holders(scan.tun, tuns) if scan and tuns else {}
    root = _ledger_dir()
    sysfs: dict[str | None, dict[tuple[str, int], tuple[int, float]]] = {}
    spaces: dict[str | None, _Ns] = {}
    result = []
    for ns, link in found:
        if ns.name not in sysfs:
            sysfs[ns.name] = _sysfs_facts(ns)
            spaces[ns.name] = ns
        flags_ctime = sysfs[ns.name].get((link["name"], link["ifindex"]))
        since, source = _known_since(root, ns, link, flags_ctime[1] if flags_ctime else None)
        if _is_macvtap(link):
            rdev = rdevs[(ns.name, link["ifindex"])]
            assert scan is not None
            result.append(_macvtap_info(ns, link, rdev, scan, since, source))
            continue
        tun = link["tun"]
        flags = flags_ctime[0] if flags_ctime else _derived_flags(tun)
        who = holders.get((ns.name, link["ifindex"]), ())
        if tun["multi_queue"]:
            queues, disabled = int(tun["queues"] or 0), int(tun["disabled_queues"] or 0)
        else:
            # The kernel reports queue counts for multi-queue adapters only. A single-queue
            # adapter has carrier exactly while its one descriptor is attached (unless the
            # holder turned carrier off), and the descriptor scan covers that case.
            queues, disabled = (1 if link["carrier"] or who else 0), 0
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
    result = _mark_wireguard(result)
    if root is not None and prune:
        for name, ns in spaces.items():
            present = {f"{a.ifindex}-{a.name}" for a in result if a.netns == name}
            _ledger_prune(root, ns, present)
    return result


def _mark_wireguard(adapters: list[AdapterInfo]) -> list[AdapterInfo]:
    """Mark the TUNs that a live vnetio WireGuard interface carries: its record in the
    userspace API directory names the TUN and a PID that holds it."""
    from vnetio.wireguard import uapi

    live = {r.name: r.pid for r in uapi.records() if r.alive}
    return [
        dataclasses.replace(a, wireguard=live[a.name])
        if a.mode == "tun" and live.get(a.name) in {h.pid for h in a.holders}
        else a
        for a in adapters
    ]


def _macvtap_info(
    ns: _Ns,
    link: dict[str, Any],
    rdev: int | None,
    scan: _Scan,
    since: float | None,
    source: str | None,
) -> AdapterInfo:
    who = holders_by_device(scan, rdev) if rdev is not None else ()
    info = link["macvtap"]
    return AdapterInfo(
        name=link["name"],
        netns=ns.name,
        ifindex=link["ifindex"],
        mode="macvtap",
        flags=0,
        flag_names=(),
        owner=None,
        owner_name=None,
        group=None,
        group_name=None,
        persistent=True,  # a macvtap link lives until deleted
        multi_queue=False,
        up=bool(link["up"]),
        carrier=bool(link["carrier"]),
        mtu=int(link["mtu"]),
        queues=sum(len(h.fds) for h in who),
        disabled_queues=0,
        holders=who,
        known_since=since,
        known_since_source=source,
        lower=info.get("lower"),
        macvtap_mode=info.get("mode"),
        holders_complete=rdev is not None and scan.complete,
    )


def _find(name: str, netns: str | None) -> AdapterInfo | None:
    ns = _own_ns() if netns is None else _named_ns(netns)
    links = [link for link in _links(ns) if link["name"] == name]
    return _describe([(ns, link) for link in links], prune=False)[0] if links else None


def _tun_state(ns_name: str | None, ifindex: int) -> dict[str, Any] | None:
    for link in _core.list_links(ns_name):
        if link["ifindex"] == ifindex and link.get("tun") is not None:
            tun: dict[str, Any] = link["tun"]
            return tun
    return None
