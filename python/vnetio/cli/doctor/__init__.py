"""``vnetio doctor``: check that this machine and process can use vnetio's adapters.

The checks live in two modules that share :mod:`.common` (the :class:`Finding` type, the
seams through which they read the system, the wording of fixes) and nothing else:
:mod:`.machine` (package versions, ``/dev/net/tun``, kernel TUN features, CAP_NET_ADMIN,
network namespaces, sysfs) and :mod:`.adapters` (every TUN/TAP adapter of the namespaces
asked for, and the kernel's offload support). This module runs them: a check that fails,
or even crashes, never stops the others. ``docs/troubleshooting.md`` describes every
finding.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import textwrap
import traceback
from collections.abc import Callable

from vnetio.cli.doctor import adapters as adapter_checks
from vnetio.cli.doctor.adapters import check_offload
from vnetio.cli.doctor.common import Finding, Status
from vnetio.cli.doctor.machine import (
    check_capabilities,
    check_netns,
    check_sysfs,
    check_tun_device,
    check_tun_features,
    check_versions,
)

__all__ = ["CHECKS", "Finding", "Status", "exit_status", "format_text", "main", "run_checks"]

CHECKS: tuple[tuple[str, Callable[[], list[Finding]]], ...] = (
    ("versions", check_versions),
    ("tun-node", check_tun_device),
    ("tun-features", check_tun_features),
    ("offload", check_offload),
    ("cap-net-admin", check_capabilities),
    ("netns", check_netns),
    ("sysfs", check_sysfs),
)


def _guarded(
    check_id: str, check: Callable[[], list[Finding]], **where: str | None
) -> list[Finding]:
    """Run one check; if it raises, a ``warn`` finding says so and the others still run."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return [
            Finding(
                check_id,
                "warn",
                f"check '{check_id}' could not run: {type(exc).__name__}: {exc}",
                traceback.format_exc(),
                "report this as a vnetio bug, with the output of 'vnetio doctor --json'",
                **where,
            )
        ]


def check_namespaces(netns: list[str] | None, all_namespaces: bool) -> list[Finding]:
    """The adapter checks of every namespace asked for (see :mod:`.adapters`)."""
    targets, problems = adapter_checks.target_namespaces(netns, all_namespaces)
    found = list(problems)
    cred = adapter_checks._cred()
    for ns in targets:
        found += _guarded(
            "adapters", functools.partial(adapter_checks.check_adapters, ns, cred), netns=ns
        )
    return found


def run_checks(netns: list[str] | None = None, *, all_namespaces: bool = False) -> list[Finding]:
    """Run every check: the machine's (``CHECKS``), then the adapters of each namespace asked
    for (``netns``: those named; ``all_namespaces``: this one and every one in ``ip netns
    list``; neither: this process's namespace). A check that raises becomes a ``warn``
    finding and the others still run."""
    findings: list[Finding] = []
    for check_id, check in CHECKS:
        findings += _guarded(check_id, check)
    findings += _guarded("adapters", lambda: check_namespaces(netns, all_namespaces))
    return findings


_TAGS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def format_text(findings: list[Finding], *, verbose: bool = False) -> str:
    """One ``[ok|warn|FAIL] summary`` line per finding, then the fix (and detail if verbose)."""
    lines = []
    for finding in findings:
        lines.append(f"[{_TAGS[finding.status]}] {finding.summary}")
        if verbose and finding.detail:
            for line in finding.detail.rstrip().splitlines():
                lines.append(
                    textwrap.fill(line, 100, initial_indent="    ", subsequent_indent="    ")
                )
        if finding.status != "ok" and finding.fix:
            lines.append(f"    fix: {finding.fix}")
    return "\n".join(lines)


def exit_status(findings: list[Finding], *, strict: bool = False) -> int:
    """1 when a finding is ``fail`` (or, with ``strict``, ``warn``), else 0."""
    bad = ("fail", "warn") if strict else ("fail",)
    return 1 if any(f.status in bad for f in findings) else 0


def main(argv: list[str]) -> int:
    """Entry point of ``vnetio doctor``; returns 1 when any finding is ``fail`` (with
    ``--strict``: also ``warn``), else 0."""
    parser = argparse.ArgumentParser(
        prog="vnetio doctor",
        description=(
            "Check that this machine and process can use vnetio's TUN/TAP adapters, and that "
            "no adapter will surprise its next user. Exit status 1 when a finding is FAIL "
            "(something is broken), else 0; warnings have fixes but do not fail the run "
            "unless --strict is given."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print the findings as a JSON list of objects"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print each finding's detail"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--netns",
        action="append",
        metavar="NS",
        help="examine the adapters of network namespace NS (from 'ip netns list') instead of "
        "this process's; may be repeated",
    )
    where.add_argument(
        "--all-namespaces",
        action="store_true",
        help="examine the adapters of this namespace and of every one 'ip netns list' shows",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too, not only on failures"
    )
    args = parser.parse_args(argv)
    findings = run_checks(args.netns, all_namespaces=args.all_namespaces)
    if args.json:
        print(json.dumps([dataclasses.asdict(f) for f in findings], indent=2))
    else:
        print(format_text(findings, verbose=args.verbose))
    return exit_status(findings, strict=args.strict)
