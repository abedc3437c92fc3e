"""What both halves of ``vnetio doctor`` share: the :class:`Finding` they return, the seams
through which both read the system, and the helpers that word a fix.

The machine checks (:mod:`.machine`) and the adapter checks (:mod:`.adapters`) import this
module and nothing of each other. They call the seams below as ``common.which(...)`` (never a
copy imported by name), so a test fakes each of them in one place.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import Literal

from vnetio import _corecheck

__all__ = [
    "CAP_NET_ADMIN",
    "NETNS_RUN_DIR",
    "NETNS_SELF",
    "PROC_STATUS",
    "Finding",
    "Status",
    "as_root",
    "cap_mask",
    "geteuid",
    "read_text",
    "reinstall_fix",
    "source_checkout",
    "which",
]

Status = Literal["ok", "warn", "fail"]

# Paths both halves read; module attributes so tests can point them at fixtures.
PROC_STATUS = "/proc/self/status"
NETNS_SELF = "/proc/self/ns/net"
NETNS_RUN_DIR = "/run/netns"

CAP_NET_ADMIN = 12  # bit number in the CapEff/CapBnd masks (linux/capability.h)


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One result of ``vnetio doctor``.

    Attributes:
        check: Stable identifier of what was checked (e.g. ``"tun-mode"``).
        status: ``"ok"``, ``"warn"`` (vnetio works, with limits) or ``"fail"`` (broken).
        summary: One line for the user.
        detail: Longer explanation; may be empty.
        fix: The exact command or action that fixes a non-ok finding, else None.
        adapter: The adapter (or bridge port) the finding is about, else None.
        netns: The named network namespace it is in; None for this process's namespace (and
            for findings about the machine rather than an adapter).
    """

    check: str
    status: Status
    summary: str
    detail: str = ""
    fix: str | None = None
    adapter: str | None = None
    netns: str | None = None


# --- seams shared by both halves -------------------------------------------------------------


def read_text(path: str) -> str:
    return Path(path).read_text()


def geteuid() -> int:
    return os.geteuid()


def which(name: str) -> str | None:
    # Debian keeps `ip` in /usr/sbin, which is not on an ordinary user's PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def source_checkout() -> Path | None:
    """The repository root when vnetio runs from a source checkout (``make build``)."""
    return _corecheck.source_checkout()


# --- wording fixes ---------------------------------------------------------------------------


def as_root(command: str) -> str:
    """``command`` as this user must type it: with ``sudo`` unless already root."""
    return command if geteuid() == 0 else f"sudo {command}"


def reinstall_fix() -> str:
    """The command that puts a matching Rust core and Python package in place."""
    return _corecheck.reinstall_command(source_checkout())


def cap_mask(status_text: str, field: str) -> int | None:
    """The capability mask ``field`` (CapEff, CapBnd, …) of a /proc/PID/status text."""
    match = re.search(rf"^{field}:\s*([0-9a-fA-F]+)\s*$", status_text, re.MULTILINE)
    return int(match.group(1), 16) if match else None
