"""Optional heavy dependencies, imported on first use (STYLE item 17).

``import vnetio`` never imports scapy: the scapy features call :func:`scapy_module` (or
touch a :class:`LazyModule`) when they run, and a missing scapy is an ``ImportError`` that
says how to install it.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

SCAPY_HINT = "pip install vnetio[scapy]"


def _scapy_missing(feature: str, exc: ImportError) -> ImportError:
    err = ImportError(
        f"{feature} needs scapy, which is not installed (or cannot be imported: {exc}). "
        f"Install it with: {SCAPY_HINT}",
        name="scapy",
    )
    err.__cause__ = exc
    return err


def scapy_module(name: str, feature: str = "this vnetio feature") -> ModuleType:
    """Import and return ``name`` (``"scapy.layers.l2"``, …), or raise an ImportError with
    the install hint naming ``feature``."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name is not None and not exc.name.startswith("scapy"):
            raise  # scapy is there but broken by something else: show that as it is
        raise _scapy_missing(feature, exc) from exc


def scapy_available() -> bool:
    """True when scapy can be imported (imports it)."""
    try:
        scapy_module("scapy.packet")
    except ImportError:
        return False
    return True


class LazyModule(ModuleType):
    """A module proxy that imports the real module on first attribute access (polars'
    ``_LazyModule``): ``scapy_l2 = LazyModule("scapy.layers.l2", "scapy inspection")``."""

    def __init__(self, name: str, feature: str) -> None:
        super().__init__(name)
        self._lazy_feature = feature

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy_"):
            raise AttributeError(attr)
        module = scapy_module(self.__name__, self._lazy_feature)
        return getattr(module, attr)

    def __repr__(self) -> str:
        loaded = "loaded" if self.__name__ in sys.modules else "not loaded"
        return f"<lazy module {self.__name__!r} ({loaded})>"
