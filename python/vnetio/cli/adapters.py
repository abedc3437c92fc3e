"""``vnetio create``, ``delete``, ``list`` and ``cleanup``: persistent TUN/TAP adapters and
macvtap links.

The command-line face of :mod:`vnetio.hygiene`: parsing, the table ``list`` prints and the
wording of errors; what happens to the adapters is the library's.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vnetio.hygiene import AdapterInfo, CleanupResult
    from vnetio.hygiene.queues import QueueRestore

__all__ = ["COMMANDS", "add_parsers"]


def _add_scope(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--netns", metavar="NS", help="the network namespace NS (ip netns list) instead of ours"
    )
    scope.add_argument(
        "--all-namespaces",
        action="store_true",
        help="our namespace and every named one (ip netns list)",
    )


def add_parsers(sub: Any) -> None:
    """Add ``create``, ``delete``, ``list`` and ``cleanup`` to the subcommands."""
    create = sub.add_parser(
        "create",
        help="create a persistent TUN or TAP adapter",
        description=(
            "Create a persistent adapter (it stays after this command ends). With --owner/"
            "--group that user or group may then open it without privileges. Needs "
            "CAP_NET_ADMIN (root)."
        ),
    )
    create.add_argument("name", help="interface name, or a pattern like vn%%d")
    mode = create.add_mutually_exclusive_group(required=True)
    mode.add_argument("--tap", dest="mode", action="store_const", const="tap", help="Ethernet")
    mode.add_argument("--tun", dest="mode", action="store_const", const="tun", help="IP")
    create.add_argument("--owner", metavar="USER", help="user name or uid that may attach")
    create.add_argument("--group", metavar="GROUP", help="group name or gid that may attach")
    create.add_argument(
        "--queues", type=int, default=1, metavar="N", help="N > 1: a multi-queue adapter"
    )
    create.add_argument(
        "--offload",
        action="store_true",
        help="virtio-net header offload (not available yet for create: open with offload=True)",
    )
    create.add_argument("--mtu", type=int, metavar="M", help="MTU in bytes")
    create.add_argument("--netns", metavar="NS", help="create it in network namespace NS")
    create.add_argument("--json", action="store_true", help="print the adapter as JSON")

    delete = sub.add_parser(
        "delete",
        help="delete a TUN/TAP adapter or macvtap link",
        description=(
            "Delete a TUN/TAP adapter or macvtap link (never an interface of another kind). "
            "One that a process holds open is refused unless --force is given."
        ),
    )
    delete.add_argument("name")
    delete.add_argument("--netns", metavar="NS", help="the adapter is in network namespace NS")
    delete.add_argument(
        "--force", action="store_true", help="delete it even if a process holds it open"
    )

    lister = sub.add_parser(
        "list",
        help="list TUN/TAP adapters and macvtap links, who holds them, which are orphaned",
        description=(
            "List every TUN/TAP adapter and macvtap link: mode, flags (sysfs tun_flags; for "
            "a macvtap its mode and lower device), owner and group, persistence, carrier, "
            "MTU, attached queues, the processes holding it open and whether it is orphaned "
            "(persistent, nobody attached). AGE is how long vnetio has known the adapter "
            "(since it created or first saw it): a lower bound."
        ),
    )
    lister.add_argument("--json", action="store_true", help="print a JSON list of objects")
    _add_scope(lister)

    clean = sub.add_parser(
        "cleanup",
        help="delete orphaned persistent TUN/TAP adapters and macvtap links",
        description=(
            "Delete orphaned persistent TUN/TAP adapters (persistent, no process attached) "
            "and macvtap links no process holds open. Never deletes one that a process holds "
            "open or an interface of another kind; prints what it removed and what it kept, "
            "and why. Macvtap holders are found by scanning processes: run as root."
        ),
    )
    clean.add_argument("--dry-run", action="store_true", help="show what would go; delete none")
    clean.add_argument(
        "--older-than",
        metavar="DURATION",
        help="only orphans vnetio has known for at least DURATION (90s, 10m, 1h30m, 2d)",
    )
    clean.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_scope(clean)


# -- the commands --------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
        return exc.strerror
    if isinstance(exc, LookupError) and exc.args:  # KeyError would quote its message
        return str(exc.args[0])
    return str(exc)


def _failing(command: str, exc: BaseException) -> int:
    print(f"vnetio {command}: {type(exc).__name__}: {_error_text(exc)}", file=sys.stderr)
    return 1


def _cmd_create(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vnetio import hygiene

    if args.offload:
        print(
            "vnetio create: --offload is not available yet: offload is chosen by each program "
            "that opens an adapter (IFF_VNET_HDR is set per descriptor, and vnetio resets the "
            "offload mask whenever an adapter is opened without offload), so a persistent "
            f"adapter cannot keep it for its next user. Create {args.name} without --offload "
            f"and open it with vnetio.{args.mode.title()}({args.name!r}, offload=True).",
            file=sys.stderr,
        )
        return 2
    try:
        info = hygiene.create_adapter(
            args.name,
            args.mode,
            owner=args.owner,
            group=args.group,
            queues=args.queues,
            mtu=args.mtu,
            netns=args.netns,
        )
    except (OSError, ValueError, LookupError, TypeError) as exc:
        return _failing("create", exc)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    queues = f"{args.queues} queues (multi-queue)" if args.queues > 1 else "1 queue"
    print(
        f"created {info.mode.upper()} {info.where}: persistent, owner {_who(info.owner, info.owner_name)}, "
        f"group {_who(info.group, info.group_name)}, {queues}, MTU {info.mtu}"
    )
    return 0


def _who(number: int | None, name: str | None) -> str:
    if number is None:
        return "-"
    return f"{name} ({number})" if name else str(number)


def _cmd_delete(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vnetio import hygiene

    try:
        info = hygiene.delete_adapter(args.name, netns=args.netns, force=args.force)
    except (OSError, ValueError) as exc:
        code = _failing("delete", exc)
        if isinstance(exc, OSError) and exc.errno == errno.EBUSY and not args.force:
            print("  stop that process first, or use --force to delete it anyway", file=sys.stderr)
        return code
    print(f"deleted {info.mode.upper()} {info.where}")
    return 0


def _cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vnetio import hygiene

    try:
        adapters = hygiene.list_adapters(args.netns, args.all_namespaces)
    except (OSError, ValueError) as exc:
        return _failing("list", exc)
    if args.json:
        print(json.dumps([a.as_dict() for a in adapters], indent=2))
        return 0
    if not adapters:
        where = "any namespace" if args.all_namespaces else _scope_text(args.netns)
        print(f"no TUN/TAP adapters or macvtap links in {where}")
        return 0
    print(_adapter_table(adapters, show_netns=args.all_namespaces or args.netns is not None))
    return 0


def _scope_text(netns: str | None) -> str:
    return "this network namespace" if netns is None else f"network namespace {netns}"


MODES = ("TUN", "TAP")


def _adapter_table(adapters: list[AdapterInfo], *, show_netns: bool) -> str:
    from vnetio.hygiene import format_duration

    headers = ["NAME", "MODE", "FLAGS", "OWNER", "GROUP", "PERSIST", "CARRIER", "MTU"]
    headers += ["QUEUES", "HOLDERS", "ORPHANED", "AGE"]
    if show_netns:
        headers.insert(1, "NETNS")
    rows = []
    for a in adapters:
        # IFF_TUN/IFF_TAP are the MODE column; the rest lower-case without the prefix.
        flags = [f.removeprefix("IFF_").lower() for f in a.flag_names if f[4:] not in MODES]
        if a.mode == "macvtap":
            flags = [f"mode={a.macvtap_mode}", f"lower={a.lower or '?'}"]
        if a.wireguard is not None:
            flags.append("wireguard")
        queues = f"{a.queues}" if a.holders_complete or a.queues else "?"
        age = a.age
        row = [
            a.name,
            a.mode,
            ",".join(flags) or "-",
            _who(a.owner, a.owner_name),
            _who(a.group, a.group_name),
            "yes" if a.persistent else "no",
            "on" if a.carrier else "off",
            str(a.mtu),
            queues + (f"+{a.disabled_queues} disabled" if a.disabled_queues else ""),
            ",".join(f"{h.pid}/{h.command}" for h in a.holders) or ("?" if a.held else "-"),
            "ORPHANED" if a.orphaned else "no",
            "?" if age is None else format_duration(age),
        ]
        if show_netns:
            row.insert(1, a.netns or "-")
        rows.append(row)
    return _table(headers, rows)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _cmd_cleanup(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vnetio import hygiene

    try:
        older = None if args.older_than is None else hygiene.parse_duration(args.older_than)
    except ValueError as exc:
        print(f"vnetio cleanup: --older-than: {exc}", file=sys.stderr)
        return 2
    try:
        queues = _restore_queues(args)  # first: an adapter kept below gets its queue back
        stale_wg = _forget_stale_wireguard(dry_run=args.dry_run)
        result = hygiene.cleanup(
            dry_run=args.dry_run,
            older_than=older,
            netns=args.netns,
            all_namespaces=args.all_namespaces,
        )
    except (OSError, ValueError) as exc:
        return _failing("cleanup", exc)
    if args.json:
        report = {**result.as_dict(), "queues": [q.as_dict() for q in queues]}
        report["wireguard_records"] = [{"name": r.name, "pid": r.pid} for r in stale_wg]
        print(json.dumps(report, indent=2))
    else:
        _print_queues(queues, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for r in stale_wg:
            print(f"{verb}  WireGuard record {r.name}: its process ({r.pid}) is gone")
        _print_cleanup(result, args)
    return 1 if result.failed or any(q.action == "failed" for q in queues) else 0


def _forget_stale_wireguard(*, dry_run: bool) -> list[Any]:
    """Remove the userspace API sockets and records of vnetio WireGuard interfaces whose
    process was killed (their TUN went with the process; these files did not)."""
    from vnetio.wireguard import uapi

    stale = [r for r in uapi.records() if not r.alive]
    if not dry_run:
        for r in stale:
            uapi.forget(r.name)
    return stale


def _restore_queues(args: argparse.Namespace) -> list[QueueRestore]:
    """Put back the kernel queues that captures killed before their end left raised."""
    from vnetio.hygiene.queues import restore_queues

    return restore_queues(
        dry_run=args.dry_run, netns=args.netns, all_namespaces=args.all_namespaces
    )


def _print_queues(queues: list[QueueRestore], *, dry_run: bool) -> None:
    for q in queues:
        if q.action == "restored":
            verb = "would restore queue of" if dry_run else "restored queue of"
            print(f"{verb}  {q.queue.where}: {q.reason}")
        elif q.action == "failed":
            print(f"FAILED to restore queue of  {q.queue.where}: {q.reason}")


def _print_cleanup(result: CleanupResult, args: argparse.Namespace) -> None:
    verb = "would remove" if result.dry_run else "removed"
    entries = [(verb, e) for e in result.removed]
    entries += [("kept", e) for e in result.kept] + [("FAILED", e) for e in result.failed]
    width = max((len(v) for v, _ in entries), default=0)
    for what, entry in entries:
        print(f"{what.ljust(width)}  {entry.adapter.where}: {entry.reason}")
    where = "any namespace" if args.all_namespaces else _scope_text(args.netns)
    if not entries:
        print(f"no TUN/TAP adapters or macvtap links in {where}: nothing to do")
        return
    summary = f"{verb} {len(result.removed)}, kept {len(result.kept)}"
    if result.failed:
        summary += f", failed {len(result.failed)}"
    if result.dry_run:
        summary += " (dry run: nothing was deleted)"
    print(summary)


#: The subcommands of this module and what runs each (see ``vnetio.cli.main``).
COMMANDS = {
    "create": _cmd_create,
    "delete": _cmd_delete,
    "list": _cmd_list,
    "cleanup": _cmd_cleanup,
}
