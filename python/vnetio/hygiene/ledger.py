"""Adapter hygiene: the age ledger, a lower bound on when each adapter was created
(the kernel records no creation time)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from .model import AdapterInfo
from .scan import _named_namespaces, _named_ns, _Ns, _own_ns

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
