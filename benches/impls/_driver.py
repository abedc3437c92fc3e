"""Child side of the bridge-loop benchmark: the command protocol every implementation obeys.

Each implementation runs in its own process, started inside the benchmark's network
namespace (``ip netns exec``) by ``benches/bridge_loop.py``. It attaches its reader to TAP B
first and its writer to TAP A, prints ``{"event": "ready", ...}`` and then answers one
command per stdin line with one JSON line on stdout:

``noise SECONDS``  read with the writer idle; count every frame and our own frames.
``run SECONDS``    the timed loop: an unpaced writer thread on A, a reader thread on B.
``write COUNT``    write COUNT frames (writer side; used to fill B's ring for the ceiling).
``drain COUNT``    time reading COUNT of our frames already queued on B (reader side).
``quit``           (or end of input) exit.

Interpreter start-up and imports happen before ``ready``, so they are never timed. A frame
counts as delivered only if it has the benchmark's size and carries our source MAC and
EtherType at bytes 6..14 (see ``vnetio._topology``); everything else is noise. The reader
keeps reading after the writer stops until its ring is empty, and the reader's seconds run
from the start of the phase to that moment: delivered/s is a receive rate.

``examples/native_bridge.rs --control`` speaks the same protocol.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_topology() -> ModuleType:
    """Import ``python/vnetio/_topology.py`` by path (no ``vnetio`` package import needed)."""
    path = ROOT / "python" / "vnetio" / "_topology.py"
    spec = importlib.util.spec_from_file_location("vnetio_bench_topology", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


topology = load_topology()


class Flag:
    """A stop flag cheaper to test in a hot loop than ``threading.Event.is_set()``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = False


class Impl:
    """One implementation under test; subclasses fill in the I/O methods.

    Counts are returned as tuples: writers ``(written, errors)``; ``read_until`` returns
    ``(own, other, t_end)`` where ``t_end`` is the ``time.perf_counter()`` at which the reader
    first found its ring empty after its last frame (so a final idle wait is not timed);
    ``drain`` returns ``(own, other)``.
    """

    name = "?"

    def __init__(self, size: int) -> None:
        self.size = size
        self.frame = topology.build_frame(size)
        self.sig = topology.frame_signature()

    def open_reader(self, tap: str) -> None:
        raise NotImplementedError

    def open_writer(self, tap: str) -> None:
        raise NotImplementedError

    def write_until(self, stop: Flag) -> tuple[int, int]:
        raise NotImplementedError

    def write_count(self, count: int) -> tuple[int, int]:
        raise NotImplementedError

    def read_until(self, done: Flag) -> tuple[int, int, float]:
        """Read until ``done`` is set *and* the ring is empty."""
        raise NotImplementedError

    def drain(self, count: int) -> tuple[int, int]:
        """Read until ``count`` own frames, or 1 s without any frame."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _reply(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _run(impl: Impl, seconds: float) -> dict[str, object]:
    stop, writer_done = Flag(), Flag()
    barrier = threading.Barrier(3)
    out: dict[str, object] = {}

    def writer() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        try:
            out["written"], out["write_errors"] = impl.write_until(stop)
        finally:
            out["write_seconds"] = time.perf_counter() - t0
            writer_done.value = True

    def reader() -> None:
        barrier.wait()
        t0 = time.perf_counter()
        out["delivered"], out["noise"], t_end = impl.read_until(writer_done)
        out["seconds"] = t_end - t0

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(seconds)
    stop.value = True
    for t in threads:
        t.join()
    delivered = int(out["delivered"])  # type: ignore[call-overload]
    rate = delivered / float(out["seconds"])  # type: ignore[arg-type]
    return {"event": "run", "impl": impl.name, "size": impl.size, **out, "delivered_per_s": rate}


def _noise(impl: Impl, seconds: float) -> dict[str, object]:
    done = Flag()
    result: list[tuple[int, int, float]] = []
    t0 = time.perf_counter()
    t = threading.Thread(target=lambda: result.append(impl.read_until(done)))
    t.start()
    time.sleep(seconds)
    done.value = True
    t.join()
    own, other, _ = result[0]
    return {
        "event": "noise",
        "own": own,
        "frames": own + other,
        "seconds": time.perf_counter() - t0,
    }


def serve(impl_cls: type[Impl]) -> int:
    """Parse the common options, attach, print ``ready`` and obey commands until ``quit``."""
    parser = argparse.ArgumentParser(description=f"bridge-loop child: {impl_cls.name}")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tap-a", default="vnA")
    parser.add_argument("--tap-b", default="vnB")
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--reader-only", action="store_true")
    side.add_argument("--writer-only", action="store_true")
    args = parser.parse_args()

    impl = impl_cls(args.size)
    try:
        # Reader first: B needs an attached fd (carrier) before anything is written to A.
        if not args.writer_only:
            impl.open_reader(args.tap_b)
        if not args.reader_only:
            impl.open_writer(args.tap_a)
    except Exception as exc:  # noqa: BLE001 - reported as JSON, not as a traceback
        _reply({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _reply({"event": "ready", "impl": impl.name, "pid": os.getpid()})
    for line in sys.stdin:
        words = line.split()
        cmd, arg = (words + ["", "0"])[:2]
        if cmd in ("quit", ""):
            break
        try:
            _reply(_command(impl, cmd, arg))
        except Exception as exc:  # noqa: BLE001 - the parent reads errors as JSON lines
            _reply({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
    impl.close()
    return 0


def _command(impl: Impl, cmd: str, arg: str) -> dict[str, object]:
    if cmd == "run":
        return _run(impl, float(arg))
    if cmd == "noise":
        return _noise(impl, float(arg))
    t0 = time.perf_counter()
    if cmd == "write":
        written, errors = impl.write_count(int(arg))
        seconds = time.perf_counter() - t0
        return {"event": "write", "written": written, "write_errors": errors, "seconds": seconds}
    if cmd == "drain":
        own, other = impl.drain(int(arg))
        seconds = time.perf_counter() - t0
        return {"event": "drain", "delivered": own, "noise": other, "seconds": seconds}
    return {"event": "error", "error": f"unknown command {cmd!r}"}
