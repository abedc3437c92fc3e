"""Adapter hygiene: kernel queues a capture raised and never put back.

A capture raises its adapter's kernel queue (txqueuelen) for as long as it runs and puts
the old length back at the end (:func:`vnetio.capture.raised_queue`). A process killed in
between (SIGKILL, the OOM killer, a power cut of the container) cannot: the adapter keeps
the raised queue, a persistent one for good, and every later reader of it gets a queue
8 times longer than it asked for (and that much more latency under load).

So the raise is recorded *before* it is made, in the ledger directory (see
:mod:`vnetio.hygiene`): ``queues/<namespace>/<ifindex>-<name>``, a small JSON file with the
original length, the raised one and the process (PID and start time, so a reused PID is
not taken for the capture). The record is removed once the queue is back. A record whose
process is gone, on an adapter that still has the raised length, is a queue left raised:
``vnetio doctor`` names it (``adapter-queue-raised``) and ``vnetio cleanup`` puts the
recorded length back (:func:`restore_queues`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .ledger import _ledger_dir
from .scan import _ip_binary, _named_namespaces, _named_ns, _Ns, _own_ns, _scope

__all__ = ["QueueRestore", "RaisedQueue", "raised_queues", "restore_queues"]


@dataclass(frozen=True, slots=True)
class RaisedQueue:
    """A recorded raise of an adapter's kernel queue.

    Attributes:
        name, netns, ifindex: The adapter (``netns`` None: the caller's namespace).
        original: Its queue length before the raise.
        raised: The length it was raised to.
        pid: The process that raised it.
        owner_alive: Whether that process still runs (then the raise is in use).
        current: The adapter's queue length now; None when the adapter is gone.
        since: Epoch seconds of the raise.
    """

    name: str
    netns: str | None
    ifindex: int
    original: int
    raised: int
    pid: int
    owner_alive: bool
    current: int | None
    since: float
    path: Path

    @property
    def left_raised(self) -> bool:
        """Its process is gone and the adapter still has the raised length."""
        return not self.owner_alive and self.current == self.raised

    @property
    def where(self) -> str:
        return self.name if self.netns is None else f"{self.name} (netns {self.netns})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "netns": self.netns,
            "ifindex": self.ifindex,
            "original": self.original,
            "raised": self.raised,
            "pid": self.pid,
            "owner_alive": self.owner_alive,
            "current": self.current,
            "since": self.since,
        }


@dataclass(frozen=True, slots=True)
class QueueRestore:
    """What :func:`restore_queues` did with one record: ``action`` is ``"restored"`` (or
    would be, in a dry run), ``"forgotten"`` (nothing left to restore) or ``"failed"``."""

    queue: RaisedQueue
    action: Literal["restored", "forgotten", "failed"]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.queue.as_dict(), "action": self.action, "reason": self.reason}


# --- the records ---------------------------------------------------------------------------


def _base(root: Path) -> Path:
    return root / "queues"


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def record_raise(
    name: str, netns: str | None, ifindex: int, original: int, raised: int
) -> Path | None:
    """Record that this process is about to raise ``name``'s queue from ``original`` to
    ``raised``; the path to hand to :func:`forget_raise`, or None when nothing could be
    recorded (no ledger directory: the capture goes on, unrecorded)."""
    root = _ledger_dir()
    if root is None:
        return None
    try:
        ns = _own_ns() if netns is None else _named_ns(netns)
        path = _base(root) / ns.ledger_key / f"{ifindex}-{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "name": name,
            "netns": netns,
            "ifindex": ifindex,
            "original": original,
            "raised": raised,
            "pid": os.getpid(),
            "start": _start_time(os.getpid()),
            "since": time.time(),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def forget_raise(path: Path | None) -> None:
    """Remove a record (the queue is back, or there is nothing left to put back)."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # fails, as it should, while other records remain


def _read(path: Path, current: dict[tuple[int, str], int]) -> RaisedQueue | None:
    try:
        data = json.loads(path.read_text())
        pid, start = int(data["pid"]), data.get("start")
        ifindex, name = int(data["ifindex"]), str(data["name"])
        original, raised = int(data["original"]), int(data["raised"])
        netns, since = data.get("netns"), float(data.get("since", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = _start_time(pid)
    alive = now is not None and (start is None or now == start)
    return RaisedQueue(
        name=name,
        netns=None if netns is None else str(netns),
        ifindex=ifindex,
        original=original,
        raised=raised,
        pid=pid,
        owner_alive=alive,
        current=current.get((ifindex, name)),
        since=since,
        path=path,
    )


def _queue_lengths(ns: _Ns) -> dict[tuple[int, str], int]:
    """{(ifindex, name): txqueuelen} of the interfaces of ``ns`` (rtnetlink)."""
    from .. import _core

    return {
        (int(link["ifindex"]), str(link["name"])): int(link["txqlen"])
        for link in _core.list_links(ns.name)
    }


def raised_queues(netns: str | None = None, all_namespaces: bool = False) -> list[RaisedQueue]:
    """Every recorded raise in the namespace(s): ``netns`` (None: the caller's), or this one
    and every named one with ``all_namespaces``. See :attr:`RaisedQueue.left_raised`."""
    root = _ledger_dir()
    if root is None:
        return []
    found: list[RaisedQueue] = []
    for ns in _scope(netns, all_namespaces):
        directory = _base(root) / ns.ledger_key
        try:
            entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
        except OSError:
            continue
        try:
            lengths = _queue_lengths(ns)
        except (OSError, ValueError):  # cannot be read now: judge nothing in it
            continue
        for path in entries:
            queue = _read(path, lengths)
            if queue is not None:
                found.append(queue)
    return found


def _set_queue_length(queue: RaisedQueue) -> None:
    """``ip link set dev NAME txqueuelen N`` in the adapter's namespace (no need to attach
    to the adapter, which another process may hold by now)."""
    ip = _ip_binary()
    if ip is None:
        raise OSError("iproute2 ('ip') is not installed")
    where = [] if queue.netns is None else ["-n", queue.netns]
    argv = [ip, *where, "link", "set", "dev", queue.name, "txqueuelen", str(queue.original)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise OSError(proc.stderr.strip() or f"{' '.join(argv)} exited {proc.returncode}")


def _prune_namespaces(root: Path) -> None:
    """Forget the records of named namespaces that no longer exist."""
    live = set()
    for name in _named_namespaces():
        with contextlib.suppress(OSError):
            live.add(_named_ns(name).ledger_key)
    with contextlib.suppress(OSError):
        for directory in _base(root).iterdir():
            if directory.name.startswith("netns-") and directory.name not in live:
                shutil.rmtree(directory, ignore_errors=True)


def restore_queues(
    dry_run: bool = False, netns: str | None = None, all_namespaces: bool = False
) -> list[QueueRestore]:
    """Put back the queue lengths that captures killed before their end left raised, and
    forget records with nothing left to restore (the adapter is gone, or its queue was
    changed since). Raises by processes still running are left alone."""
    done: list[QueueRestore] = []
    for queue in raised_queues(netns, all_namespaces):
        if queue.owner_alive:
            continue
        if not queue.left_raised:
            why = (
                "the adapter is gone"
                if queue.current is None
                else f"its queue was changed to {queue.current} since"
            )
            if not dry_run:
                forget_raise(queue.path)
            done.append(QueueRestore(queue, "forgotten", why))
            continue
        reason = (
            f"queue {queue.raised} -> {queue.original}: raised by PID {queue.pid}, which ended "
            "without putting it back"
        )
        if dry_run:
            done.append(QueueRestore(queue, "restored", reason))
            continue
        try:
            _set_queue_length(queue)
        except (OSError, subprocess.SubprocessError) as exc:
            done.append(QueueRestore(queue, "failed", f"{reason}; {exc}"))
            continue
        forget_raise(queue.path)
        done.append(QueueRestore(queue, "restored", reason))
    root = _ledger_dir()
    if root is not None and not dry_run:
        _prune_namespaces(root)
    return done
