"""Adapter hygiene: ``list_adapters`` — every TUN/TAP adapter of one or all namespaces
with its facts, holders and age."""

from __future__ import annotations

import time
from typing import Any

from .. import _core
from .ledger import _known_since, _ledger_dir, _ledger_prune
from .model import AdapterInfo, _derived_flags, _flag_names, _group_name, _user_name
from .scan import _assign_holders, _named_ns, _Ns, _own_ns, _scope, _sysfs_facts, _tun_fds

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
