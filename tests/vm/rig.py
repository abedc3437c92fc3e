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
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .errors import (
    CommandFailed,
    CommandTimeout,
    GuestBootError,
    GuestDied,
    GuestHung,
    VmError,
    VmUnavailable,
)
from .image import (
    PREFIX,
    QEMU,
    VIRTIO_NET_MODULES,
    Kernel,
    boot_image,
    build_initramfs,
    cache_dir,
    find_busybox,
    find_kernel,
    initramfs_spec,
    resolve_modules,
    vm_problem,
)
from .nics import FdNic, Nic, TapNic, VhostUserNic, open_macvtap

#: Most bytes (command + stdin) sent in one request: what waits in the guest's tty buffers
#: before the server reads it must stay below their ~64 KB limit. :meth:`Guest.put_file`
#: sends larger data in acknowledged chunks.
MAX_REQUEST = 32 * 1024
#: How long the host waits beyond a command's own timeout before declaring the guest hung.
HANG_GRACE = 15.0


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
    "PREFIX",
    "QEMU",
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
    "cache_dir",
    "find_busybox",
    "find_kernel",
    "initramfs_spec",
    "live_guests",
    "open_macvtap",
    "parse_snmp",
    "resolve_modules",
    "vm_problem",
]
