"""Old home of the loopback topologies, kept so ``vnetio.loopback`` imports keep working.

The in-memory pair is the core's (``vnetio.loopback_pair``, ``vnetio.Loopback``);
:class:`~vnetio.kernel_loop.KernelLoop` lives in ``vnetio.kernel_loop`` and
:class:`~vnetio.responder.EchoResponder` in ``vnetio.responder``.
"""

from __future__ import annotations

from ._core import Loopback, loopback_pair
from .kernel_loop import KernelLoop
from .responder import EchoResponder, Kind, random_mac

__all__ = ["EchoResponder", "KernelLoop", "Kind", "Loopback", "loopback_pair", "random_mac"]
