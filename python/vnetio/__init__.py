"""vnetio: high-speed packet I/O through Linux TUN/TAP adapters.

>>> import vnetio
>>> a, b = vnetio.loopback_pair()
>>> a.send(b"\\x02" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + b"\\x88\\xb5" + bytes(46))
>>> len(b.recv(timeout=1.0))
60
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

from .exceptions import AdapterClosedError, QueueFullError, VnetError

__all__ = [
    "Adapter",
    "AdapterClosedError",
    "AdapterInfo",
    "Batch",
    "CleanupEntry",
    "CleanupResult",
    "EchoResponder",
    "Holder",
    "KernelLoop",
    "Loopback",
    "Queue",
    "QueueFullError",
    "Stats",
    "Tap",
    "Tun",
    "VnetError",
    "__version__",
    "cleanup",
    "create_adapter",
    "delete_adapter",
    "list_adapters",
    "loopback_pair",
    "parse_duration",
    "tun_features",
    "validate_ifname",
]

#: The core ABI this Python layer was written against (see ``src/lib.rs``).
EXPECTED_ABI = 1

#: Set only while the ``vnetio`` command runs with a Rust core that is missing or does not
#: match: the ImportError that any other program gets at once. The command still runs
#: ``doctor``, ``--version`` and ``--help``, and reports this error for everything else.
_CORE_ERROR: ImportError | None = None


def _normalize_version(version: str) -> tuple[str, str]:
    """(release, pre-release) comparable across Cargo (``0.2.0-alpha.1``) and PEP 440
    (``0.2.0a1``, what maturin makes of it)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)*)(.*)", version.strip())
    if match is None:
        return version.strip(), ""
    pre = match.group(2).lower().replace("alpha", "a").replace("beta", "b")
    return match.group(1), re.sub(r"[-._]", "", pre)


def _fix_command() -> str:
    """The command that puts a matching core and package in place."""
    root = Path(__file__).resolve().parents[2]
    if (root / "Cargo.toml").is_file() and (root / "Makefile").is_file():
        return f"`make -C {root} build` (this is a source checkout)"
    return "`pip install --force-reinstall vnetio`"


def _package_version() -> str | None:
    try:
        return _dist_version("vnetio")
    except PackageNotFoundError:  # running from a source tree without metadata
        return None


def _check_core() -> str:
    """Refuse to run with a Rust core built from other sources than this package.

    Returns the package version; raises ImportError naming both versions and the fix.
    """
    try:
        from . import _core
    except ImportError as exc:
        raise ImportError(
            f"vnetio's Rust core (vnetio._core) cannot be imported: {exc}. Build or reinstall "
            f"it: {_fix_command()}; `vnetio doctor` shows what else is wrong."
        ) from exc
    core_version = str(getattr(_core, "__version__", "unknown"))
    core_abi = getattr(_core, "ABI_VERSION", None)
    package = _package_version() or core_version
    if core_abi != EXPECTED_ABI or _normalize_version(core_version) != _normalize_version(package):
        raise ImportError(
            f"vnetio's Rust core does not match its Python package: core {core_version} "
            f"(ABI {core_abi}) at {getattr(_core, '__file__', '?')} vs package {package} "
            f"(ABI {EXPECTED_ABI}). Rebuild or reinstall so both come from one source: "
            f"{_fix_command()}."
        )
    return package


def _running_as_cli() -> bool:
    """True when this process is the ``vnetio`` command: the console script, ``python -m
    vnetio.cli`` or ``python -m vnetio._doctor``.

    The command must start with a broken core so that ``vnetio doctor`` can diagnose it and
    ``--version``/``--help`` still answer; ``cli.main`` raises the deferred error for every
    other subcommand.
    """
    argv = list(getattr(sys, "orig_argv", sys.argv))
    i = 1
    while i < len(argv):  # the interpreter's own options, up to the script or -m/-c
        arg = argv[i]
        if arg.startswith("-m"):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            return module in ("vnetio.cli", "vnetio._doctor")
        if arg.startswith("-c") or arg == "-":
            return False
        if arg in ("-X", "-W"):
            i += 2
            continue
        if not arg.startswith("-"):
            break
        i += 1
    return i < len(argv) and os.path.basename(argv[i]) == "vnetio"


def _deferred_getattr(name: str) -> object:
    """Module ``__getattr__`` while the check is deferred: core-backed names raise it."""
    if name in __all__ and _CORE_ERROR is not None:
        raise _CORE_ERROR
    raise AttributeError(f"module 'vnetio' has no attribute {name!r}")


try:
    __version__ = _check_core()
except ImportError as _exc:
    if not _running_as_cli():
        raise
    _CORE_ERROR = _exc
    __version__ = _package_version() or "unknown"
    globals()["__getattr__"] = _deferred_getattr
else:
    # Submodules that are part of the API (none of them imports scapy).
    from . import aio as aio
    from . import capture as capture
    from . import checksum as checksum
    from . import inspect as inspect
    from . import kernel_loop as kernel_loop
    from . import loopback as loopback
    from . import responder as responder
    from ._core import (
        Adapter,
        Batch,
        Loopback,
        Queue,
        Stats,
        Tap,
        Tun,
        loopback_pair,
        tun_features,
        validate_ifname,
    )
    from .hygiene import (
        AdapterInfo,
        CleanupEntry,
        CleanupResult,
        Holder,
        cleanup,
        create_adapter,
        delete_adapter,
        list_adapters,
        parse_duration,
    )
    from .kernel_loop import KernelLoop
    from .responder import EchoResponder
