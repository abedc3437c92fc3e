"""Fail when the wheel's extension needs a C library symbol that auditwheel cannot vouch for.

`auditwheel show` judges a wheel by the *versioned* symbols it imports (``memcpy@GLIBC_2.14``).
An extension module links with undefined symbols allowed (CPython provides ``Py*`` at load
time), so a libc function that zig's glibc 2.17 stubs lack (``memfd_create`` is 2.27, the
``pidfd_*`` wrappers 2.36) links anyway, as an *unversioned* undefined symbol that
auditwheel does not flag and that only fails at import on an older system. The core calls
such system calls through ``libc::syscall`` instead; this check keeps it that way.

Allowed: the Python C API (``Py*``, ``_Py*``), and weak symbols (Rust's standard library
looks up ``statx``, ``getrandom`` and friends weakly and falls back when they are missing).

Usage: python unversioned_symbols.py WHEEL   (needs pyelftools, which auditwheel brings)
"""

from __future__ import annotations

import io
import sys
import zipfile

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerSymSection


def unversioned_imports(elf: ELFFile) -> list[str]:
    dynsym = elf.get_section_by_name(".dynsym")
    versym = elf.get_section_by_name(".gnu.version")
    assert dynsym is not None, "no dynamic symbol table"
    found = []
    for i, sym in enumerate(dynsym.iter_symbols()):
        if not sym.name or sym["st_shndx"] != "SHN_UNDEF":
            continue
        if sym["st_info"]["bind"] == "STB_WEAK" or sym.name.startswith(("Py", "_Py")):
            continue
        ndx = versym.get_symbol(i)["ndx"] if isinstance(versym, GNUVerSymSection) else 0
        if ndx in ("VER_NDX_LOCAL", "VER_NDX_GLOBAL", 0, 1):
            found.append(sym.name)
    return sorted(found)


def main(wheel: str) -> int:
    with zipfile.ZipFile(wheel) as zf:
        libraries = [n for n in zf.namelist() if n.endswith(".so")]
        assert libraries, f"{wheel} holds no shared library"
        bad = {}
        for name in libraries:
            elf = ELFFile(io.BytesIO(zf.read(name)))
            if symbols := unversioned_imports(elf):
                bad[name] = symbols
    if bad:
        for name, symbols in bad.items():
            print(f"{name}: unversioned undefined symbols {', '.join(symbols)}", file=sys.stderr)
        print(
            "A libc function newer than glibc 2.17 (manylinux2014) was linked: call the system "
            "call through libc::syscall, or raise the wheel's manylinux policy.",
            file=sys.stderr,
        )
        return 1
    print(f"{', '.join(libraries)}: every non-Python import is versioned (<= the policy) or weak")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
