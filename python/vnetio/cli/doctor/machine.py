"""``vnetio doctor``'s machine checks: can this machine and process use vnetio's adapters?

Each check looks at one thing (package versions, the ``/dev/net/tun`` node, kernel TUN
features, CAP_NET_ADMIN, network namespaces, sysfs) and returns :class:`~.common.Finding`
objects that say what is wrong and the command that fixes it. ``docs/troubleshooting.md``
describes every finding.

The Rust extension is imported lazily, inside the checks, so the doctor still runs (and
says why) when the extension is missing or was built from other sources.
"""

from __future__ import annotations

import errno
import importlib
import importlib.metadata
import os
import stat
import subprocess
import sys
from types import ModuleType

from vnetio._corecheck import EXPECTED_ABI, normalize_version
from vnetio.cli.doctor import common
from vnetio.cli.doctor.common import Finding

__all__ = [
    "check_capabilities",
    "check_netns",
    "check_sysfs",
    "check_tun_device",
    "check_tun_features",
    "check_versions",
]

# Paths the checks read; module attributes so tests can point them at fixtures.
TUN_PATH = "/dev/net/tun"
TUN_MAJOR, TUN_MINOR = 10, 200
SYS_CLASS_NET = "/sys/class/net"
SYS_MISC_TUN_DEV = "/sys/class/misc/tun/dev"

UDEV_RULE = "/etc/udev/rules.d/60-vnetio-tun.rules"


# --- seams: what only these checks read from the system (the shared ones are in common) ----


def _import_core() -> ModuleType:
    return importlib.import_module("vnetio._core")


def _package_version() -> str:
    return importlib.metadata.version("vnetio")


def _stat(path: str) -> os.stat_result:
    return os.stat(path)


def _probe_open(path: str) -> None:
    """Open ``path`` read-write and close it again; raises OSError when that fails."""
    os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


# --- checks ---------------------------------------------------------------------------------


def check_versions() -> list[Finding]:
    """The Python package and the Rust core come from the same build."""
    fix = common.reinstall_fix()
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
    try:
        package_version: str | None = _package_version()
    except importlib.metadata.PackageNotFoundError:
        package_version = None
    return [_version_finding(core, package_version, fix), _abi_finding(core, fix)]


def _version_finding(core: ModuleType, package_version: str | None, fix: str) -> Finding:
    core_version = str(getattr(core, "__version__", "unknown"))
    if package_version is None:
        return Finding(
            "versions",
            "warn",
            f"vnetio is not installed as a package; Rust core is {core_version}",
            "No 'vnetio' distribution metadata was found (running from a source tree via "
            "PYTHONPATH?), so the versions cannot be compared.",
            fix,
        )
    if normalize_version(package_version) != normalize_version(core_version):
        return Finding(
            "versions",
            "fail",
            f"vnetio package {package_version} but Rust core {core_version}",
            f"The extension at {getattr(core, '__file__', '?')} comes from another build "
            "than the installed package; behaviour and errors will not match the docs.",
            fix,
        )
    return Finding(
        "versions",
        "ok",
        f"vnetio {package_version}: Python package and Rust core match",
        f"Rust core at {getattr(core, '__file__', '?')}, "
        f"build profile {getattr(core, 'build_profile', '?')}.",
    )


def _abi_finding(core: ModuleType, fix: str) -> Finding:
    abi = getattr(core, "ABI_VERSION", None)
    if abi != EXPECTED_ABI:
        return Finding(
            "abi",
            "fail",
            f"Rust core ABI version {abi}, the Python package expects {EXPECTED_ABI}",
            "The Python layer calls the extension in ways this build does not support.",
            fix,
        )
    return Finding("abi", "ok", f"Rust core ABI version {abi} as expected")


def _mknod_fix() -> str:
    return " && ".join(
        common.as_root(cmd)
        for cmd in (
            "mkdir -p /dev/net",
            f"mknod {TUN_PATH} c {TUN_MAJOR} {TUN_MINOR}",
            f"chmod 0666 {TUN_PATH}",
        )
    )


