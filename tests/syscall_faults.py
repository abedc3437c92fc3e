"""Make real system calls fail, for the fault tests: seccomp filters built with ctypes.

A test runs its scenario in a **child process** (:func:`run_child`): a seccomp filter
cannot be removed once installed, so it must never be installed in the pytest process.
Inside the child, :func:`install` loads a classic-BPF seccomp program made of
:class:`Rule` objects: a rule names a system call, conditions on its arguments (seccomp
sees the argument registers, never the memory they point to) and what the kernel does
instead of running the call: fail with an errno (:func:`errno_action`), kill only the
calling thread (``KILL_THREAD``), or ask a supervisor (``USER_NOTIF``).

:class:`Supervisor` is that supervisor: a thread of the child started *before* the filter
is installed (a filter binds the thread that installs it and the threads it creates
later, not older ones), so its own system calls are never filtered. For each call the
filter hands it, it reads the call's arguments in the child's own memory (the caller is
blocked in the kernel meanwhile) and decides: let the call run (``CONTINUE``) or fail it
with an errno. That is how a test fails only the ``writev`` calls whose virtio-net header
announces a GSO super-frame, which no argument register shows.

Linux x86_64 only (the system call numbers below); the filter lets every call of any
other architecture through. Nothing here imports vnetio.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SYSCALLS = {
    "read": 0,
    "write": 1,
    "ioctl": 16,
    "pwrite64": 18,
    "readv": 19,
    "writev": 20,
    "sendto": 44,
    "sendmsg": 46,
    "setsockopt": 54,
    "getsockopt": 55,
    "clone": 56,
    "pwritev": 296,
    "pwritev2": 328,
    "sendmmsg": 307,
    "clone3": 435,
}
SYS_SECCOMP = 317
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3

ALLOW = 0x7FFF0000
KILL_THREAD = 0x00000000
USER_NOTIF = 0x7FC00000
_RET_ERRNO = 0x00050000

CLONE_THREAD = 0x00010000

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16

# Classic BPF opcodes (linux/bpf_common.h).
_LD_W_ABS = 0x20
_ALU_AND_K = 0x54
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06


def errno_action(code: int) -> int:
    """The filter action "fail the call with ``code``"."""
    return _RET_ERRNO | (code & 0xFFFF)


@dataclass(frozen=True)
class Arg:
    """A condition on the low 32 bits of argument ``index``: ``op`` is ``"eq"``,
    ``"ge"`` (unsigned), ``"ne"``, ``"bits"`` (any of ``value``'s bits set) or
    ``"mask0"`` (none of ``value``'s bits set)."""

    index: int
    op: str
    value: int


@dataclass(frozen=True)
class Rule:
    """When ``syscall`` is called with every condition of ``args`` true: ``action``."""

    syscall: str
    action: int
    args: Sequence[Arg] = field(default_factory=tuple)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


Insn = tuple[int, int, int, int]


def _rule_block(rule: Rule) -> list[Insn]:
    """One rule: instructions that return its action, or fall through to what follows.
    A jump's "false" target ``None`` means "past this block", resolved below."""
    body: list[tuple[int, int, int | None, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JEQ_K, 0, None, SYSCALLS[rule.syscall]),
    ]
    for cond in rule.args:
        body.append((_LD_W_ABS, 0, 0, _OFF_ARGS + 8 * cond.index))  # low half, little-endian
        if cond.op == "eq":
            body.append((_JEQ_K, 0, None, cond.value))
        elif cond.op == "ge":
            body.append((_JGE_K, 0, None, cond.value))
        elif cond.op == "bits":
            body.append((_JSET_K, 0, None, cond.value))
        elif cond.op == "mask0":
            body.append((_ALU_AND_K, 0, 0, cond.value))
            body.append((_JEQ_K, 0, None, 0))
        elif cond.op == "ne":
            # jt = past the block (equal: no match), jf = go on.
            body.append((_JEQ_K, -1, 0, cond.value))
        else:
            raise ValueError(f"unknown condition {cond.op!r}")
    body.append((_RET_K, 0, 0, rule.action))
    out: list[Insn] = []
    for i, (code, jt, jf, k) in enumerate(body):
        past = len(body) - i - 1
        out.append((code, past if jt == -1 else jt, past if jf is None else jf, k))
    return out


def compile_rules(rules: Sequence[Rule], default: int = ALLOW) -> list[Insn]:
    """The classic-BPF program: other architectures pass, then each rule, then ``default``."""
    prog: list[Insn] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, ALLOW),
    ]
    for rule in rules:
        prog += _rule_block(rule)
    prog.append((_RET_K, 0, 0, default))
    for code, jt, jf, _ in prog:
        assert 0 <= jt < 256 and 0 <= jf < 256, (code, jt, jf)
    return prog


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def install(rules: Sequence[Rule], *, all_threads: bool = False, listener: bool = False) -> int:
    """Install the filter on the calling thread (and the threads it starts later); with
    ``all_threads`` on every thread of the process (TSYNC), for a thread vnetio already
    started. With ``listener`` returns the user-notification descriptor (else 0)."""
    insns = compile_rules(rules)
    array = (_SockFilter * len(insns))(*[_SockFilter(*i) for i in insns])
    prog = _SockFprog(len(insns), ctypes.cast(array, ctypes.POINTER(_SockFilter)))
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    flags = (SECCOMP_FILTER_FLAG_TSYNC if all_threads else 0) | (
        SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0
    )
    rc = _libc.syscall(
        ctypes.c_long(SYS_SECCOMP),
        ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(flags),
        ctypes.byref(prog),
    )
    if rc < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")
    if all_threads and rc > 0:  # TSYNC names the thread that could not take the filter
        raise OSError(errno_mod.ESRCH, f"seccomp TSYNC failed on thread {rc}")
    return int(rc)


