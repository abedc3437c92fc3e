"""The commands that hold something until a signal (``vnetio serial pair``, ``slip attach``,
``wg up``: vnetio/cli/running.py) end on SIGINT/SIGTERM whenever the signal lands.

A Python signal handler runs in the main thread between two bytecodes. The main thread
spends its time in ``done.wait()``, which holds the event's (non-reentrant) lock on its way
in and out: a handler that set the event itself would block on that lock for good, and the
command would hang, deaf to every later signal (seen once as `vnetio serial pair` not ending
on SIGINT on a loaded machine). Here the signal is made to land at exactly that moment.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, signal
    from vnetio.cli.running import hold, until_signal

    with until_signal() as done:
        with done._cond:  # held, as done.wait() holds it on its way in and out
            os.kill(os.getpid(), signal.{SIG})  # the handler runs in this thread, now
            sum(range(1000))
        print("set" if done.wait(10) else "not set", flush=True)
        hold(done, None)  # returns at once: the command goes on to its normal end
    print("ended", flush=True)
    """
)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_main_thread_holds_the_events_lock_ends_the_command(
    sig: str,
) -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT.replace("{SIG}", sig)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sig} deadlocked its own handler (killed after 30 s)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["set", "ended"], proc.stdout


def test_the_previous_handlers_are_put_back() -> None:
    from vnetio.cli.running import until_signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with until_signal():
        assert signal.getsignal(signal.SIGINT) not in before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
