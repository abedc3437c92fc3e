"""Waiting for what a test needs instead of sleeping for a guessed time.

A fixed sleep ("the thread counts a moment after", "the reader drains the queue") is a bet
on how fast a loaded machine schedules the other side; CI runs on two shared cores, where
that bet is lost now and then. :func:`settle` polls instead: the test then asserts on the
value it returns, so a wrong count still fails (after the timeout, with the value in the
message), and a slow machine costs time, not a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def settle(
    read: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float = 10.0,
    interval: float = 0.01,
) -> T:
    """Call ``read`` until ``done(value)`` holds or ``timeout`` seconds have passed; return
    the last value read (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
