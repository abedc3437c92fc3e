"""The guest rig: boot a real Linux guest under QEMU as a test peer, and talk to it.

A guest is Debian's kernel (the newest ``/boot/vmlinuz-<ver>`` with a ``/lib/modules/<ver>``)
and an initramfs built here, no disk image: static busybox, the host's dash as ``/bin/sh``,
the rig's ``/init`` (``guest_init.sh``), the kernel modules asked for plus their dependencies
(from ``modules.dep``, loaded in dependency order), and host programs copied in with every
library ``ldd`` lists. The initramfs, and the kernel's uncompressed ELF image (which boots
through its PVH entry, skipping the XZ decompressor that costs seconds under emulation),
are cached under ``<repo>/.cache/vm/`` (``$VNVM_CACHE_DIR``), keyed by their inputs.

A boot takes ~3-5 s here (TCG, no KVM), so a guest is a command server that tests share:
``/init`` reads commands from its second serial port, which QEMU connects to a Unix socket
this module listens on, runs each with ``/bin/sh -c``, and sends back stdout, stderr and
the exit status (protocol in ``guest_init.sh``)::

    with Guest(nics=[TapNic("vnvmt0", mac="52:54:00:76:6e:01", netns=ns)],
               programs=["ip", "iperf3"]) as g:
        print(g.run("ip -br link").stdout)          # Result(returncode, stdout, stderr)
        server = g.run_bg("iperf3 -s")              # GuestProcess: alive/output/kill/wait
        g.put_file("/etc/wg.key", key)              # run(..., input=bytes) for stdin

Errors (all VmError, with the console tail): GuestBootError, GuestHung (no answer within
the command's timeout + hang_grace: the guest is killed), GuestDied, CommandTimeout (the
command's process group was killed in the guest; the guest goes on), CommandFailed
(``check=True``).

NIC attachments: :class:`TapNic` (QEMU's tap netdev opens a persistent TAP by name, e.g.
one made with ``vnetio.Tap(..., persist=True)``; QEMU then runs in the TAP's namespace),
:class:`FdNic` (QEMU's tap netdev on an inherited descriptor: a macvtap from
:func:`open_macvtap`, or a TAP kept open), :class:`VhostUserNic` (a vhost-user backend's
socket; the guest RAM becomes a shared memfd).

In the guest, busybox applets that start other programs (``timeout``, ``xargs``, ``env``,
``setsid``) prefer their own applets to PATH (Debian builds busybox with
FEATURE_PREFER_APPLETS): name a copied-in program by its full path there.

Hygiene: QEMU runs under ``setpriv --pdeathsig KILL`` (it dies with the process that
started it); every guest is killed by PID on close, on errors and at interpreter exit;
the names it creates start with ``vnvm``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

REPO_ROOT = Path(__file__).resolve().parents[2]
INIT_SCRIPT = Path(__file__).with_name("guest_init.sh")
QEMU = "qemu-system-x86_64"
PREFIX = "vnvm"

#: The virtio-net guest driver and its PCI transport (virtio_net does not depend on
#: virtio_pci: without the transport the guest has no eth0).
VIRTIO_NET_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_net")

#: Bumped whenever the initramfs layout changes, so stale cache entries are not reused.
_CACHE_FORMAT = 1
#: Most bytes (command + stdin) sent in one request: what waits in the guest's tty buffers
#: before the server reads it must stay below their ~64 KB limit. :meth:`Guest.put_file`
#: sends larger data in acknowledged chunks.
MAX_REQUEST = 32 * 1024
#: How long the host waits beyond a command's own timeout before declaring the guest hung.
HANG_GRACE = 15.0


# --------------------------------------------------------------------------- errors


class VmError(RuntimeError):
    """Something went wrong with a guest; the message ends with its console tail."""


class VmUnavailable(VmError):
    """QEMU, a kernel with modules, or static busybox is missing on this host."""


class GuestBootError(VmError):
    """QEMU exited during boot, or the command server did not start in time."""


class GuestHung(VmError):
    """The guest stopped answering; it has been killed."""


class GuestDied(VmError):
    """QEMU exited while the host waited for the guest."""


class CommandTimeout(VmError):
    """A command outlived its timeout and was killed inside the guest (guest still usable)."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