def _chmod_fix() -> str:
    rule = 'KERNEL=="tun", MODE="0666"'
    return (
        f"{common.as_root(f'chmod 0666 {TUN_PATH}')}; to keep it after a reboot, add a udev rule: "
        f"echo '{rule}' | {common.as_root(f'tee {UDEV_RULE}')}"
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
                f"{common.as_root('modprobe tun')}; if the node is still missing: {_mknod_fix()}",
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
                f"{common.as_root(f'rm {TUN_PATH}')} && {_mknod_fix()}",
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
    summary = f"this process (uid {common.geteuid()}) cannot open {TUN_PATH}: {exc.strerror}"
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return Finding(
            "tun-open",
            "fail",
            summary,
            "The node exists but no driver answers: the tun module is not loaded.",
            common.as_root("modprobe tun"),
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        if mode & 0o006 != 0o006 and common.geteuid() != 0:
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
                common.reinstall_fix(),
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


def check_capabilities() -> list[Finding]:
    """CAP_NET_ADMIN in this process's effective set (needed to create adapters)."""
    try:
        text = common.read_text(common.PROC_STATUS)
    except OSError as exc:
        text = ""
        reason = f"{common.PROC_STATUS} cannot be read: {exc.strerror}"
    else:
        reason = f"no CapEff line in {common.PROC_STATUS}"
    effective = common.cap_mask(text, "CapEff")
    if effective is None:
        return [
            Finding(
                "cap-net-admin",
                "warn",
                "cannot tell whether this process has CAP_NET_ADMIN",
                f"{reason}. Is /proc mounted?",
                common.as_root("mount -t proc proc /proc"),
            )
        ]
    if effective >> common.CAP_NET_ADMIN & 1:
        return [
            Finding(
                "cap-net-admin",
                "ok",
                "this process has CAP_NET_ADMIN: it can create and configure adapters",
                f"CapEff {effective:016x}.",
            )
        ]

    uid = common.geteuid()
    bounding = common.cap_mask(text, "CapBnd")
    if bounding is not None and not bounding >> common.CAP_NET_ADMIN & 1:
        fix = (
            "start the container or service with CAP_NET_ADMIN (docker run --cap-add NET_ADMIN; "
            "systemd: AmbientCapabilities=CAP_NET_ADMIN), or have a process that has it create "
            f"a persistent adapter owned by uid {uid}"
        )
        why = "CAP_NET_ADMIN is not even in the bounding set, so neither root nor setcap helps "
        why += "inside this environment (a container or a restricted service)."
    else:
        setcap = common.as_root(f"setcap cap_net_admin+ep {os.path.realpath(sys.executable)}")
        tuntap = common.as_root(f"ip tuntap add dev vn0 mode tap user {uid}")
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
            f"{why}CapEff {effective:016x}; CAP_NET_ADMIN is bit {common.CAP_NET_ADMIN}. "
            "Creating, configuring (addresses, MTU, up/down) and moving adapters to a network "
            "namespace need it.",
            fix,
        )
    ]


def check_netns() -> list[Finding]:
    """Network namespaces exist in the kernel, iproute2 is installed, /run/netns is usable."""
    if not os.path.exists(common.NETNS_SELF):
        return [
            Finding(
                "netns",
                "warn",
                "this kernel has no network namespaces",
                f"{common.NETNS_SELF} is missing: netns= and the namespace-based tests cannot work.",
                "run a kernel built with CONFIG_NET_NS=y",
            )
        ]
    ip = common.which("ip")
    if ip is None:
        return [
            Finding(
                "netns",
                "warn",
                "iproute2 ('ip') is not installed",
                "Named network namespaces, the privileged tests, the benchmarks and "
                "'vnetio demo' use it.",
                f"install iproute2 (Debian/Ubuntu: {common.as_root('apt-get install iproute2')})",
            )
        ]
    try:
        result = _run([ip, "netns", "list"])
    except (OSError, subprocess.SubprocessError) as exc:
        returncode, stderr = None, str(exc)
    else:
        returncode, stderr = result.returncode, result.stderr.strip()
    if returncode != 0:
        install = common.as_root("apt-get install iproute2")
        return [
            Finding(
                "netns",
                "warn",
                "'ip netns list' does not work",
                f"{ip} netns list: {stderr or f'exit status {returncode}'}",
                f"install a current iproute2 (Debian/Ubuntu: {install})",
            )
        ]
    if common.geteuid() != 0:
        return [
            Finding(
                "netns",
                "ok",
                "network namespaces supported ('ip netns' works)",
                "Only root can create named namespaces.",
            )
        ]
    run_dir = common.NETNS_RUN_DIR
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
                common.as_root("mount -t sysfs sysfs /sys"),
            )
        ]
    findings = [
        Finding("sysfs", "ok", f"{SYS_CLASS_NET} readable ({len(names)} interfaces visible)")
    ]
    try:
        dev = common.read_text(SYS_MISC_TUN_DEV).strip()
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
                common.as_root("modprobe tun"),
            )
        )
    return findings
