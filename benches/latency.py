#!/usr/bin/env python3
"""Latency of the promises "Ctrl-C within ~50 ms", "close() wakes a blocked reader" and
"leaving the responder's block stops it within ~50 ms": median and 99th percentile.

Cases (each ``--trials`` times; every trial blocks for a random 20-120 ms first, so the
event lands at a random point of the core's 50 ms wait slices):

* ``sigint``: a child process blocked in ``recv_batch(timeout=None)``; this process sends
  it SIGINT (``kill``, as a terminal's Ctrl-C does). Time from just before ``kill`` to the
  child's ``except KeyboardInterrupt`` (both read CLOCK_MONOTONIC, which is system-wide).
* ``sigint-self``: as the tests do it: a thread of the blocked process sends SIGINT to its
  own process; time from just before ``kill`` to the ``except``.
* ``close``: a thread blocked in ``recv_batch(timeout=None)``, another calls ``close()``;
  time from just before ``close()`` to the reader's ``except AdapterClosedError``.
* ``responder-stop``: an ``EchoResponder`` serving the adapter; how long ``stop()`` (what
  leaving its ``with`` block calls) takes.

Each case runs on a loopback pair (``loopback``) and on a real TAP in a namespace of
its own (``tap``; root). Usage: ``python benches/latency.py [--trials 200] [--adapters
loopback,tap] [--out FILE] [--json FILE] [--benchmarks-md BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import vnetio
from harness import cli
from harness.procs import Child, log
from harness.report import command_line, emit, table_head, table_row, write_section
from vnetio._topology import BridgeLoop
from vnetio.responder import EchoResponder

CASES = ["sigint", "sigint-self", "close", "responder-stop"]
ADAPTERS = ["loopback", "tap"]


def settle() -> None:
    """Stay blocked a random 20-120 ms before the event (a random phase of the slices)."""
    time.sleep(random.uniform(0.02, 0.12))


# --- the adapters -------------------------------------------------------------------


@contextmanager
def adapter(kind: str, netns: str | None) -> Iterator[Any]:
    """A receiving end nobody sends to: one end of a loopback pair, or a TAP (up)."""
    if kind == "loopback":
        a, b = vnetio.loopback_pair(kind="tap")
        with a, b:
            yield b
    else:
        with vnetio.Tap("vnlat0", netns=netns) as tap:
            tap.up()
            yield tap


# --- the child of the `sigint` case ----------------------------------------------------


def interrupt_self(sent_at: list[float]) -> None:
    """After a settle(), note the time in ``sent_at`` and send SIGINT to this process."""
    settle()
    sent_at.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)


def child(kind: str, netns: str | None, self_signal: bool) -> int:
    """Block in recv_batch until SIGINT, report when it arrived, again until stdin ends.
    With ``self_signal`` a thread of this process sends the SIGINT after a settle()."""

    def say(**msg: Any) -> None:
        print(json.dumps(msg), flush=True)

    with adapter(kind, netns) as end:
        for line in sys.stdin:
            if line.strip() != "go":
                break
            sent_at: list[float] = []
            if self_signal:
                threading.Thread(target=interrupt_self, args=(sent_at,), daemon=True).start()
            say(event="ready")
            try:
                end.recv_batch(timeout=None)
                say(event="error", error="recv_batch returned")
                return 1
            except KeyboardInterrupt:
                at = time.monotonic()
            if self_signal:
                while not sent_at:  # the kill returned after the handler ran
                    time.sleep(0.001)
                say(event="interrupted", latency=at - sent_at[0])
            else:
                say(event="interrupted", at=at)
    return 0


def sigint_trials(kind: str, netns: str | None, trials: int, self_signal: bool) -> list[float]:
    argv = [sys.executable, __file__, "--child", kind, "--trials", "0"]
    argv += ["--netns", netns] if netns else []
    argv += ["--self-signal"] if self_signal else []
    out = []
    with Child(argv, f"sigint child ({kind})") as c:
        for _ in range(trials):
            c.send("go")
            c.expect("ready", timeout=10)
            if self_signal:
                out.append(c.expect("interrupted", timeout=10)["latency"])
                continue
            settle()
            sent = time.monotonic()
            c.proc.send_signal(signal.SIGINT)
            out.append(c.expect("interrupted", timeout=10)["at"] - sent)
    return out


# --- in-process cases ---------------------------------------------------------------


def close_trial(kind: str, netns: str | None) -> float:
    done: list[float] = []
    errors: list[BaseException] = []
    with adapter(kind, netns) as end:

        def reader() -> None:
            try:
                end.recv_batch(timeout=None)
            except vnetio.AdapterClosedError:
                done.append(time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        settle()
        start = time.monotonic()
        end.close()
        thread.join(10)
    if errors or not done:
        raise RuntimeError(f"close trial ({kind}): the reader ended with {errors or 'nothing'}")
    return done[0] - start


def responder_trial(kind: str, netns: str | None) -> float:
    with adapter(kind, netns) as end:
        responder = EchoResponder(end, ipv4="192.0.2.2", ipv6=None).start()
        settle()
        start = time.monotonic()
        responder.stop()
        return time.monotonic() - start


def run_case(case: str, kind: str, netns: str | None, trials: int) -> list[float]:
    if case in ("sigint", "sigint-self"):
        return sigint_trials(kind, netns, trials, self_signal=case == "sigint-self")
    trial: Callable[[str, str | None], float] = close_trial if case == "close" else responder_trial
    return [trial(kind, netns) for _ in range(trials)]


# --- the report ---------------------------------------------------------------------


def loadavg() -> list[float]:
    """The 1-, 5- and 15-minute load averages."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(results: list[dict[str, Any]], trials: int, load: str) -> str:
    lines = [
        "## Latency: Ctrl-C, close() and the responder's stop",
        "",
        (
            f"{trials} trials per row, each blocked a random 20-120 ms before the event; "
            f"milliseconds; load: the 1-minute load average before and after the row's trials "
            f"(2 vCPUs; a tail is the machine's scheduling as much as vnetio's). "
            f"Load average at the start: {load}. "
            f"Command: `{command_line()}`"
        ),
        "",
        *table_head(
            ["case", "adapter", "trials", "median", "99th percentile", "max", "load"], "llrrrrr"
        ),
    ]
    for r in results:
        ms = [v * 1000 for v in r["latencies"]]
        lines.append(
            table_row(
                [
                    r["case"],
                    r["adapter"],
                    len(ms),
                    f"{statistics.median(ms):.2f}",
                    f"{percentile(ms, 99):.2f}",
                    f"{max(ms):.2f}",
                    f"{r['load_before'][0]:.1f}-{r['load_after'][0]:.1f}",
                ]
            )
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=200, help="trials per case and adapter (200)")
    p.add_argument("--cases", type=cli.str_list, default=CASES, help=",".join(CASES))
    p.add_argument("--adapters", type=cli.str_list, default=ADAPTERS, help=",".join(ADAPTERS))
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    p.add_argument("--json", type=Path, help="also write every trial's figure here (JSON)")
    p.add_argument("--benchmarks-md", type=Path, help="also (re)write our section of this file")
    p.add_argument("--child", choices=ADAPTERS, help=argparse.SUPPRESS)
    p.add_argument("--netns", help=argparse.SUPPRESS)
    p.add_argument("--self-signal", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.netns, args.self_signal)
    for name in args.cases:
        if name not in CASES:
            p.error(f"unknown case {name!r}: choose from {', '.join(CASES)}")
    if "tap" in args.adapters:
        cli.require_privileges("latency")
    load = " ".join(str(v) for v in loadavg())
    results: list[dict[str, Any]] = []
    with BridgeLoop("latency") if "tap" in args.adapters else _no_loop() as loop:
        for kind in args.adapters:
            netns = loop.netns if kind == "tap" else None
            for case in args.cases:
                before = loadavg()
                latencies = run_case(case, kind, netns, args.trials)
                results.append(
                    {
                        "case": case,
                        "adapter": kind,
                        "latencies": latencies,
                        "load_before": before,
                        "load_after": loadavg(),
                    }
                )
                log(
                    f"{case} {kind}: median {statistics.median(latencies) * 1000:.2f} ms, "
                    f"p99 {percentile(latencies, 99) * 1000:.2f} ms"
                )
    text = summarize(results, args.trials, load)
    data = {"command": command_line(), "load_at_start": load, "results": results}
    emit(text, args.out, args.json, data)
    if args.benchmarks_md is not None:
        write_section(args.benchmarks_md, text, __file__)
    return 0


@contextmanager
def _no_loop() -> Iterator[Any]:
    yield None


if __name__ == "__main__":
    cli.run_main(main)
