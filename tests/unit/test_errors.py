"""The exception contract: hierarchy, Rust panics, version agreement."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import vnetio
import vnetio.exceptions
from vnetio import AdapterClosedError, QueueFullError, VnetError


def test_exception_hierarchy() -> None:
    assert issubclass(VnetError, Exception)
    assert issubclass(AdapterClosedError, VnetError)
    assert issubclass(AdapterClosedError, ValueError)
    assert issubclass(QueueFullError, VnetError)
    assert issubclass(QueueFullError, BlockingIOError)
    assert issubclass(QueueFullError, OSError)


def test_exceptions_are_reexported() -> None:
    for name in ("VnetError", "AdapterClosedError", "QueueFullError"):
        assert getattr(vnetio, name) is getattr(vnetio.exceptions, name)
        assert name in vnetio.__all__


def test_public_names_are_reexported_from_the_core() -> None:
    for name in ("Tap", "Tun", "Batch", "Stats", "Queue", "Loopback", "loopback_pair",
                 "tun_features"):  # fmt: skip
        assert getattr(vnetio, name) is getattr(vnetio._core, name), name
        assert name in vnetio.__all__


def test_core_raises_the_python_defined_classes() -> None:
    a, b = vnetio.loopback_pair(1, overflow="error")
    a.send(b"\x00" * 60)
    with pytest.raises(QueueFullError) as info:
        a.send(b"\x00" * 60)
    assert type(info.value) is vnetio.exceptions.QueueFullError
    a.close()
    b.close()
    with pytest.raises(AdapterClosedError) as closed:
        a.recv(timeout=0)
    assert type(closed.value) is vnetio.exceptions.AdapterClosedError


def test_rust_panic_surfaces_as_panic_exception() -> None:
    with pytest.raises(BaseException) as info:
        vnetio._core._panic_for_test()
    exc_type = type(info.value)
    assert exc_type.__name__ == "PanicException"
    assert exc_type.__module__ == "pyo3_runtime"
    # The interpreter is still usable, and so is the extension.
    a, b = vnetio.loopback_pair()
    a.send(b"\x01" * 60)
    assert b.recv(timeout=1) == b"\x01" * 60
    a.close()
    b.close()


def test_rust_panic_does_not_kill_the_interpreter() -> None:
    code = textwrap.dedent(
        """
        import vnetio
        try:
            vnetio._core._panic_for_test()
        except BaseException as exc:
            print(type(exc).__module__, type(exc).__name__)
        print("alive")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["pyo3_runtime PanicException", "alive"]


def test_version_matches_the_core() -> None:
    assert isinstance(vnetio.__version__, str)
    assert vnetio.__version__
    assert vnetio.__version__ == vnetio._core.__version__
