"""Parent side of the benchmarks' processes: children that speak JSON lines, the native
baselines' build, CPU accounting from ``/proc``, and waiting while another benchmark runs."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

#: The repository (``benches/..``).
ROOT = Path(__file__).resolve().parents[2]
#: Where ``cargo build --release --example NAME`` puts the native baselines.
EXAMPLES = ROOT / "target" / "release" / "examples"


class BenchError(RuntimeError):
    """A child failed, timed out or answered with an error; the message says which."""


def log(msg: str) -> None:
    """Progress for the person watching: stderr, so stdout carries only the report."""
    print(msg, file=sys.stderr, flush=True)


class Child:
    """A benchmark child process driven line by line.

    It answers with one JSON object per stdout line (``{"event": ...}``; an ``{"event":
    "error", "error": ...}`` raises BenchError) and takes commands as stdin lines. Its stderr
    goes to a temporary file whose tail names the failure when it ends early. ``argv`` is run
    as given: prefix it with ``BridgeLoop.ns_argv`` to start it inside a namespace
    (``ip netns exec`` execs, so ``proc.pid`` is the child's own).
    """

    def __init__(
        self, argv: Sequence[str], what: str, *, stop_signal: signal.Signals | None = None
    ) -> None:
        self.what = what
        self.stop_signal = stop_signal
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, timeout: float) -> dict[str, Any]:
        """The next message; BenchError when the child ends, times out or reports an error."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:].strip()
            state = "timed out" if not ready else f"exited ({self.proc.poll()})"
            raise BenchError(f"{self.what}: child {state}: {tail or 'no stderr'}")
        msg: dict[str, Any] = json.loads(line)
        if msg.get("event") == "error":
            raise BenchError(f"{self.what}: {msg.get('error')}")
        return msg

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next message, which must be ``event``."""
        msg = self.read(timeout)
        if msg.get("event") != event:
            raise BenchError(f"{self.what}: expected {event!r}, got {msg}")
        return msg

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def command(self, cmd: str, timeout: float) -> dict[str, Any]:
        self.send(cmd)
        return self.read(timeout)

    def close(self) -> None:
        """Close its stdin (``stop_signal`` too, if set), wait 5 s, then kill it."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.stop_signal is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


def build_example(name: str) -> Path:
    """``cargo build -q --release --example NAME``; the binary's path.

    Always run: a no-op when the example is up to date, and never a stale binary. Raises
    BenchError with cargo's last lines when the build fails.
    """
    log(f"building examples/{name}.rs (cargo build --release --example {name})")
    proc = subprocess.run(
        ["cargo", "build", "-q", "--release", "--example", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    binary = EXAMPLES / name
    if proc.returncode != 0 or not binary.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BenchError(f"cargo build failed: {tail}")
    return binary


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, parent PID, CPU clock ticks in user + system mode of all its threads)
    of process ``pid``, from ``/proc/PID/stat``; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 of proc(5): the state
    return comm, int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_ticks(pid: int) -> int:
    """CPU clock ticks (user + system, all threads) of ``pid`` so far; 0 when it is gone."""
    stat = proc_stat(pid)
    return stat[2] if stat else 0


def busy_ticks() -> int:
    """Clock ticks all CPUs spent busy so far (``/proc/stat``: user, nice, system, irq,
    softirq and the hypervisor's steal; not idle or iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return sum(ticks) - ticks[3] - ticks[4]


class OtherCpu:
    """The share of the machine's CPUs that anything but the measured processes used
    between the start (construction) and ``share()``: other programs, kernel threads,
    softirq and steal. The measured processes' own time (``pids``: all their threads, and
    the kernel work of their system calls) does not count; they must still run when
    ``share()`` is called (a process that has ended has no ticks to subtract)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.t0 = time.monotonic()
        self.busy0 = busy_ticks()
        self.own0 = sum(cpu_ticks(p) for p in self.pids)

    def share(self) -> float:
        """Other work's share of all CPUs since the start (0 to 1)."""
        elapsed = time.monotonic() - self.t0
        busy = busy_ticks() - self.busy0
        own = sum(cpu_ticks(p) for p in self.pids) - self.own0
        capacity = elapsed * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
        return max(0.0, (busy - own) / capacity) if capacity > 0 else 0.0


@dataclass
class Contention:
    """Never measure while another benchmark runs on this machine: ``wait_calm`` waits for
    the processes matching ``patterns`` (``pgrep -f``) to end and keeps what it saw and how
    long it waited, for the report; the caller counts the runs it discarded or kept."""

    patterns: tuple[str, ...]
    waited_s: float = 0.0
    discarded: int = 0
    disturbed: int = 0
    seen: set[str] = field(default_factory=set)

    def others_running(self) -> list[str]:
        out = subprocess.run(
            ["pgrep", "-af", "|".join(self.patterns)], capture_output=True, text=True, check=False
        ).stdout
        me = str(os.getpid())
        return [line for line in out.splitlines() if line.split(" ", 1)[0] != me]

    def wait_calm(self, max_wait: float | None = None) -> None:
        """Wait while another benchmark runs: for ever, or at most ``max_wait`` seconds."""
        announced = False
        waited = 0.0
        while found := self.others_running():
            self.seen.update(line.split(" ", 2)[1].rsplit("/", 1)[-1] for line in found)
            if max_wait is not None and waited >= max_wait:
                log(f"  still running after {waited:.0f} s, going on: {found[0][:100]}")
                return
            waited += 5
            if not announced:
                log(f"  waiting: another benchmark is running: {found[0][:100]}")
                announced = True
            time.sleep(5)
            self.waited_s += 5
