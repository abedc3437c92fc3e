"""vnetio: high-speed packet I/O through Linux TUN/TAP adapters.

>>> import vnetio
>>> a, b = vnetio.loopback_pair()
>>> a.send(b"\\x02" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + b"\\x88\\xb5" + bytes(46))
>>> len(b.recv(timeout=1.0))
60
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from . import _core
from ._core import (
    Adapter,
    Batch,
    Loopback,
    Queue,
    Stats,
    Tap,
    Tun,
    loopback_pair,
    tun_features,
    validate_ifname,
)
from .exceptions import AdapterClosedError, QueueFullError, VnetError

__all__ = [
    "Adapter",
    "AdapterClosedError",
    "Batch",
    "Loopback",
    "Queue",
    "QueueFullError",
    "Stats",
    "Tap",
    "Tun",
    "VnetError",
    "__version__",
    "loopback_pair",
    "tun_features",
    "validate_ifname",
]

#: The core ABI this Python layer was written against (see ``src/lib.rs``).
EXPECTED_ABI = 1


def _check_core() -> str:
    """Refuse to run with a Rust core built from other sources than this package."""
    try:
        package = _dist_version("vnetio")
    except PackageNotFoundError:  # running from a source tree without metadata
        package = _core.__version__
    if _core.ABI_VERSION != EXPECTED_ABI or _core.__version__ != package:
        raise ImportError(
            f"vnetio's Rust core does not match its Python package: core {_core.__version__} "
            f"(ABI {_core.ABI_VERSION}) vs package {package} (ABI {EXPECTED_ABI}). "
            "Rebuild or reinstall so both come from one source: `make build` in a checkout, "
            "or `pip install --force-reinstall vnetio`."
        )
    return package


__version__ = _check_core()
