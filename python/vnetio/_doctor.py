"""``vnetio doctor``: check that this machine and process can use vnetio's adapters.

Each check looks at one thing (package versions, the ``/dev/net/tun`` node, kernel TUN
features, CAP_NET_ADMIN, network namespaces, sysfs) and returns :class:`Finding` objects
that say what is wrong and the command that fixes it. Checks are independent: a check that
fails, or even crashes, never stops the others. ``docs/troubleshooting.md`` describes every
finding.

The module imports the Rust extension lazily, inside the checks, so the doctor still runs
(and says why) when the extension is missing or was built from other sources.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Literal

from vnetio._corecheck import EXPECTED_ABI, normalize_version

__all__ = ["Finding", "main", "run_checks"]

Status = Literal["ok", "warn", "fail"]

# Paths the checks read; module attributes so tests can point them at fixtures.
TUN_PATH = "/dev/net/tun"
TUN_MAJOR, TUN_MINOR = 10, 200
PROC_STATUS = "/proc/self/status"
NETNS_SELF = "/proc/self/ns/net"
NETNS_RUN_DIR = "/run/netns"
SYS_CLASS_NET = "/sys/class/net"
SYS_MISC_TUN_DEV = "/sys/class/misc/tun/dev"

CAP_NET_ADMIN = 12  # bit number in the CapEff/CapBnd masks (linux/capability.h)

UDEV_RULE = "/etc/udev/rules.d/60-vnetio-tun.rules"


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


# --- seams: everything a check reads from the system goes through these --------------------


def _import_core() -> ModuleType:
    return importlib.import_module("vnetio._core")


def _package_version() -> str:
    return importlib.metadata.version("vnetio")


def _read_text(path: str) -> str:
    return Path(path).read_text()


def _stat(path: str) -> os.stat_result:
    return os.stat(path)


def _probe_open(path: str) -> None:
    """Open ``path`` read-write and close it again; raises OSError when that fails."""
    os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK)


def _geteuid() -> int:
    return os.geteuid()


def _which(name: str) -> str | None:
    # Debian keeps `ip` in /usr/sbin, which is not on an ordinary user's PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


def _source_checkout() -> Path | None:
    """The repository root when vnetio runs from a source checkout (``make build``)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "Cargo.toml").is_file() and (root / "Makefile").is_file():
        return root
    return None


def _as_root(command: str) -> str:
    return command if _geteuid() == 0 else f"sudo {command}"


def _reinstall_fix() -> str:
    root = _source_checkout()
    if root is not None:
        return f"make -C {root} build"
    return "pip install --force-reinstall vnetio"


# --- checks ---------------------------------------------------------------------------------


def check_versions() -> list[Finding]:
    """The Python package and the Rust core come from the same build."""
    fix = _reinstall_fix()
    try:
        core = _import_core()
    except ImportError as exc:
        return [
            Finding(
                "versions",
                "fail",
                "the Rust core vnetio._core cannot be imported",
                f"{type(exc).__name__}: {exc}. Nothing but this report works without it.",
                fix,
            )
        ]
    core_version = str(getattr(core, "__version__", "unknown"))
    abi = getattr(core, "ABI_VERSION", None)
    try:
        package_version = _package_version()
    except importlib.metadata.PackageNotFoundError:
        package_version = None

    findings = []
    if package_version is None:
        findings.append(
            Finding(
                "versions",
                "warn",
                f"vnetio is not installed as a package; Rust core is {core_version}",
                "No 'vnetio' distribution metadata was found (running from a source tree via "
                "PYTHONPATH?), so the versions cannot be compared.",
                fix,
            )
        )
    elif normalize_version(package_version) != normalize_version(core_version):
        findings.append(
            Finding(
                "versions",
                "fail",
                f"vnetio package {package_version} but Rust core {core_version}",
                f"The extension at {getattr(core, '__file__', '?')} comes from another build "
                "than the installed package; behaviour and errors will not match the docs.",
                fix,
            )
        )
    else:
        findings.append(
            Finding(
                "versions",
                "ok",
                f"vnetio {package_version}: Python package and Rust core match",
                f"Rust core at {getattr(core, '__file__', '?')}, "
                f"build profile {getattr(core, 'build_profile', '?')}.",
            )
        )

    if abi == EXPECTED_ABI:
        findings.append(Finding("abi", "ok", f"Rust core ABI version {abi} as expected"))
    else:
        findings.append(
            Finding(
                "abi",
                "fail",
                f"Rust core ABI version {abi}, the Python package expects {EXPECTED_ABI}",
                "The Python layer calls the extension in ways this build does not support.",
                fix,
            )
        )
    return findings


