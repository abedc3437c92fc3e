"""Exceptions raised by vnetio.

OS failures are built-in :class:`OSError` subclasses with ``errno`` set (for example
:class:`PermissionError` when CAP_NET_ADMIN is missing); their message names the step
that failed and, where one is known, the fix. Bad arguments raise :class:`ValueError` or
:class:`TypeError` before any system call. The classes here cover the rest.
"""

from __future__ import annotations

__all__ = ["AdapterClosedError", "QueueFullError", "VnetError"]


class VnetError(Exception):
    """Base class of vnetio's own exceptions."""


class AdapterClosedError(VnetError, ValueError):
    """The adapter was closed before or during the call (like I/O on a closed file)."""


class QueueFullError(VnetError, BlockingIOError):
    """A bounded in-memory queue had no room (``loopback_pair(overflow="error")``).

    ``sent`` is the number of frames of the call that were queued before it filled; the
    rest were not sent and are still the caller's.
    """

    sent: int = 0
