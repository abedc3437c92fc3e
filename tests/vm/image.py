"""What a guest boots: the host's kernel (its uncompressed ELF image, which boots through
its PVH entry), and an initramfs built and cached from static busybox, the rig's init,
kernel modules with their dependencies, and host programs with their libraries."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError, VmUnavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
QEMU = "qemu-system-x86_64"
PREFIX = "vnvm"
INIT_SCRIPT = Path(__file__).with_name("guest_init.sh")

#: The virtio-net guest driver and its PCI transport (virtio_net does not depend on
#: virtio_pci: without the transport the guest has no eth0).
VIRTIO_NET_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_net")

#: Bumped whenever the initramfs layout changes, so stale cache entries are not reused.
_CACHE_FORMAT = 1


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
