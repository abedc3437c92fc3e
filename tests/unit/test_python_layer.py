"""The core never imports vnetio's Python modules: the package hands it the Python-side
functions of its methods once, at import (``vnetio/_python_layer.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import vnetio
from vnetio import _core

ROOT = Path(__file__).resolve().parents[2]


def test_the_core_names_no_vnetio_python_module() -> None:
    """No `py.import("vnetio…")` in the bindings (the exception classes, imported by
    `import_exception!`, are the one thing the core reads from vnetio's Python code)."""
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.rs")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.import\(\s*\"vnetio", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_a_second_install_is_refused() -> None:
    with pytest.raises(RuntimeError, match="already installed"):
        _core._install_python_layer({})


def test_the_core_alone_says_what_is_missing() -> None:
    """Imported without the package's __init__ (a tool loading the extension directly),
    a Python-side method says so instead of failing obscurely."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('vnetio._core', {_core.__file__!r})\n"
        "core = importlib.util.module_from_spec(spec); spec.loader.exec_module(core)\n"
        "a, b = core.loopback_pair()\n"
        "try:\n"
        "    a.capture_to('/dev/null')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
        "for bad in ({}, {'recv_batch_async': 1}):\n"
        "    try:\n"
        "        core._install_python_layer(bad)\n"
        "    except (TypeError, ValueError) as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "installed by the vnetio package" in out.stdout, out.stderr
    assert "import vnetio" in out.stdout
    assert "ValueError missing function recv_batch_async" in out.stdout
    assert "TypeError recv_batch_async must be callable" in out.stdout


def test_every_forwarding_method_reaches_its_python_function() -> None:
    a, b = vnetio.loopback_pair()
    with a, b:
        frame = bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + bytes(46)
        sent = a.send_packets([frame])  # bytes pass through send_packets unchanged
        assert sent == 1
        batch = b.recv_batch(timeout=1.0)
        assert len(batch.filter(lambda pkt: True)) == 1
        assert len(batch.filter("ether proto 0x88b5")) == 1
        assert len(batch.to_scapy()) == 1