# --- user notification: a supervisor thread decides ---------------------------------------


class _SeccompData(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class _Notif(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", _SeccompData),
    ]


class _NotifResp(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_RECV = _iowr(0, ctypes.sizeof(_Notif))
NOTIF_SEND = _iowr(1, ctypes.sizeof(_NotifResp))
FLAG_CONTINUE = 1

_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def read_iovecs(address: int, count: int) -> list[bytes]:
    """The buffers of a ``struct iovec[count]`` at ``address`` in this process."""
    vecs = (Iovec * count).from_address(address)
    return [ctypes.string_at(v.base, v.len) if v.len else b"" for v in vecs]


class Msghdr(ctypes.Structure):
    """``struct msghdr`` (x86_64)."""

    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class Mmsghdr(ctypes.Structure):
    """``struct mmsghdr``: what ``sendmmsg``/``recvmmsg`` take an array of."""

    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint32)]


def control_messages(msg: Msghdr) -> list[tuple[int, int, bytes]]:
    """The control messages of ``msg`` in this process: ``(level, type, data)`` each."""
    out: list[tuple[int, int, bytes]] = []
    offset, header = 0, 16  # cmsghdr: size_t len; int level; int type; then the data
    while msg.control and offset + header <= msg.controllen:
        raw = ctypes.string_at(msg.control + offset, header)
        length = int.from_bytes(raw[:8], "little")
        if length < header or offset + length > msg.controllen:
            break
        level = int.from_bytes(raw[8:12], "little", signed=True)
        kind = int.from_bytes(raw[12:16], "little", signed=True)
        out.append((level, kind, ctypes.string_at(msg.control + offset + header, length - header)))
        offset += (length + 7) & ~7  # CMSG_ALIGN
    return out


@dataclass(frozen=True)
class Returns:
    """What a :class:`Supervisor`'s ``decide`` returns to answer a call with ``value``
    (success) without running it: e.g. the count of a ``sendmmsg`` the supervisor did part
    of itself."""

    value: int


class Supervisor:
    """Answers the calls a ``USER_NOTIF`` rule hands over: ``decide(nr, args)`` returns 0
    to let the call run, an errno to fail it with, or :class:`Returns` to answer it without
    running it (``refused`` counts both of these, ``allowed`` the calls let run). Start it
    before :func:`install`: its own calls are never filtered."""

    def __init__(self, decide: Callable[[int, tuple[int, ...]], int | Returns]) -> None:
        self.decide = decide
        self.listener = -1
        self.refused = 0
        self.allowed = 0
        self.errors: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seccomp-supervisor", daemon=True)
        self._thread.start()

    def install(self, rules: Sequence[Rule]) -> None:
        """Install ``rules`` on the calling thread and hand their notifications to us."""
        self.listener = install(rules, listener=True)
        self._ready.set()

    def _run(self) -> None:
        self._ready.wait()
        while True:
            notif = _Notif()
            if _libc.ioctl(self.listener, NOTIF_RECV, ctypes.byref(notif)) != 0:
                err = ctypes.get_errno()
                if err in (errno_mod.EINTR, errno_mod.ENOENT):
                    continue  # the caller was interrupted or is gone
                self.errors.append(f"NOTIF_RECV: {os.strerror(err)}")
                return
            try:
                code = self.decide(notif.data.nr, tuple(notif.data.args))
            except Exception as exc:  # noqa: BLE001 - reported by the test, call let through
                self.errors.append(repr(exc))
                code = 0
            if isinstance(code, Returns):
                resp = _NotifResp(notif.id, code.value, 0, 0)
            else:
                resp = _NotifResp(notif.id, 0, -code if code else 0, 0 if code else FLAG_CONTINUE)
            if code:
                self.refused += 1
            else:
                self.allowed += 1
            if _libc.ioctl(self.listener, NOTIF_SEND, ctypes.byref(resp)) != 0:
                err = ctypes.get_errno()
                if err != errno_mod.ENOENT:
                    self.errors.append(f"NOTIF_SEND: {os.strerror(err)}")


# --- running a scenario in a child process ----------------------------------------------


def run_child(
    *scripts: str, timeout: float = 60, netns: str | None = None, **params: Any
) -> dict[str, Any]:
    """Run ``scripts`` (Python source, each dedented, one after the other) in a fresh
    interpreter (in network namespace ``netns`` if given), with ``PARAMS``
    bound to ``params`` and this module importable as ``tests.syscall_faults``; the
    script reports by calling ``report(dict)``. Returns that dict, plus ``"stderr"``.

    Raises AssertionError (with the child's output) when it exits non-zero, reports
    nothing, or is still running after ``timeout`` seconds (it is killed then).
    """
    prelude = textwrap.dedent(
        """
        import json, sys
        PARAMS = json.loads(sys.argv[1])
        def report(result):
            sys.stdout.write("\\nREPORT " + json.dumps(result) + "\\n")
            sys.stdout.flush()
        """
    )
    source = prelude + "\n".join(textwrap.dedent(s) for s in scripts)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", source, json.dumps(params)]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"child still running after {timeout} s (killed)\nstdout:\n{out}\nstderr:\n{err}"
        ) from None
    lines = [line for line in out.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, (
        f"child exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    )
    result: dict[str, Any] = json.loads(lines[-1][len("REPORT ") :])
    result["stderr"] = err
    return result