def _mknod_fix() -> str:
    return " && ".join(
        _as_root(cmd)
        for cmd in (
            "mkdir -p /dev/net",
            f"mknod {TUN_PATH} c {TUN_MAJOR} {TUN_MINOR}",
            f"chmod 0666 {TUN_PATH}",
        )
    )


def _chmod_fix() -> str:
    rule = 'KERNEL=="tun", MODE="0666"'
    return (
        f"{_as_root(f'chmod 0666 {TUN_PATH}')}; to keep it after a reboot, add a udev rule: "
        f"echo '{rule}' | {_as_root(f'tee {UDEV_RULE}')}"
    )


def check_tun_device() -> list[Finding]:
    """/dev/net/tun exists, is the TUN/TAP device, is usable by non-root owners, opens."""
    try:
        st = _stat(TUN_PATH)
    except FileNotFoundError:
        return [
            Finding(
                "tun-node",
                "fail",
                f"{TUN_PATH} does not exist",
                "No TUN/TAP adapter can be opened. Loading the tun driver normally creates the "
                "node; in a container, pass the device in (docker run --device /dev/net/tun).",
                f"{_as_root('modprobe tun')}; if the node is still missing: {_mknod_fix()}",
            )
        ]
    except OSError as exc:
        return [
            Finding(
                "tun-node",
                "fail",
                f"{TUN_PATH} cannot be examined: {exc.strerror}",
                str(exc),
                f"ls -ld /dev/net {TUN_PATH}  # the directory must be searchable",
            )
        ]

    if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (
        TUN_MAJOR,
        TUN_MINOR,
    ):
        what = (
            f"character device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            if stat.S_ISCHR(st.st_mode)
            else "not a character device"
        )
        return [
            Finding(
                "tun-node",
                "fail",
                f"{TUN_PATH} is {what}, not the TUN/TAP device {TUN_MAJOR}:{TUN_MINOR}",
                "Opening it will not give a TUN/TAP file descriptor.",
                f"{_as_root(f'rm {TUN_PATH}')} && {_mknod_fix()}",
            )
        ]

    findings = [
        Finding("tun-node", "ok", f"{TUN_PATH} is the TUN/TAP device ({TUN_MAJOR}:{TUN_MINOR})")
    ]

    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o006 == 0o006:
        findings.append(
            Finding(
                "tun-mode",
                "ok",
                f"{TUN_PATH} is mode {mode:04o}: any user can open it",
                "Opening the node grants nothing by itself: creating an adapter still needs "
                "CAP_NET_ADMIN, attaching to one needs to be its owner.",
            )
        )
    else:
        group = f" and members of group {st.st_gid}" if mode & 0o060 == 0o060 else ""
        findings.append(
            Finding(
                "tun-mode",
                "warn",
                f"{TUN_PATH} is mode {mode:04o}: only root{group} can use adapters, "
                "even adapters created with owner=",
                "A persistent adapter created for a user (owner=/--owner, ip tuntap ... user) "
                f"is useless to that user when they cannot open {TUN_PATH}. Most "
                "distributions ship mode 0666, which is safe: the kernel checks CAP_NET_ADMIN "
                "or adapter ownership on every attach.",
                _chmod_fix(),
            )
        )

    try:
        _probe_open(TUN_PATH)
    except OSError as exc:
        findings.append(_open_failure(exc, mode))
    else:
        findings.append(Finding("tun-open", "ok", f"this process can open {TUN_PATH}"))
    return findings


