"""vnetio: high-speed packet I/O through Linux TUN/TAP adapters and macvtap links.

>>> import vnetio
>>> a, b = vnetio.loopback_pair()
>>> a.send(b"\\x02" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + b"\\x88\\xb5" + bytes(46))
>>> len(b.recv(timeout=1.0))
60
"""

from __future__ import annotations

from . import _corecheck
from ._corecheck import EXPECTED_ABI as EXPECTED_ABI
from .exceptions import AdapterClosedError, QueueFullError, VnetError

__all__ = [
    "Adapter",
    "AdapterClosedError",
    "AdapterInfo",
    "Batch",
    "CleanupEntry",
    "CleanupResult",
    "EchoResponder",
    "Forwarder",
    "Holder",
    "KernelLoop",
    "Loopback",
    "Macvtap",
    "Offload",
    "Queue",
    "QueueFullError",
    "SerialPair",
    "SlipDecoder",
    "SlipLink",
    "Stats",
    "Tap",
    "Tun",
    "VhostUserNet",
    "VnetError",
    "__version__",
    "cleanup",
    "create_adapter",
    "delete_adapter",
    "list_adapters",
    "loopback_pair",
    "parse_duration",
    "slip_encode",
    "slip_encode_batch",
    "tun_features",
    "validate_ifname",
]

# Raises ImportError when the Rust core does not match this package, except in the `vnetio`
# command, which gets the error back so that `vnetio doctor` can report it (see _corecheck).
__version__ = _corecheck.check_core()

if _corecheck.core_error is not None:
    # Assigned through globals() so that type checkers do not take this fallback for the
    # module's real attributes.
    globals()["__getattr__"] = _corecheck.deferred_getattr(__all__, _corecheck.core_error)
else:
    # Submodules that are part of the API (none of them imports scapy).
    from . import _python_layer  # noqa: F401  (gives the core its Python-side methods)
    from . import aio as aio
    from . import capture as capture
    from . import checksum as checksum
    from . import inspect as inspect
    from . import kernel_loop as kernel_loop
    from . import loopback as loopback
    from . import responder as responder
    from ._core import (
        Adapter,
        Batch,
        Forwarder,
        Loopback,
        Macvtap,
        Offload,
        Queue,
        SerialPair,
        SlipDecoder,
        SlipLink,
        Stats,
        Tap,
        Tun,
        VhostUserNet,
        loopback_pair,
        slip_encode,
        slip_encode_batch,
        tun_features,
        validate_ifname,
    )
    from .hygiene import (
        AdapterInfo,
        CleanupEntry,
        CleanupResult,
        Holder,
        cleanup,
        create_adapter,
        delete_adapter,
        list_adapters,
        parse_duration,
    )
    from .kernel_loop import KernelLoop
    from .responder import EchoResponder
