"""Commands that hold something until a signal: ``serial pair``, ``slip attach``, ``wg up``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ctrl_c_interrupts", "hold", "until_signal"]


@contextmanager
def until_signal() -> Iterator[threading.Event]:
    """An event set by SIGTERM or Ctrl-C (SIGINT): handled, so a signal that comes at any
    moment ends the command through its normal path (counters printed, exit status 0)."""
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        # Not done.set() here: a handler runs in the main thread between two bytecodes,
        # maybe while that thread holds the event's lock (done.wait() takes it on its way
        # in and out), and the lock is not reentrant: the command would hang for good,
        # deaf to any later signal. A thread sets it once the main thread lets go.
        threading.Thread(target=done.set, name="vnetio-signal", daemon=True).start()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield done
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextmanager
def ctrl_c_interrupts() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt while the command runs, even when the command was
    started with SIGINT ignored (as a non-interactive shell starts its background jobs;
    Python then leaves it ignored), so `kill -INT` stops it as Ctrl-C does, like tcpdump."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def hold(done: threading.Event, seconds: float | None) -> None:
    try:
        # Short waits: the main thread must come back to Python for Ctrl-C to be seen.
        remaining = seconds
        while not done.is_set() and (remaining is None or remaining > 0):
            done.wait(0.2 if remaining is None else min(0.2, remaining))
            if remaining is not None:
                remaining -= 0.2
    except KeyboardInterrupt:
        pass