def _open_failure(exc: OSError, mode: int) -> Finding:
    summary = f"this process (uid {_geteuid()}) cannot open {TUN_PATH}: {exc.strerror}"
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return Finding(
            "tun-open",
            "fail",
            summary,
            "The node exists but no driver answers: the tun module is not loaded.",
            _as_root("modprobe tun"),
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        if mode & 0o006 != 0o006 and _geteuid() != 0:
            fix = _chmod_fix()
            detail = f"The node's mode {mode:04o} keeps everyone but root out."
        else:
            fix = (
                "allow the device where the process runs (docker run --device /dev/net/tun "
                "--cap-add NET_ADMIN; systemd: DeviceAllow=/dev/net/tun rw), or check the "
                "SELinux/AppArmor audit log"
            )
            detail = (
                "The file mode allows it, so a device cgroup (container, systemd unit) or a "
                "security module refused the open."
            )
        return Finding(
            "tun-open", "fail", summary, f"{detail} No adapter can be opened; {exc}", fix
        )
    return Finding("tun-open", "fail", summary, str(exc), None)


_FEATURES = ("IFF_TUN", "IFF_TAP", "IFF_MULTI_QUEUE", "IFF_VNET_HDR", "IFF_NAPI")
_FEATURE_USE = {
    "IFF_TUN": "Tun adapters",
    "IFF_TAP": "Tap adapters",
    "IFF_MULTI_QUEUE": "queues > 1",
    "IFF_VNET_HDR": "offload (virtio-net headers, GSO super-frames)",
}


def check_tun_features() -> list[Finding]:
    """The kernel's TUNGETFEATURES mask has what vnetio uses."""
    try:
        core = _import_core()
    except ImportError:
        return [
            Finding(
                "tun-features",
                "warn",
                "kernel TUN features not checked: the Rust core cannot be imported",
                "See the 'versions' finding.",
                _reinstall_fix(),
            )
        ]
    try:
        mask = core.tun_features()
    except OSError as exc:
        return [
            Finding(
                "tun-features",
                "warn",
                f"kernel TUN features not checked: {TUN_PATH} cannot be opened ({exc.strerror})",
                str(exc),
                "see the 'tun-open' finding",
            )
        ]
    present = [name for name in _FEATURES if mask & getattr(core, name)]
    missing = [name for name in _FEATURES if name not in present and name in _FEATURE_USE]
    summary = "kernel TUN features: " + (" ".join(present) or "none")
    if not missing:
        return [Finding("tun-features", "ok", summary, f"TUNGETFEATURES mask {mask:#06x}.")]
    unusable = "; ".join(f"{name}: {_FEATURE_USE[name]}" for name in missing)
    basic = {"IFF_TUN", "IFF_TAP"} & set(missing)
    return [
        Finding(
            "tun-features",
            "fail" if basic else "warn",
            f"{summary} (missing: {' '.join(missing)})",
            f"Unavailable on this kernel: {unusable}. TUNGETFEATURES mask {mask:#06x}.",
            "run a newer kernel (Linux 3.8 or later has multi-queue and virtio-net headers)"
            + ("" if basic else "; until then open adapters with queues=1 and no offload"),
        )
    ]


def _cap_mask(status_text: str, field: str) -> int | None:
    match = re.search(rf"^{field}:\s*([0-9a-fA-F]+)\s*$", status_text, re.MULTILINE)
    return int(match.group(1), 16) if match else None


def check_capabilities() -> list[Finding]:
    """CAP_NET_ADMIN in this process's effective set (needed to create adapters)."""
    try:
        text = _read_text(PROC_STATUS)
    except OSError as exc:
        text = ""
        reason = f"{PROC_STATUS} cannot be read: {exc.strerror}"
    else:
        reason = f"no CapEff line in {PROC_STATUS}"
    effective = _cap_mask(text, "CapEff")
    if effective is None:
        return [
            Finding(
                "cap-net-admin",
                "warn",
                "cannot tell whether this process has CAP_NET_ADMIN",
                f"{reason}. Is /proc mounted?",
                _as_root("mount -t proc proc /proc"),
            )
        ]
    if effective >> CAP_NET_ADMIN & 1:
        return [
            Finding(
                "cap-net-admin",
                "ok",
                "this process has CAP_NET_ADMIN: it can create and configure adapters",
                f"CapEff {effective:016x}.",
            )
        ]

    uid = _geteuid()
    bounding = _cap_mask(text, "CapBnd")
    if bounding is not None and not bounding >> CAP_NET_ADMIN & 1:
        fix = (
            "start the container or service with CAP_NET_ADMIN (docker run --cap-add NET_ADMIN; "
            "systemd: AmbientCapabilities=CAP_NET_ADMIN), or have a process that has it create "
            f"a persistent adapter owned by uid {uid}"
        )
        why = "CAP_NET_ADMIN is not even in the bounding set, so neither root nor setcap helps "
        why += "inside this environment (a container or a restricted service)."
    else:
        setcap = _as_root(f"setcap cap_net_admin+ep {os.path.realpath(sys.executable)}")
        tuntap = _as_root(f"ip tuntap add dev vn0 mode tap user {uid}")
        fix = (
            f"run as root, or {setcap} (every script run by that interpreter gets it), or have "
            f"root create a persistent adapter you own and open it by name: {tuntap} "
            f"(from Python as root: vnetio.Tap('vn0', persist=True, owner={uid}))"
        )
        why = ""
    return [
        Finding(
            "cap-net-admin",
            "warn",
            f"this process (uid {uid}) lacks CAP_NET_ADMIN: it cannot create adapters, only "
            "attach to persistent adapters it owns",
            f"{why}CapEff {effective:016x}; CAP_NET_ADMIN is bit {CAP_NET_ADMIN}. "
            "Creating, configuring (addresses, MTU, up/down) and moving adapters to a network "
            "namespace need it.",
            fix,
        )
    ]


def check_netns() -> list[Finding]:
    """Network namespaces exist in the kernel, iproute2 is installed, /run/netns is usable."""
    if not os.path.exists(NETNS_SELF):
        return [
            Finding(
                "netns",
                "warn",
                "this kernel has no network namespaces",
                f"{NETNS_SELF} is missing: netns= and the namespace-based tests cannot work.",
                "run a kernel built with CONFIG_NET_NS=y",
            )
        ]
    ip = _which("ip")
    if ip is None:
        return [
            Finding(
                "netns",
                "warn",
                "iproute2 ('ip') is not installed",
                "Named network namespaces, the privileged tests, the benchmarks and "
                "'vnetio demo' use it.",
                f"install iproute2 (Debian/Ubuntu: {_as_root('apt-get install iproute2')})",
            )
        ]
    try:
        result = _run([ip, "netns", "list"])
    except (OSError, subprocess.SubprocessError) as exc:
        returncode, stderr = None, str(exc)
    else:
        returncode, stderr = result.returncode, result.stderr.strip()
    if returncode != 0:
        install = _as_root("apt-get install iproute2")
        return [
            Finding(
                "netns",
                "warn",
                "'ip netns list' does not work",
                f"{ip} netns list: {stderr or f'exit status {returncode}'}",
                f"install a current iproute2 (Debian/Ubuntu: {install})",
            )
        ]
    if _geteuid() != 0:
        return [
            Finding(
                "netns",
                "ok",
                "network namespaces supported ('ip netns' works)",
                "Only root can create named namespaces.",
            )
        ]
    run_dir = NETNS_RUN_DIR
    target = run_dir if os.path.isdir(run_dir) else os.path.dirname(run_dir)
    if not _writable(target):
        return [
            Finding(
                "netns",
                "warn",
                f"{target} is not writable: named network namespaces cannot be created",
                f"'ip netns add' keeps named namespaces under {run_dir}.",
                f"mount {target} read-write (findmnt -T {target} shows the mount and its options)",
            )
        ]
    return [
        Finding(
            "netns",
            "ok",
            f"network namespaces supported ('ip netns' works, {run_dir} writable)",
        )
    ]


def check_sysfs() -> list[Finding]:
    """/sys/class/net is readable and the tun driver is registered."""
    try:
        names = os.listdir(SYS_CLASS_NET)
    except OSError as exc:
        return [
            Finding(
                "sysfs",
                "warn",
                f"{SYS_CLASS_NET} cannot be read: {exc.strerror}",
                "Adapter state and kernel counters are read from sysfs.",
                _as_root("mount -t sysfs sysfs /sys"),
            )
        ]
    findings = [
        Finding("sysfs", "ok", f"{SYS_CLASS_NET} readable ({len(names)} interfaces visible)")
    ]
    try:
        dev = _read_text(SYS_MISC_TUN_DEV).strip()
    except OSError:
        dev = None
    if dev == f"{TUN_MAJOR}:{TUN_MINOR}":
        findings.append(Finding("tun-driver", "ok", f"the tun driver is loaded ({dev})"))
    else:
        findings.append(
            Finding(
                "tun-driver",
                "warn",
                "the tun driver is not loaded",
                f"{SYS_MISC_TUN_DEV} is {'missing' if dev is None else repr(dev)}. The first "
                f"open of {TUN_PATH} usually loads it on demand.",
                _as_root("modprobe tun"),
            )
        )
    return findings


def check_offload() -> list[Finding]:
    """Which TUNSETOFFLOAD flags the kernel accepts (see ``_doctor_adapters``)."""
    from vnetio import _doctor_adapters

    return _doctor_adapters.check_offload()


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
    """The adapter checks of every namespace asked for (see ``_doctor_adapters``)."""
    from vnetio import _doctor_adapters as adapter_checks

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


if __name__ == "__main__":
    # Run the module's importable copy, so the adapter checks (which import vnetio._doctor)
    # and this entry point share one Finding class and one set of seams.
    from vnetio._doctor import main as _main

    sys.exit(_main(sys.argv[1:]))
