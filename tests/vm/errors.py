"""Errors of the guest rig (all ``VmError``; messages carry the console tail)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rig import Result

# --------------------------------------------------------------------------- errors


class VmError(RuntimeError):
    """Something went wrong with a guest; the message ends with its console tail."""


class VmUnavailable(VmError):
    """QEMU, a kernel with modules, or static busybox is missing on this host."""


class GuestBootError(VmError):
    """QEMU exited during boot, or the command server did not start in time."""


class GuestHung(VmError):
    """The guest stopped answering; it has been killed."""


class GuestDied(VmError):
    """QEMU exited while the host waited for the guest."""


class CommandTimeout(VmError):
    """A command outlived its timeout and was killed inside the guest (guest still usable)."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


class CommandFailed(VmError):
    """``run(..., check=True)`` and the command exited non-zero."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result
