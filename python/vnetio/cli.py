"""The ``vnetio`` command: ``demo``, ``doctor``, ``create``, ``delete``, ``list``, ``cleanup``,
``capture``, ``replay`` and ``--version``.

``vnetio demo`` pumps frames from one adapter to another through vnetio batches and shows
the rate live. As root it builds a private "bridge loop" (a network namespace holding a
bridge and two TAP adapters, ``vnetio.loopback.KernelLoop``) and sends real frames through the
kernel; without the privileges for that, or with ``--loopback``, it runs the same pump over
an in-memory ``vnetio.loopback_pair()`` and says why in one line.

``create``/``delete``/``list``/``cleanup`` manage persistent adapters (``vnetio.hygiene``).

Heavy imports (the extension, the doctor) happen inside the subcommands, so ``--version``
and ``doctor`` keep working when something is wrong with the extension: ``import vnetio``
defers its core check while it runs as this command (see ``vnetio._corecheck``), and
``main`` reports the deferred error for every other subcommand.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from vnetio.hygiene import AdapterInfo, CleanupResult

__all__ = ["main"]

BATCH = 256
SAMPLES = 3


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("vnetio")
    except Exception:  # noqa: BLE001 - not installed as a distribution (e.g. a source tree)
        try:
            return str(importlib.import_module("vnetio._core").__version__)
        except Exception:  # noqa: BLE001 - --version must answer even with a broken build
            return "unknown"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vnetio",
        description="High-speed packet I/O through Linux TUN/TAP adapters.",
    )
    parser.add_argument("--version", action="version", version=f"vnetio {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="pump frames between two adapters and show the rate",
        description=(
            "Pump frames A -> B through vnetio batches for a few seconds, with a live rate, "
            "then decode a few received frames. As root: two TAP adapters on a bridge in a "
            "private network namespace, removed afterwards. Otherwise (or with --loopback): "
            "an in-memory loopback pair."
        ),
    )
    demo.add_argument("--seconds", type=float, default=3.0, help="how long to pump (3)")
    demo.add_argument("--size", type=int, default=1514, help="frame size in bytes (1514)")
    demo.add_argument(
        "--loopback", action="store_true", help="use the in-memory loopback pair even as root"
    )
    sub.add_parser(
        "doctor",
        help="check this machine and process for TUN/TAP use (vnetio doctor --help)",
        add_help=False,
    )
    _add_hygiene_parsers(sub)
    from vnetio import _capture_cli

    _capture_cli.add_parsers(sub)
    return parser


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


def _add_hygiene_parsers(sub: Any) -> None:
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
        help="delete a TUN/TAP adapter",
        description=(
            "Delete a TUN/TAP adapter (never an interface of another kind). An adapter that a "
            "process holds open is refused unless --force is given."
        ),
    )
    delete.add_argument("name")
    delete.add_argument("--netns", metavar="NS", help="the adapter is in network namespace NS")
    delete.add_argument(
        "--force", action="store_true", help="delete it even if a process holds it open"
    )

    lister = sub.add_parser(
        "list",
        help="list TUN/TAP adapters, who holds them, which are orphaned",
        description=(
            "List every TUN/TAP adapter: mode, flags (sysfs tun_flags), owner and group, "
            "persistence, carrier, MTU, attached queues, the processes holding it open and "
            "whether it is orphaned (persistent, nobody attached). AGE is how long vnetio "
            "has known the adapter (since it created or first saw it): a lower bound."
        ),
    )
    lister.add_argument("--json", action="store_true", help="print a JSON list of objects")
    _add_scope(lister)

    clean = sub.add_parser(
        "cleanup",
        help="delete orphaned persistent TUN/TAP adapters",
        description=(
            "Delete orphaned persistent TUN/TAP adapters (persistent, no process attached). "
            "Never deletes an adapter that a process holds open or an interface of another "
            "kind; prints what it removed and what it kept, and why."
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vnetio`` console script."""
    args_in = sys.argv[1:] if argv is None else list(argv)
    # The doctor owns its options: hand it everything after the word "doctor".
    if args_in and args_in[0] == "doctor":
        doctor = importlib.import_module("vnetio._doctor")
        return int(doctor.main(args_in[1:]))
    parser = _build_parser()
    args = parser.parse_args(args_in)
    if args.command is None:
        parser.print_help()
        return 2
    core_error = _core_error()
    if core_error is not None:
        print(f"vnetio {args.command}: {core_error}", file=sys.stderr)
        print("vnetio doctor diagnoses this installation.", file=sys.stderr)
        return 1
    if args.command in _HYGIENE or args.command in _CAPTURE:
        return _run_subcommand(args, parser)
    if args.command == "demo":
        if not 60 <= args.size <= 1514:
            parser.error("--size must be between 60 and 1514 (an Ethernet frame at MTU 1500)")
        if args.seconds <= 0:
            parser.error("--seconds must be positive")
        try:
            return demo(seconds=args.seconds, size=args.size, loopback=args.loopback)
        except KeyboardInterrupt:
            print("\ninterrupted; adapters and namespace removed", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `vnetio demo | head`; cleanup has already run
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    parser.print_help()
    return 2


def _core_error() -> ImportError | None:
    """The Rust core problem ``import vnetio`` deferred for this command (None: all fine)."""
    from vnetio import _corecheck

    return _corecheck.core_error


# -- create / delete / list / cleanup ------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
        return exc.strerror
    if isinstance(exc, LookupError) and exc.args:  # KeyError would quote its message
        return str(exc.args[0])
    return str(exc)


def _failing(command: str, exc: BaseException) -> int:
    print(f"vnetio {command}: {type(exc).__name__}: {_error_text(exc)}", file=sys.stderr)
    return 1


def _cmd_create(args: argparse.Namespace) -> int:
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


def _cmd_delete(args: argparse.Namespace) -> int:
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


def _cmd_list(args: argparse.Namespace) -> int:
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
        print(f"no TUN/TAP adapters in {where}")
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
            f"{a.queues}" + (f"+{a.disabled_queues} disabled" if a.disabled_queues else ""),
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


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from vnetio import hygiene

    try:
        older = None if args.older_than is None else hygiene.parse_duration(args.older_than)
    except ValueError as exc:
        print(f"vnetio cleanup: --older-than: {exc}", file=sys.stderr)
        return 2
    try:
        result = hygiene.cleanup(
            dry_run=args.dry_run,
            older_than=older,
            netns=args.netns,
            all_namespaces=args.all_namespaces,
        )
    except (OSError, ValueError) as exc:
        return _failing("cleanup", exc)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _print_cleanup(result, args)
    return 1 if result.failed else 0


def _print_cleanup(result: CleanupResult, args: argparse.Namespace) -> None:
    verb = "would remove" if result.dry_run else "removed"
    entries = [(verb, e) for e in result.removed]
    entries += [("kept", e) for e in result.kept] + [("FAILED", e) for e in result.failed]
    width = max((len(v) for v, _ in entries), default=0)
    for what, entry in entries:
        print(f"{what.ljust(width)}  {entry.adapter.where}: {entry.reason}")
    where = "any namespace" if args.all_namespaces else _scope_text(args.netns)
    if not entries:
        print(f"no TUN/TAP adapters in {where}: nothing to do")
        return
    summary = f"{verb} {len(result.removed)}, kept {len(result.kept)}"
    if result.failed:
        summary += f", failed {len(result.failed)}"
    if result.dry_run:
        summary += " (dry run: nothing was deleted)"
    print(summary)


_CAPTURE = ("capture", "replay")


def _run_subcommand(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command in _HYGIENE:
        return _HYGIENE[args.command](args)
    from vnetio import _capture_cli

    run = _capture_cli.cmd_capture if args.command == "capture" else _capture_cli.cmd_replay
    return run(args, parser)


_HYGIENE = {
    "create": _cmd_create,
    "delete": _cmd_delete,
    "list": _cmd_list,
    "cleanup": _cmd_cleanup,
}


# -- the demo ------------------------------------------------------------------------------


@dataclass
class _Counters:
    written: int = 0
    write_errors: int = 0
    backpressure: int = 0  # QueueFullError from an in-memory queue (not a loss)
    delivered: int = 0  # our own frames
    foreign: int = 0  # anything else the reader saw
    delivered_bytes: int = 0
    samples: list[bytes] = field(default_factory=list)
    foreign_samples: list[bytes] = field(default_factory=list)
    error: BaseException | None = None


def demo(*, seconds: float = 3.0, size: int = 1514, loopback: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    from vnetio import _topology as topo

    out = sys.stdout
    if loopback:
        reason = "--loopback was given"
    else:
        ok, reason = topo.have_privileges()
        if ok:
            try:
                return _demo_tap(seconds, size, out)
            except (topo.TopologyError, PermissionError) as exc:
                reason = f"could not build the bridge loop ({exc})"
    print(f"vnetio demo: using an in-memory loopback pair because {reason}.", file=out)
    return _demo_loopback(seconds, size, out)


def _demo_tap(seconds: float, size: int, out: TextIO) -> int:
    from vnetio.loopback import KernelLoop

    with KernelLoop(purpose="demo") as loop:
        print(
            f"vnetio demo: TAP {loop.a.name} -> bridge -> TAP {loop.b.name} in network "
            f"namespace {loop.netns}, {size}-byte frames, {seconds:g} s",
            file=out,
        )
        before = loop.kernel_counters("b")
        counters = _pump(loop.a, loop.b, seconds, size, out)
        after = loop.kernel_counters("b")
    dropped = after["tx_dropped"] - before["tx_dropped"]
    extra = f"; the kernel dropped {dropped:,} at the receiving TAP (its queue was full)"
    return _report(counters, seconds, size, out, extra)


def _demo_loopback(seconds: float, size: int, out: TextIO) -> int:
    import vnetio

    # overflow="error": a full queue pushes back on the writer (QueueFullError) instead of
    # dropping, so the rate shown is what the reader keeps up with.
    a, b = vnetio.loopback_pair(capacity=4096, overflow="error")
    with a, b:
        print(
            f"vnetio demo: loopback pair (capacity {a.capacity} frames, the writer waits when "
            f"it is full), {size}-byte frames, {seconds:g} s",
            file=out,
        )
        counters = _pump(a, b, seconds, size, out)
    extra = f"; the writer found the queue full {counters.backpressure:,} times and waited"
    return _report(counters, seconds, size, out, extra)


def _pump(a: Any, b: Any, seconds: float, size: int, out: TextIO) -> _Counters:
    """Writer thread: a.send_batch; reader thread: b.recv_batch; main thread: the rate line."""
    pump = _Pump(a, b, size)
    threads = [
        threading.Thread(target=pump.reader, name="vnetio-demo-reader", daemon=True),
        threading.Thread(target=pump.writer, name="vnetio-demo-writer", daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        _live(pump.counters, seconds, size, out)
    finally:
        pump.stop.set()
        for t in threads:
            t.join(timeout=5)
    return pump.counters


class _Pump:
    def __init__(self, a: Any, b: Any, size: int) -> None:
        import vnetio
        from vnetio import _topology as topo

        self.a, self.b, self.size = a, b, size
        self.sig = topo.frame_signature()
        self.batch = vnetio.Batch.from_frames(topo.build_frame(size, seq=i) for i in range(BATCH))
        self.count_own = topo.count_own_frames
        self.counters = _Counters()
        self.stop = threading.Event()
        self.writer_done = threading.Event()

    def writer(self) -> None:
        from vnetio import QueueFullError

        c, send, batch = self.counters, self.a.send_batch, self.batch
        try:
            while not self.stop.is_set():
                try:
                    c.written += send(batch)
                except QueueFullError as exc:  # loopback: wait for the reader, then go on
                    c.written += exc.sent
                    c.backpressure += 1
                    time.sleep(0.0002)
                except OSError as exc:
                    c.written += int(getattr(exc, "sent", 0) or 0)
                    c.write_errors += 1
                    if c.write_errors > 100:
                        raise
        except Exception as exc:  # noqa: BLE001 - reported by _report
            c.error = exc
        finally:
            self.writer_done.set()

    def reader(self) -> None:
        c, recv, size, sig = self.counters, self.b.recv_batch, self.size, self.sig
        try:
            while True:
                finished = self.writer_done.is_set()
                try:
                    got = recv(BATCH, timeout=0 if finished else 0.1)
                except TimeoutError:
                    got = None
                if not got:
                    if finished:  # the writer had stopped and the queue is empty
                        return
                    continue
                own = self.count_own(got, size, sig)
                c.delivered += own
                c.delivered_bytes += own * size
                c.foreign += len(got) - own
                if len(c.samples) < SAMPLES or (own < len(got) and len(c.foreign_samples) < 2):
                    _keep_samples(got, size, sig, c)
        except Exception as exc:  # noqa: BLE001 - reported by _report
            c.error = exc


def _keep_samples(got: Any, size: int, sig: bytes, c: _Counters) -> None:
    for f in got:
        raw = bytes(f)
        if len(raw) == size and raw[6:14] == sig:
            if len(c.samples) < SAMPLES:
                c.samples.append(raw)
        elif len(c.foreign_samples) < 2:
            c.foreign_samples.append(raw)


def _live(c: _Counters, seconds: float, size: int, out: TextIO) -> None:
    """Show the rate: a carriage-return line ~4x/s on a terminal, else a line per second."""
    tty = out.isatty()
    interval = 0.25 if tty else 1.0
    start = last_t = time.monotonic()
    last_n = 0
    for now in _ticks(start, seconds, interval):
        n = c.delivered
        dt = now - last_t
        rate = (n - last_n) / dt if dt > 0 else 0.0
        last_t, last_n = now, n
        written = c.written
        loss = 1 - n / written if written else 0.0
        line = (
            f"{now - start:5.2f} s  {_human(rate)} frames/s  {rate * size * 8 / 1e9:6.2f} Gbit/s  "
            f"loss {max(loss, 0.0) * 100:5.2f}%  delivered {n:,} of {written:,}"
        )
        if tty:
            out.write("\r" + line + "\x1b[K")
        else:
            out.write(line + "\n")
        out.flush()
        if c.error is not None:
            break
    if tty:
        out.write("\n")


def _ticks(start: float, seconds: float, interval: float) -> Iterator[float]:
    """Yield the time every ``interval`` seconds, and once more at the end (no later)."""
    end = start + seconds
    while True:
        time.sleep(max(0.0, min(interval, end - time.monotonic())))
        now = time.monotonic()
        yield now
        if now >= end:
            return


def _human(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:6.2f} M"
    return f"{rate / 1e3:6.1f} k"


def _report(c: _Counters, seconds: float, size: int, out: TextIO, extra: str) -> int:
    from vnetio import _topology as topo

    if c.error is not None:
        print(f"vnetio demo: failed: {type(c.error).__name__}: {c.error}", file=out)
        return 1
    loss = 1 - c.delivered / c.written if c.written else 0.0
    print(
        f"sent {c.written:,} frames, received {c.delivered:,} "
        f"({c.delivered / seconds:,.0f} frames/s, {c.delivered_bytes * 8 / seconds / 1e9:.2f} "
        f"Gbit/s), loss {loss * 100:.2f}%{extra}",
        file=out,
    )
    if c.foreign:
        print(f"also received {c.foreign:,} frames that were not ours", file=out)
    if c.samples:
        print("first frames received:", file=out)
        for raw in c.samples:
            print("  " + topo.decode_frame(raw), file=out)
    for raw in c.foreign_samples:
        print("  not ours: " + topo.decode_frame(raw), file=out)
    if c.delivered == 0:
        print("vnetio demo: no frame arrived", file=out)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
