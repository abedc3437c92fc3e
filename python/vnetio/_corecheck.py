"""``import vnetio`` refuses a Rust core from another build; the ``vnetio`` command defers that.

The Python package and its extension (``vnetio._core``) must come from one source:
:func:`check_core` compares their versions and ABI numbers and raises an ImportError that
names both and the fix. While the process is the ``vnetio`` command (:func:`running_as_cli`)
the error is kept in :data:`core_error` instead, so ``vnetio doctor``, ``--version`` and
``--help`` still run; ``vnetio.cli.main`` reports it for every other subcommand.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Collection
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

__all__ = [
    "EXPECTED_ABI",
    "check_core",
    "core_error",
    "deferred_getattr",
    "fix_command",
    "normalize_version",
    "package_version",
    "reinstall_command",
    "running_as_cli",
    "source_checkout",
]

#: The core ABI this Python layer was written against (see ``src/lib.rs``).
EXPECTED_ABI = 1

#: Set only while the ``vnetio`` command runs with a Rust core that is missing or does not
#: match: the ImportError that any other program gets at once (see :func:`check_core`).
core_error: ImportError | None = None

#: ``python -m`` modules that are the ``vnetio`` command (``vnetio._doctor`` runs the doctor).
CLI_MODULES = ("vnetio.cli", "vnetio._doctor")


def normalize_version(version: str) -> tuple[str, str]:
    """(release, pre-release) comparable across Cargo (``0.2.0-alpha.1``) and PEP 440
    (``0.2.0a1``, what maturin makes of it)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)*)(.*)", version.strip())
    if match is None:
        return version.strip(), ""
    pre = match.group(2).lower().replace("alpha", "a").replace("beta", "b")
    return match.group(1), re.sub(r"[-._]", "", pre)


def source_checkout() -> Path | None:
    """The repository root when vnetio runs from a source checkout (``make build``)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "Cargo.toml").is_file() and (root / "Makefile").is_file():
        return root
    return None


def reinstall_command(root: Path | None) -> str:
    """The command that rebuilds the source checkout ``root``, or reinstalls vnetio (None)."""
    if root is not None:
        return f"make -C {root} build"
    return "pip install --force-reinstall vnetio"


def fix_command() -> str:
    """The command that puts a matching core and package in place, for an ImportError."""
    root = source_checkout()
    checkout = "" if root is None else " (this is a source checkout)"
    return f"`{reinstall_command(root)}`{checkout}"


def package_version() -> str | None:
    """The installed distribution's version; None when running from a source tree without
    metadata."""
    try:
        return _dist_version("vnetio")
    except PackageNotFoundError:
        return None


def _verified_core_version() -> str:
    """The package version, after checking that the Rust core matches it (ImportError if not)."""
    try:
        from . import _core
    except ImportError as exc:
        raise ImportError(
            f"vnetio's Rust core (vnetio._core) cannot be imported: {exc}. Build or reinstall "
            f"it: {fix_command()}; `vnetio doctor` shows what else is wrong."
        ) from exc
    core_version = str(getattr(_core, "__version__", "unknown"))
    core_abi = getattr(_core, "ABI_VERSION", None)
    package = package_version() or core_version
    if core_abi != EXPECTED_ABI or normalize_version(core_version) != normalize_version(package):
        raise ImportError(
            f"vnetio's Rust core does not match its Python package: core {core_version} "
            f"(ABI {core_abi}) at {getattr(_core, '__file__', '?')} vs package {package} "
            f"(ABI {EXPECTED_ABI}). Rebuild or reinstall so both come from one source: "
            f"{fix_command()}."
        )
    return package


def check_core() -> str:
    """Refuse to run with a Rust core built from other sources than this package.

    Returns the package version. On a mismatch (or a missing core) raises ImportError naming
    both versions and the fix, except while this process is the ``vnetio`` command: then the
    error is kept in :data:`core_error` and the version is returned all the same.
    """
    global core_error
    try:
        return _verified_core_version()
    except ImportError as exc:
        if not running_as_cli():
            raise
        core_error = exc
        return package_version() or "unknown"


def running_as_cli() -> bool:
    """True when this process is the ``vnetio`` command: the console script, ``python -m
    vnetio.cli`` or ``python -m vnetio._doctor``.

    The command must start with a broken core so that ``vnetio doctor`` can diagnose it and
    ``--version``/``--help`` still answer; ``vnetio.cli.main`` raises the deferred error for
    every other subcommand.
    """
    argv = list(getattr(sys, "orig_argv", sys.argv))
    i = 1
    while i < len(argv):  # the interpreter's own options, up to the script or -m/-c
        arg = argv[i]
        if arg.startswith("-m"):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            return module in CLI_MODULES
        if arg.startswith("-c") or arg == "-":
            return False
        if arg in ("-X", "-W"):
            i += 2
            continue
        if not arg.startswith("-"):
            break
        i += 1
    return i < len(argv) and os.path.basename(argv[i]) == "vnetio"


def deferred_getattr(core_names: Collection[str], error: ImportError) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``vnetio`` while the check is deferred: the names that
    need the core raise ``error``, the rest are plain missing attributes."""

    def __getattr__(name: str) -> object:
        if name in core_names:
            raise error
        raise AttributeError(f"module 'vnetio' has no attribute {name!r}")

    return __getattr__
