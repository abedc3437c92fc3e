"""The ``vnetio`` command: the argument parser and ``main``; each subcommand has its module.

=====================================  ==================================================
subcommand                             module
=====================================  ==================================================
``demo``                               :mod:`vnetio.cli.demo`
``create``, ``delete``, ``list``,      :mod:`vnetio.cli.adapters` (over ``vnetio.hygiene``)
``cleanup``
``capture``, ``replay``                :mod:`vnetio.cli.capture`
``doctor``                             :mod:`vnetio.cli.doctor` (owns its own options)
``serial pair``, ``slip attach``       :mod:`vnetio.cli.serial`
=====================================  ==================================================

Heavy imports (the extension, the doctor) happen inside the subcommands, so ``--version``
and ``doctor`` keep working when something is wrong with the extension: ``import vnetio``
defers its core check while it runs as this command (see ``vnetio._corecheck``), and
``main`` reports the deferred error for every other subcommand. The library never imports
this package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from vnetio.cli import adapters, capture, demo, serial, wg

__all__ = ["main"]

#: What runs each subcommand but ``doctor`` (which ``main`` hands its arguments untouched).
_COMMANDS: dict[str, Callable[[argparse.Namespace, argparse.ArgumentParser], int]] = {
    **demo.COMMANDS,
    **adapters.COMMANDS,
    **capture.COMMANDS,
    **serial.COMMANDS,
    **wg.COMMANDS,
}


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
    demo.add_parsers(sub)
    sub.add_parser(
        "doctor",
        help="check this machine and process for TUN/TAP use (vnetio doctor --help)",
        add_help=False,
    )
    adapters.add_parsers(sub)
    capture.add_parsers(sub)
    serial.add_parsers(sub)
    wg.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vnetio`` console script."""
    args_in = sys.argv[1:] if argv is None else list(argv)
    # The doctor owns its options: hand it everything after the word "doctor".
    if args_in and args_in[0] == "doctor":
        doctor = importlib.import_module("vnetio.cli.doctor")
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
    run = _COMMANDS.get(args.command)
    if run is None:
        parser.print_help()
        return 2
    return run(args, parser)


def _core_error() -> ImportError | None:
    """The Rust core problem ``import vnetio`` deferred for this command (None: all fine)."""
    from vnetio import _corecheck

    return _corecheck.core_error