class CommandFailed(VmError):
    """``run(..., check=True)`` and the command exited non-zero."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------- host probing


@dataclass(frozen=True)
class Kernel:
    """A kernel image with its module tree."""

    version: str
    image: Path
    modules_dir: Path


def _version_key(version: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-+~]", version)]


def find_kernel() -> Kernel:
    """The newest ``/boot/vmlinuz-<ver>`` that has ``/lib/modules/<ver>/modules.dep``.

    ``$VNVM_KERNEL`` (a path to an image) overrides the choice; its version is the part of
    the file name after ``vmlinuz-``.
    """
    override = os.environ.get("VNVM_KERNEL")
    images = [Path(override)] if override else list(Path("/boot").glob("vmlinuz-*"))
    found = []
    for image in images:
        version = image.name.removeprefix("vmlinuz-")
        modules_dir = Path("/lib/modules") / version
        if image.is_file() and (modules_dir / "modules.dep").is_file():
            found.append(Kernel(version, image, modules_dir))
    if not found:
        where = override or "/boot/vmlinuz-*"
        raise VmUnavailable(
            f"no kernel image {where} with matching /lib/modules/<version>/modules.dep "
            "(install linux-image-amd64: make system-deps)"
        )
    return max(found, key=lambda k: _version_key(k.version))


def _is_static(path: Path) -> bool:
    """True when the ELF file has no program interpreter (PT_INTERP)."""
    data = path.read_bytes()[:4096]
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only; that is all x86_64 has
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(data[off : off + 4], "little") == 3:  # PT_INTERP
            return False
    return True


def find_busybox() -> Path:
    """The static busybox (Debian's busybox-static puts it at /bin/busybox)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file() and _is_static(Path(candidate)):
            return Path(candidate)
    raise VmUnavailable("no statically linked busybox (install busybox-static: make system-deps)")


def find_shell() -> Path:
    """The host's dash, the guest's /bin/sh (Debian: Essential, links only libc).

    Debian's static busybox prefers its own applets to PATH (FEATURE_SH_STANDALONE), so under
    busybox ash a copied-in iproute2 ``ip`` would never run; dash looks PATH up normally.
    """
    for candidate in ("/bin/dash", "/usr/bin/dash"):
        if Path(candidate).is_file():
            return Path(candidate)
    raise VmUnavailable("no /bin/dash on this host (Debian's dash package)")


def vm_problem() -> str | None:
    """Why guests cannot boot here, or None when they can."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (install qemu-system-x86: make system-deps)"
    try:
        kernel = find_kernel()
        find_busybox()
        find_shell()
    except VmUnavailable as exc:
        return str(exc)
    if not os.access(kernel.image, os.R_OK):
        return f"cannot read {kernel.image} (Debian installs it mode 0600: run as root)"
    return None


def _has_pvh_note(elf: bytes) -> bool:
    """True when an x86_64 vmlinux carries XEN_ELFNOTE_PHYS32_ENTRY (QEMU's PVH entry)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    phentsize = int.from_bytes(elf[0x36:0x38], "little")
    for i in range(int.from_bytes(elf[0x38:0x3A], "little")):
        ph = phoff + i * phentsize
        if int.from_bytes(elf[ph : ph + 4], "little") != 4:  # PT_NOTE
            continue
        off = int.from_bytes(elf[ph + 8 : ph + 16], "little")
        end = off + int.from_bytes(elf[ph + 32 : ph + 40], "little")
        while off + 12 <= end:
            namesz, descsz, kind = (
                int.from_bytes(elf[off + k : off + k + 4], "little") for k in (0, 4, 8)
            )
            name = elf[off + 12 : off + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and kind == 18:  # XEN_ELFNOTE_PHYS32_ENTRY
                return True
            off += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def boot_image(kernel: Kernel, directory: Path | None = None) -> Path:
    """What QEMU's ``-kernel`` gets: the uncompressed ELF vmlinux when it can be had, else the
    bzImage.

    Debian's bzImage is XZ-compressed, and under TCG its decompressor alone takes several
    seconds before the kernel starts. An ELF vmlinux with a PVH entry note
    (CONFIG_PVH=y) boots directly: measured here 3-4 s to a ready guest instead of 8-10 s.
    It is extracted once with Python's lzma/gzip and cached like the initramfs.
    """
    directory = directory or cache_dir()
    st = kernel.image.stat()
    tag = hashlib.sha256(f"{kernel.image}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    target = directory / f"vmlinux-{kernel.version}-{tag[:12]}"
    if target.is_file():
        os.utime(target)
        return target
    data = kernel.image.read_bytes()
    elf = None
    for magic, decompress in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip")):
        start = data.find(magic)
        if start < 0:
            continue
        try:
            if decompress == "xz":
                elf = lzma.LZMADecompressor().decompress(data[start:])
            else:
                elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[start:])
        except (lzma.LZMAError, zlib.error):
            continue
        break
    if elf is None or not _has_pvh_note(elf):
        return kernel.image
    _write_atomically(target, elf)
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- modules


def _module_index(kernel: Kernel) -> tuple[dict[str, str], dict[str, list[str]], set[str]]:
    """(name -> relative path, relative path -> dependency paths, built-in names)."""
    paths: dict[str, str] = {}
    deps: dict[str, list[str]] = {}
    for line in (kernel.modules_dir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
        paths[_module_name(target)] = target
    builtin_file = kernel.modules_dir / "modules.builtin"
    builtin = set()
    if builtin_file.is_file():
        builtin = {_module_name(p) for p in builtin_file.read_text().split()}
    return paths, deps, builtin


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base)
    return base.replace("-", "_")


def resolve_modules(kernel: Kernel, names: Iterable[str]) -> list[Path]:
    """The module files for ``names`` and everything they depend on, in load order.

    ``modules.dep`` lists each module's dependencies transitively; a depth-first walk puts
    every dependency before its users (virtio_ring before virtio, as insmod needs). Built-in
    modules are skipped; an unknown name is an error.
    """
    paths, deps, builtin = _module_index(kernel)
    order: list[str] = []
    seen: set[str] = set()

    def visit(rel: str) -> None:
        if rel in seen:
            return
        seen.add(rel)
        for dep in deps.get(rel, []):
            visit(dep)
        order.append(rel)

    for name in names:
        key = name.replace("-", "_")
        if key in paths:
            visit(paths[key])
        elif key not in builtin:
            raise VmError(f"kernel module {name!r} not found in {kernel.modules_dir}/modules.dep")
    return [kernel.modules_dir / rel for rel in order]


# --------------------------------------------------------------------------- programs


def _ldd(binary: Path) -> list[Path]:
    """Every shared library ``ldd`` lists for ``binary`` (the dynamic loader included)."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return []  # "not a dynamic executable"
    libs = []
    for line in proc.stdout.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def resolve_program(program: str) -> Path:
    """A program name (searched on PATH, sbin included) or an absolute path."""
    if program.startswith("/"):
        path = Path(program)
    else:
        search = os.pathsep.join(
            [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
        )
        found = shutil.which(program, path=search)
        if found is None:
            raise VmError(f"program {program!r} not found on this host (make system-deps?)")
        path = Path(found)
    if not path.is_file():
        raise VmError(f"program {program!r}: {path} is not a file")
    return path


# --------------------------------------------------------------------------- initramfs


@dataclass
class _Entry:
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class _Tree:
    """The initramfs contents, path -> entry; parent directories are added implicitly."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), _Entry(stat.S_IFDIR | 0o755))

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(stat.S_IFDIR | mode)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = _Entry(stat.S_IFCHR | mode, rdev=(major, minor))

    def cpio(self) -> bytes:
        """The tree as an uncompressed newc cpio archive (the kernel unpacks it faster than
        a compressed one under emulation; -initrd loads it through fw_cfg DMA)."""
        out = bytearray()
        # Sorted: every directory comes before what it contains.
        for ino, (name, entry) in enumerate(sorted(self.entries.items()), start=1):
            _cpio_member(out, ino, name, entry)
        _cpio_member(out, 0, "TRAILER!!!", _Entry(0))
        return bytes(out)


def _cpio_member(out: bytearray, ino: int, name: str, entry: _Entry) -> None:
    encoded = name.encode() + b"\0"
    fields = (
        ino, entry.mode, 0, 0, 2 if stat.S_ISDIR(entry.mode) else 1, 0, len(entry.data),
        0, 0, entry.rdev[0], entry.rdev[1], len(encoded), 0,
    )  # fmt: skip
    out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
    out += b"\0" * (-len(out) % 4)
    out += entry.data
    out += b"\0" * (-len(out) % 4)


@dataclass(frozen=True)
class InitramfsSpec:
    """Everything that goes into an initramfs; its :meth:`key` names the cache entry."""

    kernel: Kernel
    busybox: Path
    shell: Path
    modules: tuple[Path, ...]
    programs: tuple[Path, ...]
    libraries: tuple[Path, ...]
    files: tuple[tuple[Path, str], ...]  # (host file, path in the guest)

    def key(self) -> str:
        def fingerprint(path: Path) -> list[object]:
            st = path.stat()
            return [str(path), st.st_size, st.st_mtime_ns]

        inputs = {
            "format": _CACHE_FORMAT,
            "rig": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            "init": hashlib.sha256(INIT_SCRIPT.read_bytes()).hexdigest(),
            "kernel": self.kernel.version,
            "busybox": fingerprint(self.busybox),
            "shell": fingerprint(self.shell),
            "modules": [fingerprint(p) for p in self.modules],
            "programs": [fingerprint(p) for p in self.programs],
            "libraries": [fingerprint(p) for p in self.libraries],
            "files": [[*fingerprint(src), dst] for src, dst in self.files],
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def initramfs_spec(
    kernel: Kernel,
    modules: Iterable[str] = VIRTIO_NET_MODULES,
    programs: Iterable[str] = (),
    files: Mapping[str, str] | None = None,
) -> InitramfsSpec:
    """Resolve module names, program names and their libraries into an InitramfsSpec.

    ``files`` maps host paths to guest paths for data a program needs (configuration…).
    """
    shell = find_shell()
    progs = tuple(resolve_program(p) for p in programs)
    libs: dict[Path, None] = {}
    for prog in (shell, *progs):
        libs.update(dict.fromkeys(_ldd(prog)))
    return InitramfsSpec(
        kernel=kernel,
        busybox=find_busybox(),
        shell=shell,
        modules=tuple(resolve_modules(kernel, modules)),
        programs=progs,
        libraries=tuple(libs),
        files=tuple((Path(src), dst) for src, dst in (files or {}).items()),
    )


def cache_dir() -> Path:
    return Path(os.environ.get("VNVM_CACHE_DIR") or REPO_ROOT / ".cache" / "vm")


#: Cache entries not used for this long are removed when a new one is built.
CACHE_MAX_AGE = 14 * 24 * 3600


def build_initramfs(spec: InitramfsSpec, directory: Path | None = None) -> Path:
    """The cpio for ``spec``: from the cache when its inputs are unchanged, else built and
    stored there (written to a temporary name and renamed: concurrent runs are safe)."""
    directory = directory or cache_dir()
    target = directory / f"initramfs-{spec.key()}.cpio"
    if target.is_file():
        os.utime(target)  # marks it used, for _prune_cache
        return target
    directory.mkdir(parents=True, exist_ok=True)
    _prune_cache(directory)

    tree = _Tree()
    for d in ("dev", "proc", "sys", "run", "root", "etc/vnvm", "lib/modules/vnvm"):
        tree.dir(d)
    tree.dir("tmp", 0o1777)
    tree.chardev("dev/console", 5, 1)  # init's stdio until devtmpfs is mounted
    tree.chardev("dev/null", 1, 3, 0o666)
    tree.file("init", INIT_SCRIPT.read_bytes(), 0o755)

    # busybox applets as symlinks, except where a host program takes the name: the host
    # program lands at its own path, and no link of that name is left to shadow it.
    tree.file("bin/busybox", spec.busybox.read_bytes(), 0o755)
    taken = {p.name for p in spec.programs} | {"busybox", "sh"}
    applets = subprocess.run(
        [str(spec.busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if Path(applet).name not in taken:
            tree.symlink(applet, "/bin/busybox")
    for prog in spec.programs:
        tree.file(str(prog), prog.read_bytes(), 0o755)
    tree.file("bin/dash", spec.shell.read_bytes(), 0o755)
    tree.symlink("bin/sh", "/bin/dash")
    for lib in spec.libraries:
        tree.file(str(lib), lib.resolve().read_bytes(), 0o755)
    for src, dst in spec.files:
        tree.file(dst, src.read_bytes(), stat.S_IMODE(src.stat().st_mode))

    names = []
    for mod in spec.modules:
        name = _module_name(mod.name)
        names.append(name)
        tree.file(f"lib/modules/vnvm/{name}.ko", _read_module(mod))
    tree.file("etc/vnvm/modules", "".join(f"{n}\n" for n in names).encode())
    tree.file("etc/hostname", b"vnvm\n")
    tree.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    tree.file("etc/group", b"root:x:0:\n")
    tree.file("etc/hosts", b"127.0.0.1 localhost vnvm\n::1 localhost\n")

    _write_atomically(target, tree.cpio())
    return target


def _prune_cache(directory: Path) -> None:
    cutoff = time.time() - CACHE_MAX_AGE
    for old in (*directory.glob("initramfs-*.cpio"), *directory.glob("vmlinux-*")):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()


def _read_module(path: Path) -> bytes:
    """A module's ELF image (busybox insmod wants it uncompressed)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise VmError(f"{path}: zstd-compressed modules are not supported; decompress first")
    return data


# --------------------------------------------------------------------------- NICs


def _opts(options: Mapping[str, str | int | bool]) -> str:
    def text(v: str | int | bool) -> str:
        return ("on" if v else "off") if isinstance(v, bool) else str(v)

    return "".join(f",{k}={text(v)}" for k, v in options.items())


@dataclass(frozen=True)
class TapNic:
    """QEMU's own tap netdev on a TAP opened by name: QEMU does TUNSETIFF itself.

    The TAP should exist already (e.g. ``vnetio.Tap(name, persist=True, netns=ns)``, closed
    again: a single-queue TAP takes one reader). When ``netns`` is given, QEMU runs inside
    that namespace (``ip netns exec``); all TapNics of one guest must then share it.
    ``vnet_hdr=on``: QEMU and the guest negotiate checksum and TSO offloads through it.
    ``device`` adds virtio-net-pci properties, e.g. ``{"mrg_rxbuf": False, "csum": False}``.
    """

    ifname: str
    mac: str
    netns: str | None = None
    device: Mapping[str, str | int | bool] = field(default_factory=dict)

    def qemu_args(self, index: int) -> tuple[list[str], list[int]]:
        netdev = (
            f"tap,id=n{index},ifname={self.ifname},script=no,downscript=no,vhost=off,vnet_hdr=on"
        )
        dev = f"virtio-net-pci,netdev=n{index},mac={self.mac},romfile={_opts(self.device)}"
        return ["-netdev", netdev, "-device", dev], []


@dataclass(frozen=True)
class FdNic:
    """QEMU's tap netdev on an already open descriptor, inherited by QEMU (``pass_fds``).

    For a macvtap (``fd`` from :func:`open_macvtap`; ``mac`` must then be the macvtap
    link's own MAC, the only unicast address it passes up) or a TAP that the test keeps
    open. QEMU probes the descriptor for IFF_VNET_HDR (macvtap has it from open). The
    caller keeps ownership of ``fd`` and closes it after the guest is gone.
    """

    fd: int
    mac: str
    device: Mapping[str, str | int | bool] = field(default_factory=dict)

    def qemu_args(self, index: int) -> tuple[list[str], list[int]]:
        netdev = f"tap,id=n{index},fd={self.fd},vhost=off"
        dev = f"virtio-net-pci,netdev=n{index},mac={self.mac},romfile={_opts(self.device)}"
        return ["-netdev", netdev, "-device", dev], [self.fd]


@dataclass(frozen=True)
class VhostUserNic:
    """A vhost-user backend (e.g. ``vnetio.VhostUserNet``) serving ``socket_path``.

    QEMU side (what this assembles)::

        -chardev socket,id=vuN,path=SOCK[,server=on,wait=off|,reconnect=S]
        -netdev vhost-user,id=nN,chardev=vuN[,queues=Q]
        -device virtio-net-pci,netdev=nN,mac=MAC,vectors=0[,mq=on]

    plus, once per guest, the guest RAM as shared memory the backend can map
    (``-object memory-backend-memfd,id=mem,size=<-m>M,share=on -numa node,memdev=mem``).

    ``server=False`` (default): the backend listens and QEMU connects at start-up (it fails
    if nobody listens); ``reconnect`` makes QEMU retry every S seconds after a disconnect.
    ``server=True``: QEMU listens on the path and the backend connects; with ``wait=off``
    the guest starts at once and its NIC links up when the backend arrives.

    ``msix=False`` (default) gives the device no MSI-X vectors (legacy INTx): QEMU 7.2
    under TCG segfaults in ``vhost_net_start`` -> ``msix_set_vector_notifiers`` when the
    guest driver starts a vhost-user device that uses MSI-X (seen here with a backend stub;
    with ``vectors=0`` the same guest boots and the device starts). Without KVM there are
    no irqfds anyway: QEMU reads the call eventfds and injects the interrupt itself.
    """

    socket_path: str
    mac: str
    server: bool = False
    reconnect: int | None = None
    queues: int = 1
    msix: bool = False
    device: Mapping[str, str | int | bool] = field(default_factory=dict)

    def qemu_args(self, index: int) -> tuple[list[str], list[int]]:
        chardev = f"socket,id=vu{index},path={self.socket_path}"
        if self.server:
            chardev += ",server=on,wait=off"
        elif self.reconnect is not None:
            chardev += f",reconnect={self.reconnect}"
        netdev = f"vhost-user,id=n{index},chardev=vu{index}"
        vectors = 2 * self.queues + 2 if self.msix else 0
        dev = f"virtio-net-pci,netdev=n{index},mac={self.mac},romfile=,vectors={vectors}"
        if self.queues > 1:
            netdev += f",queues={self.queues}"
            dev += ",mq=on"
        dev += _opts(self.device)
        return ["-chardev", chardev, "-netdev", netdev, "-device", dev], []


Nic = TapNic | FdNic | VhostUserNic


def open_macvtap(ifname: str, netns: str | None = None) -> int:
    """Open the character device of macvtap link ``ifname`` and return the descriptor.

    The device numbers come from sysfs (``/sys/class/net/IF/macvtap/tapN/dev``, read inside
    ``netns``); the node is made in a private temporary directory (no dependence on udev,
    nothing left in /dev), opened, and removed again.
    """
    prefix = ["ip", "netns", "exec", netns] if netns else []
    script = f"cat /sys/class/net/{shlex.quote(ifname)}/macvtap/tap*/dev"
    proc = subprocess.run(
        [*prefix, "sh", "-c", script], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or ":" not in proc.stdout:
        raise VmError(f"{ifname} is not a macvtap link: {proc.stderr.strip()}")
    major, minor = (int(x) for x in proc.stdout.strip().split(":"))
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-mt-") as tmp:
        node = os.path.join(tmp, "tap")
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        return os.open(node, os.O_RDWR | os.O_CLOEXEC)


# --------------------------------------------------------------------------- the guest


@dataclass(frozen=True)
class Result:
    """What a guest command produced."""

    command: str
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass
class GuestProcess:
    """A background command in the guest (:meth:`Guest.run_bg`); output goes to ``log``."""

    guest: Guest
    pid: int
    log: str
    command: str

    def alive(self) -> bool:
        return self.guest.run(f"kill -0 {self.pid}").ok

    def output(self) -> str:
        return self.guest.run(f"cat {self.log}").stdout

    def kill(self, sig: str = "TERM") -> None:
        """Signal the process group (run_bg starts each in its own session)."""
        self.guest.run(f"kill -{sig} -{self.pid} 2>/dev/null; true")

    def wait(self, timeout: float = 30.0) -> None:
        """Wait until the process has exited (CommandTimeout after ``timeout``)."""
        self.guest.run(
            f"while kill -0 {self.pid} 2>/dev/null; do usleep 20000; done", timeout=timeout
        )


_live: dict[int, Guest] = {}
_live_lock = threading.Lock()


def live_guests() -> dict[int, Guest]:
    """Running guests started by this process, by QEMU PID (for leak checks)."""
    with _live_lock:
        return {pid: g for pid, g in _live.items() if g.alive}


@atexit.register
def _kill_all() -> None:
    for guest in list(live_guests().values()):
        guest.kill()


class Guest:
    """One QEMU guest running the rig's command server. Use as a context manager.

    Args:
        nics: attachments, in PCI order (the guest names them eth0, eth1… — use
            :meth:`ifname` to find one by MAC).
        modules: kernel modules to load (dependencies are added); default: virtio-net.
        programs: host programs to copy in with their libraries (names or paths).
        files: extra host files, host path -> guest path.
        setup: shell commands run (and checked) once the server is up.
        memory_mb, cpus: guest size. TCG: one vCPU is one host thread.
        boot_timeout: seconds until the command server must answer.
        hang_grace: seconds beyond a command's timeout before the guest counts as hung.
        append: extra kernel command line. qemu_args: extra QEMU arguments.
        netns: run QEMU inside this network namespace (default: the TapNics' one).
        name: shows in ``ps`` as ``vnvm-<name>``.
    """

    def __init__(
        self,
        *,
        nics: Sequence[Nic] = (),
        modules: Iterable[str] = VIRTIO_NET_MODULES,
        programs: Iterable[str] = (),
        files: Mapping[str, str] | None = None,
        setup: Sequence[str] = (),
        memory_mb: int = 256,
        cpus: int = 1,
        boot_timeout: float = 60.0,
        hang_grace: float = HANG_GRACE,
        append: str = "",
        qemu_args: Sequence[str] = (),
        netns: str | None = None,
        name: str | None = None,
        kernel: Kernel | None = None,
    ) -> None:
        self.nics = list(nics)
        self.kernel = kernel or find_kernel()
        self.spec = initramfs_spec(self.kernel, modules, programs, files)
        self.setup = list(setup)
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.boot_timeout = boot_timeout
        self.hang_grace = hang_grace
        self.append = append
        self.extra_qemu_args = list(qemu_args)
        self.name = f"{PREFIX}-{name or secrets.token_hex(3)}"
        self.netns = netns or self._nic_netns()
        self.nonce = secrets.token_hex(8)
        self.boot_seconds: float | None = None
        self._workdir: Path | None = None  # made by start(), removed by close()
        self._logs_after_close = ("", "")  # console, QEMU output: kept when files go
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._seq = 0
        self._lock = threading.Lock()

    def _nic_netns(self) -> str | None:
        spaces = {n.netns for n in self.nics if isinstance(n, TapNic)}
        if len(spaces) > 1:
            raise VmError(f"TapNics in different namespaces {spaces}: QEMU runs in one")
        return spaces.pop() if spaces else None

    # ---- lifecycle

    def qemu_argv(
        self,
        initrd: Path | str = "INITRD",
        cmd_socket: Path | str = "CMDSOCK",
        image: Path | str | None = None,
        console: Path | str = "CONSOLE",
    ) -> list[str]:
        """The full QEMU command line; the defaults are placeholders for what start() makes.

        ``-machine pc`` with SeaBIOS and ``-kernel``: an ELF vmlinux boots through its PVH
        entry (see boot_image). Serial 0 (the guest console) goes to a file, serial 1 (the
        command channel) to the rig's Unix socket, which QEMU connects to as a client.
        """
        argv = [
            QEMU, "-name", f"{self.name},process={self.name}",
            "-accel", "tcg", "-machine", "pc", "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(image or self.kernel.image), "-initrd", str(initrd),
            "-append", f"console=ttyS0 quiet panic=-1 vnvm.nonce={self.nonce} {self.append}".strip(),
            "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con",
            "-chardev", f"socket,id=cmd,path={cmd_socket}", "-serial", "chardev:cmd",
        ]  # fmt: skip
        if any(isinstance(n, VhostUserNic) for n in self.nics):
            argv += [
                "-object", f"memory-backend-memfd,id=mem,size={self.memory_mb}M,share=on",
                "-numa", "node,memdev=mem",
            ]  # fmt: skip
        for i, nic in enumerate(self.nics):
            argv += nic.qemu_args(i)[0]
        return argv + self.extra_qemu_args

    def start(self) -> Self:
        """Boot and wait for the command server (raises GuestBootError, killing QEMU)."""
        if self._proc is not None:
            raise VmError(f"guest {self.name} was started already")
        started = time.monotonic()
        initrd = build_initramfs(self.spec)
        image = boot_image(self.kernel)
        self._workdir = workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        sock_path = workdir / "cmd.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        listener.listen(1)
        pass_fds = [fd for nic in self.nics for fd in nic.qemu_args(0)[1]]
        wrapper = ["setpriv", "--pdeathsig", "KILL"]
        if self.netns:
            wrapper = ["ip", "netns", "exec", self.netns, *wrapper]
        argv = self.qemu_argv(initrd, sock_path, image, workdir / "console.log")
        try:
            with open(workdir / "qemu.log", "wb") as log:
                self._proc = subprocess.Popen(
                    [*wrapper, *argv],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=pass_fds,
                )  # fmt: skip
            with _live_lock:
                _live[self._proc.pid] = self
            deadline = started + self.boot_timeout
            listener.settimeout(0.2)
            while self._sock is None:
                try:
                    self._sock, _ = listener.accept()
                except TimeoutError:
                    self._check_boot(deadline, "QEMU did not connect its command serial port")
            self._sock.setblocking(False)
            while True:
                line = self._read_line(deadline, during_boot=True)
                if line == f"@@VNVM {self.nonce} READY":
                    break
            self.boot_seconds = time.monotonic() - started
            for command in self.setup:
                self.run(command, check=True)
        except BaseException:
            self.kill()
            self._remove_files()  # `with Guest()` does not call close() when start() fails
            raise
        finally:
            listener.close()
        return self

    def _exit_text(self) -> str:
        code = self._proc.returncode if self._proc else None
        if code is not None and code < 0:
            return f"QEMU killed by {signal.Signals(-code).name}"
        return f"QEMU exited with {code}"

    def _check_boot(self, deadline: float, what: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise GuestBootError(self._describe(self._exit_text()))
        if time.monotonic() > deadline:
            self.kill()
            raise GuestBootError(
                self._describe(f"{what} within {self.boot_timeout:g} s; guest killed")
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self, timeout: float = 5.0) -> None:
        """Power off cleanly (``poweroff -f``); kill by PID if that takes too long. Then
        remove the work directory (console and QEMU logs, socket) unless ``$VNVM_KEEP`` is
        set (its path is in every error message)."""
        try:
            if self.alive and self._sock is not None:
                with contextlib.suppress(OSError):
                    self._send(b"POWEROFF\n")
                assert self._proc is not None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout)
        finally:
            self.kill()
            self._remove_files()

    def _remove_files(self) -> None:
        if self._workdir is None or os.environ.get("VNVM_KEEP"):
            return
        self._logs_after_close = (self.console_log, self.qemu_log)
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def kill(self) -> None:
        """SIGKILL QEMU by its PID, reap it, close the command socket (close() also
        removes the work directory)."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            with _live_lock:
                _live.pop(proc.pid, None)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ---- logs

    def _read_log(self, name: str, after_close: str) -> str:
        if self._workdir is None:
            return after_close
        try:
            return (self._workdir / name).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def console_log(self) -> str:
        """Everything the guest wrote on its console (ttyS0) so far (kept after close)."""
        return self._read_log("console.log", self._logs_after_close[0])

    @property
    def qemu_log(self) -> str:
        """QEMU's own stdout and stderr (kept after close)."""
        return self._read_log("qemu.log", self._logs_after_close[1])

    def console_tail(self, lines: int = 30) -> str:
        return "\n".join(self.console_log.rstrip().splitlines()[-lines:])

    def _describe(self, what: str) -> str:
        parts = [f"guest {self.name} (pid {self.pid}, files {self._workdir}): {what}"]
        if self.qemu_log.strip():
            parts.append("--- QEMU output ---\n" + self.qemu_log.strip()[-2000:])
        parts.append("--- console tail ---\n" + (self.console_tail() or "(empty)"))
        return "\n".join(parts)

    # ---- command channel

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.setblocking(True)
        try:
            self._sock.sendall(data)
        finally:
            self._sock.setblocking(False)

    def _read_line(self, deadline: float, *, during_boot: bool = False) -> str:
        assert self._sock is not None
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl]).decode(errors="replace").rstrip("\r")
                del self._buf[: nl + 1]
                return line
            try:
                chunk = self._sock.recv(65536)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                self._dead("closed its command channel", during_boot)
            if chunk:
                self._buf += chunk
                continue
            if self._proc is not None and self._proc.poll() is not None:
                self._dead(self._exit_text(), during_boot)
            if during_boot:
                self._check_boot(deadline, "the command server did not start")
            elif time.monotonic() > deadline:
                self.kill()
                raise GuestHung(self._describe("no answer in time; guest killed"))
            select.select([self._sock], [], [], 0.1)

    def _dead(self, what: str, during_boot: bool) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1)
            if self._proc.returncode is not None and not what.startswith("QEMU "):
                what += f" ({self._exit_text()})"
        message = self._describe(what)
        self.kill()
        raise (GuestBootError if during_boot else GuestDied)(message)

    def run(
        self, command: str, *, timeout: float = 30.0, check: bool = False, input: bytes = b""
    ) -> Result:
        """Run ``command`` with ``/bin/sh -c`` in the guest and wait for it.

        ``input`` is the command's standard input (else /dev/null). After ``timeout``
        seconds the guest kills the command's process group and this raises CommandTimeout
        (the guest stays usable). If the guest does not answer within ``timeout`` +
        ``hang_grace``, it is killed and GuestHung raised. ``check``: raise CommandFailed on a
        non-zero exit status. Output is text (UTF-8, errors replaced); it crosses an
        emulated serial port at ~150 KB/s, so keep it small (hash big data in the guest).
        """
        if not self.alive or self._sock is None:
            raise GuestDied(self._describe("not running"))
        encoded = command.encode()
        if len(encoded) + len(input) > MAX_REQUEST:
            raise ValueError(f"command + input longer than {MAX_REQUEST} bytes: use put_file")
        with self._lock:
            self._seq += 1
            ident = f"{self._seq}-{secrets.token_hex(3)}"
            limit = max(1, int(timeout + 0.999))
            header = f"RUN {ident} {limit} {len(encoded)} {len(input)}\n".encode()
            self._send(header + encoded + input)
            deadline = time.monotonic() + timeout + self.hang_grace
            marker = f"@@VNVM {self.nonce} "
            section: list[str] | None = None
            out: list[str] = []
            err: list[str] = []
            while True:
                line = self._read_line(deadline)
                if line == f"{marker}OUT {ident}":
                    section = out
                elif line == f"{marker}ERR {ident}":
                    section = err
                elif line.startswith(f"{marker}END {ident} "):
                    status, timed_out = line.split()[-2:]
                    break
                elif section is not None:
                    section.append(line)
        result = Result(
            command=command,
            returncode=int(status),
            stdout=base64.b64decode("".join(out)).decode(errors="replace"),
            stderr=base64.b64decode("".join(err)).decode(errors="replace"),
            timed_out=timed_out == "1",
        )
        if result.timed_out:
            raise CommandTimeout(
                f"guest command timed out after {timeout} s and was killed: {command!r}\n"
                f"stdout: {result.stdout[-1000:]!r}\nstderr: {result.stderr[-1000:]!r}",
                result,
            )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"guest command exited {result.returncode}: {command!r}\n"
                f"stdout: {result.stdout[-2000:]!r}\nstderr: {result.stderr[-2000:]!r}",
                result,
            )
        return result

    def run_bg(self, command: str) -> GuestProcess:
        """Start ``command`` in the background, in its own session, output to a log file.

        For servers (``iperf3 -s``, ``nc -l``): returns at once with the PID.
        """
        with self._lock:
            self._seq += 1
            log = f"/run/vnvm/bg-{self._seq}.log"
        started = self.run(
            f"setsid /bin/sh -c {shlex.quote(command)} </dev/null >{log} 2>&1 & echo $!",
            check=True,
        )
        return GuestProcess(self, int(started.stdout.strip()), log, command)

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` in the guest (~100 KB/s: for configuration and keys;
        move bulk data over the network)."""
        quoted = shlex.quote(path)
        self.run(f": > {quoted} && chmod {mode:o} {quoted}", check=True)
        chunk = MAX_REQUEST - 256
        for i in range(0, len(data), chunk):
            self.run(f"cat >> {quoted}", input=data[i : i + chunk], check=True)

    def ifname(self, mac: str) -> str:
        """The guest's name for the NIC with this MAC address."""
        out = self.run(
            "for d in /sys/class/net/*; do echo $(basename $d) $(cat $d/address); done", check=True
        ).stdout
        for line in out.splitlines():
            name, _, address = line.partition(" ")
            if address.strip().lower() == mac.lower():
                return name
        raise VmError(f"no guest interface with MAC {mac}:\n{out}")

    def read_snmp(self, proto: str = "Tcp") -> dict[str, int]:
        """Counters of one protocol line of the guest's /proc/net/snmp (e.g. InCsumErrors)."""
        return parse_snmp(self.run("cat /proc/net/snmp", check=True).stdout, proto)


def parse_snmp(text: str, proto: str = "Tcp") -> dict[str, int]:
    """``/proc/net/snmp`` has a header line and a value line per protocol."""
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith(f"{proto}:")]
    if len(rows) != 2:
        raise VmError(f"no {proto} lines in /proc/net/snmp:\n{text}")
    return {k: int(v) for k, v in zip(rows[0], rows[1], strict=True)}


__all__ = [
    "VIRTIO_NET_MODULES",
    "CommandFailed",
    "CommandTimeout",
    "FdNic",
    "Guest",
    "GuestBootError",
    "GuestDied",
    "GuestHung",
    "GuestProcess",
    "Kernel",
    "Nic",
    "Result",
    "TapNic",
    "VhostUserNic",
    "VmError",
    "VmUnavailable",
    "build_initramfs",
    "find_busybox",
    "find_kernel",
    "initramfs_spec",
    "live_guests",
    "open_macvtap",
    "parse_snmp",
    "resolve_modules",
    "vm_problem",
]
