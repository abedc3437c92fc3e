"""tcpdump filter expressions, compiled to classic BPF by libpcap.

libpcap itself compiles (no home-made expression parser): the ``libpcap`` package from PyPI
ships a build of it (``libpcap/_platform/linux/<arch>/tcpdump/libpcap.so``), so no system
libpcap is needed. That package's own loader looks only for a system libpcap unless its
config file is edited, so vnetio loads the bundled library directly with ctypes and calls
``pcap_open_dead`` + ``pcap_compile`` — the same two calls tcpdump makes for ``-d``.

>>> from vnetio import filters
>>> program = filters.compile("udp and dst port 53")
>>> len(program) > 0 and program[-1][0] == 0x06   # ends in a ret
True
"""

from __future__ import annotations

import ctypes
import importlib.util
import platform
import threading
from pathlib import Path
from typing import Literal

__all__ = ["LINKTYPE", "Instruction", "compile", "libpcap_version"]

#: (code, jt, jf, k): one classic BPF instruction, as ``tcpdump -dd`` prints it.
Instruction = tuple[int, int, int, int]

#: libpcap link types: Ethernet for TAP frames, raw IP for TUN packets.
LINKTYPE = {"tap": 1, "tun": 12}  # DLT_EN10MB, DLT_RAW


class _Insn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


_lib: ctypes.CDLL | None = None
_lock = threading.Lock()  # pcap_compile is not thread-safe in older libpcaps


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    spec = importlib.util.find_spec("libpcap")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "compiling filter expressions needs the 'libpcap' package: pip install libpcap"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "_platform" / "linux" / platform.machine() / "tcpdump" / "libpcap.so"
    if not path.exists():
        raise ImportError(f"the libpcap package has no bundled library for {platform.machine()}")
    lib = ctypes.CDLL(str(path))
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32,
    ]  # fmt: skip
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    lib.pcap_lib_version.restype = ctypes.c_char_p
    _lib = lib
    return lib


def libpcap_version() -> str:
    """The bundled libpcap's version string."""
    return str(_library().pcap_lib_version().decode())


def compile(
    expression: str, kind: Literal["tap", "tun"] = "tap", *, snaplen: int = 262144
) -> list[Instruction]:
    """Compile a tcpdump expression for TAP (Ethernet) or TUN (raw IP) frames.

    Raises:
        ValueError: libpcap refused the expression (its message is included), or a bad
            ``kind``/``snaplen``.
        ImportError: the ``libpcap`` package is missing.
    """
    if kind not in LINKTYPE:
        raise ValueError(f'kind must be "tap" or "tun", not {kind!r}')
    if not 1 <= snaplen <= 262144:
        raise ValueError(f"snaplen must be between 1 and 262144, not {snaplen}")
    lib = _library()
    with _lock:
        handle = lib.pcap_open_dead(LINKTYPE[kind], snaplen)
        if not handle:
            raise MemoryError("pcap_open_dead failed")
        try:
            program = _Program()
            if lib.pcap_compile(handle, ctypes.byref(program), expression.encode(), 1, 0xFFFFFFFF):
                message = lib.pcap_geterr(handle).decode(errors="replace")
                raise ValueError(f"invalid filter expression {expression!r}: {message}")
            try:
                return [
                    (i.code, i.jt, i.jf, i.k)
                    for i in (program.bf_insns[n] for n in range(program.bf_len))
                ]
            finally:
                lib.pcap_freecode(ctypes.byref(program))
        finally:
            lib.pcap_close(handle)
