"""Private network topologies for the demo and the benchmarks: the "bridge loop".

A :class:`BridgeLoop` is a network namespace of its own holding a Linux bridge and two
persistent TAP adapters, ``vnA`` and ``vnB``, enslaved to it. A frame written into an fd
attached to ``vnA`` comes out of an fd attached to ``vnB``, as long as its destination MAC
is a unicast address nobody on the bridge owns (the bridge floods it) and both ports are
forwarding (each TAP needs an attached fd, or it has no carrier).

Design choice: the topology is built by shelling out to iproute2 (``ip``, ``bridge``) and
``sysctl`` run with ``ip netns exec``. It is set-up code, run once per benchmark run, where a
few milliseconds per command do not matter; iproute2 is what a reader would type to
reproduce or inspect the topology by hand, its JSON output (``-j``) is stable, and it keeps
the extension free of netlink code it does not otherwise need. The adapters themselves are
opened through vnetio (``vnetio.Tap("vnA", netns=loop.netns)``) or through whatever
implementation is being measured.

Everything is created inside the namespace, so deleting the namespace removes it all. The
namespace name is ``vnetio-<purpose>-<pid>-<rand4>``; :meth:`BridgeLoop.close` (called by
``__exit__``, also on errors and Ctrl-C) ends the processes this program started inside the
namespace, by PID, and deletes it.
"""

from __future__ import annotations

import array
import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Self

__all__ = [
    "DST_MAC",
    "ETHERTYPE",
    "SRC_MAC",
    "BridgeLoop",
    "TopologyError",
    "build_frame",
    "count_own_frames",
    "decode_frame",
    "frame_signature",
    "have_privileges",
    "mac_bytes",
    "mac_str",
]

#: Source MAC of every test frame: locally administered (0x02 bit), unicast, ours.
SRC_MAC = "02:76:6e:10:00:01"
#: Destination MAC of every test frame: locally administered unicast that no device on
#: the bridge owns, so the bridge floods it to the other port and never delivers it
#: locally. Never send a frame *from* this address (the bridge would learn it on the
#: writing port and black-hole every later test frame).
DST_MAC = "02:76:6e:10:00:02"
#: IEEE 802 "local experimental EtherType 1": no protocol stack on the path parses it.
ETHERTYPE = 0x88B5

_ETH_HEADER = 14
_MIN_FRAME = 60  # without FCS; the kernel accepts shorter, but 60 is the Ethernet minimum
_MAX_FRAME = 65535

#: IFF_* flags, for the "attach by ioctl yourself" baseline and for doctor-like checks.
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


class TopologyError(RuntimeError):
    """An iproute2 command that builds or inspects the topology failed."""


def mac_bytes(mac: str) -> bytes:
    """``"02:00:00:00:00:01"`` -> 6 bytes."""
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_str(raw: bytes) -> str:
    """6 bytes -> ``"02:00:00:00:00:01"``."""
    return ":".join(f"{b:02x}" for b in raw[:6])


def frame_signature(src: str = SRC_MAC, ethertype: int = ETHERTYPE) -> bytes:
    """Bytes 6..14 of every test frame (source MAC + EtherType): how readers spot their own."""
    return mac_bytes(src) + ethertype.to_bytes(2, "big")


def build_frame(
    size: int,
    *,
    src: str = SRC_MAC,
    dst: str = DST_MAC,
    ethertype: int = ETHERTYPE,
    seq: int = 0,
) -> bytes:
    """Build an Ethernet frame of exactly ``size`` bytes (no FCS), e.g. 64 or 1514.

    Layout: destination MAC, source MAC, EtherType, then a payload holding ``seq`` as a
    big-endian 64-bit counter followed by a repeating byte pattern.
    """
    if not _MIN_FRAME <= size <= _MAX_FRAME:
        raise ValueError(f"frame size must be in [{_MIN_FRAME}, {_MAX_FRAME}], got {size}")
    header = mac_bytes(dst) + mac_bytes(src) + ethertype.to_bytes(2, "big")
    payload_len = size - _ETH_HEADER
    payload = seq.to_bytes(8, "big") + bytes(i & 0xFF for i in range(payload_len - 8))
    frame = header + payload
    assert len(frame) == size
    return frame


def count_own_frames(batch: Any, size: int, signature: bytes | None = None) -> int:
    """How many frames of ``batch`` (a ``vnetio.Batch``) are test frames of ``size`` bytes.

    A test frame has the given size and the ``signature`` (source MAC + EtherType) at bytes
    6..14. When the batch's arena is exactly ``len(batch) * size`` bytes, every frame starts
    at a multiple of ``size`` and the signature bytes of all frames are compared as strided
    columns of the arena, in C; otherwise (foreign frames mixed in) frame by frame.
    """
    sig = _DEFAULT_SIGNATURE if signature is None else signature
    n = len(batch)
    if n == 0:
        return 0
    view = memoryview(batch).cast("B")
    if view.nbytes == n * size and size > len(sig) + 6 and _columns_match(view, sig, size, n):
        return n
    return sum(1 for f in batch if len(f) == size and f[6:14] == sig)


def _columns_match(view: memoryview, sig: bytes, size: int, n: int) -> bool:
    """Whether each of the ``n`` frames of ``size`` bytes in ``view`` has ``sig`` at byte 6.

    An 8-byte signature is compared as one 8-byte word per frame: a memoryview compares
    element by element at a few ns each, and eight one-byte columns cost ~40 ns per frame
    at 256 frames a batch, 4% of a reader's whole per-frame cost (BENCHMARKS.md, reader-only
    ceiling). Frame k's signature starts at 6 + k * size; seen as words from byte
    6 + r * size, frames r, r + g, r + 2g, ... (g = 8 / gcd(size, 8)) fall on word
    boundaries, so g strided word columns cover all frames. Other lengths: byte columns.
    """
    if len(sig) == _WORD:
        for frames, stride, column in _word_plan(sig, size, n):
            if view[frames].cast("Q")[::stride] != column:
                return False
        return True
    columns = _signature_columns(sig, n, "B")
    return all(view[6 + j :: size] == column[:n] for j, column in enumerate(columns))


_WORD = 8
_PLANS: dict[tuple[bytes, int, int], list[tuple[slice, int, memoryview]]] = {}


def _word_plan(sig: bytes, size: int, n: int) -> list[tuple[slice, int, memoryview]]:
    """For :func:`_columns_match`: per word column, the arena slice that holds it, the
    stride in words, and the expected column (cached per signature, size and count)."""
    key = (sig, size, n)
    plan = _PLANS.get(key)
    if plan is None:
        group = _WORD // math.gcd(size, _WORD)
        stride = group * size // _WORD  # in words, between frames r and r + group
        column = _signature_columns(sig, n, "Q")[0]
        plan = []
        for r in range(min(group, n)):
            count = (n - r + group - 1) // group  # frames r, r + group, ... below n
            start = 6 + r * size
            frames = slice(start, start + _WORD * ((count - 1) * stride + 1))
            plan.append((frames, stride, column[:count]))
        if len(_PLANS) > 1024:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


_COLUMNS: dict[tuple[bytes, str], list[memoryview]] = {}
_DEFAULT_SIGNATURE = frame_signature()


def _signature_columns(sig: bytes, n: int, code: str) -> list[memoryview]:
    """Column j = element j of ``sig`` (``code`` "B": byte j; "Q": the 8 bytes as one word,
    native byte order) repeated at least ``n`` times (cached)."""
    key = (sig, code)
    columns = _COLUMNS.get(key)
    if columns is None or len(columns[0]) < n:
        width = array.array(code).itemsize
        values = [
            int.from_bytes(sig[i : i + width], sys.byteorder) for i in range(0, len(sig), width)
        ]
        columns = [memoryview(array.array(code, [v]) * max(n, 1024)) for v in values]
        _COLUMNS[key] = columns
    return columns


def decode_frame(frame: bytes | memoryview, *, hex_bytes: int = 24) -> str:
    """One line describing a frame: MACs, EtherType, length and the first bytes in hex."""
    raw = bytes(frame)
    if len(raw) < _ETH_HEADER:
        return f"runt frame, {len(raw)} bytes: {raw.hex(' ')}"
    dst, src = mac_str(raw[0:6]), mac_str(raw[6:12])
    ethertype = int.from_bytes(raw[12:14], "big")
    head = raw[:hex_bytes].hex(" ")
    more = " ..." if len(raw) > hex_bytes else ""
    return f"{src} -> {dst}  type 0x{ethertype:04x}  len {len(raw):5d}  {head}{more}"


def have_privileges() -> tuple[bool, str]:
    """Whether this process can build a bridge loop; the reason in one line when not."""
    if not os.path.exists("/dev/net/tun"):
        return False, "/dev/net/tun does not exist (no TUN/TAP support on this system)"
    try:
        with open("/proc/self/status") as fh:
            caps = next(line for line in fh if line.startswith("CapEff:"))
        cap_eff = int(caps.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        cap_eff = 0
    cap_net_admin, cap_sys_admin = 12, 21
    if not cap_eff >> cap_net_admin & 1:
        return False, "this process lacks CAP_NET_ADMIN (run as root to use real TAP adapters)"
    if not cap_eff >> cap_sys_admin & 1:
        return False, "this process lacks CAP_SYS_ADMIN (needed to create a network namespace)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return False, "/dev/net/tun is not readable and writable by this process"
    try:
        subprocess.run(["ip", "-V"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False, "iproute2 ('ip') is not installed"
    return True, ""


class BridgeLoop:
    """Context manager: a private netns with a bridge and two persistent TAPs on it.

    Example::

        with BridgeLoop("demo") as loop:
            b = vnetio.Tap(loop.tap_b, netns=loop.netns)   # reader first (pitfall 4)
            a = vnetio.Tap(loop.tap_a, netns=loop.netns)
            loop.wait_forwarding()
            a.send(build_frame(64)); b.recv(timeout=1)
    """

    def __init__(
        self,
        purpose: str = "loop",
        *,
        tap_a: str = "vnA",
        tap_b: str = "vnB",
        bridge: str = "vnbr",
        multi_queue: bool = False,
        netns: str | None = None,
    ) -> None:
        safe = "".join(c for c in purpose if c.isalnum())[:12] or "loop"
        self.netns = netns or f"vnetio-{safe}-{os.getpid()}-{secrets.token_hex(2)}"
        self.tap_a = tap_a
        self.tap_b = tap_b
        self.bridge = bridge
        self.multi_queue = multi_queue
        self._created = False
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def setup(self) -> None:
        """Create the namespace, sysctls, bridge and TAPs (called by ``__enter__``)."""
        _run(["ip", "netns", "add", self.netns])
        self._created = True
        # IPv6 off before any device exists, so none of them does DAD, RS or MLD.
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        # br_netfilter would run every IPv4 frame crossing the bridge through netfilter.
        for table in ("iptables", "ip6tables", "arptables"):
            self.sysctl(f"net.bridge.bridge-nf-call-{table}", "0", missing_ok=True)
        self.ip(
            "link", "add", self.bridge, "type", "bridge",
            "stp_state", "0", "mcast_snooping", "0",
        )  # fmt: skip
        for tap in (self.tap_a, self.tap_b):
            mq = ("multi_queue",) if self.multi_queue else ()
            self.ip("tuntap", "add", "dev", tap, "mode", "tap", *mq)
            self.ip("link", "set", tap, "master", self.bridge)
        for dev in (self.bridge, self.tap_a, self.tap_b):
            self.ip("link", "set", dev, "up")

    def close(self) -> None:
        """End processes still in the namespace (by PID) and delete it. Idempotent."""
        with self._lock:
            if not self._created:
                return
            with _sigint_deferred():
                self._kill_ns_processes()
                last: Exception | None = None
                for attempt in range(5):
                    try:
                        _run(["ip", "netns", "del", self.netns])
                        last = None
                        break
                    except TopologyError as exc:
                        last = exc
                        if not os.path.exists(f"/run/netns/{self.netns}"):
                            last = None
                            break
                        time.sleep(0.1 * (attempt + 1))
                self._created = False
                if last is not None:
                    raise last

    def _kill_ns_processes(self) -> None:
        try:
            out = _run(["ip", "netns", "pids", self.netns]).stdout
        except TopologyError:
            return
        pids = [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = []
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                    alive.append(pid)
            deadline = time.monotonic() + 1.0
            while alive and time.monotonic() < deadline:
                alive = [p for p in alive if _pid_alive(p)]
                time.sleep(0.02)
            pids = alive
            if not pids:
                return

    # -- running things inside -------------------------------------------------------

    def ns_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run_in_ns(
        self, argv: Sequence[str], *, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace (``ip netns exec``), capturing text output."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        proc = subprocess.run(self.ns_argv(argv), check=False, **kwargs)
        if check and proc.returncode != 0:
            raise TopologyError(
                f"{' '.join(argv)!r} in {self.netns} failed ({proc.returncode}): "
                f"{(proc.stderr or '').strip()}"
            )
        return proc

    def popen_in_ns(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` inside the namespace; ``ip netns exec`` execs, so the PID is argv's."""
        kwargs.setdefault("text", True)
        return subprocess.Popen(self.ns_argv(argv), **kwargs)

    def ip(self, *args: str) -> str:
        """Run ``ip -n NETNS ARGS...`` and return its stdout."""
        return _run(["ip", "-n", self.netns, *args]).stdout

    def sysctl(self, key: str, value: str, *, missing_ok: bool = False) -> bool:
        """Set a sysctl inside the namespace; False when absent and ``missing_ok``."""
        path = "/proc/sys/" + key.replace(".", "/")
        script = f'test -e "{path}" || exit 3; echo {value} > "{path}"'
        proc = self.run_in_ns(["sh", "-c", script], check=False)
        if proc.returncode == 3 and missing_ok:
            return False
        if proc.returncode != 0:
            raise TopologyError(f"sysctl {key}={value} in {self.netns}: {proc.stderr.strip()}")
        return True

    # -- inspection ------------------------------------------------------------------

    def port_states(self) -> dict[str, str]:
        """Bridge port state of each enslaved device, e.g. ``{"vnA": "forwarding"}``."""
        data = json.loads(_run(["bridge", "-n", self.netns, "-j", "link"]).stdout or "[]")
        return {p["ifname"]: p.get("state", "?") for p in data}

    def wait_forwarding(self, *devs: str, timeout: float = 5.0) -> None:
        """Wait until each port (default: both TAPs) is forwarding.

        A TAP gets carrier only once an fd is attached, and the bridge learns of it through
        the kernel's link watch (up to ~1 s later): attach the readers (and writers) first.
        Raises TimeoutError naming the ports that are not forwarding.
        """
        want = devs or (self.tap_a, self.tap_b)
        deadline = time.monotonic() + timeout
        while True:
            states = self.port_states()
            if all(states.get(d) == "forwarding" for d in want):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"bridge ports not forwarding after {timeout:.1f} s: "
                    + ", ".join(f"{d}={states.get(d, 'absent')}" for d in want)
                    + " (is an fd attached to each TAP?)"
                )
            time.sleep(0.02)

    def counters(self, dev: str) -> dict[str, int]:
        """Kernel counters of ``dev``: rx/tx packets, bytes, errors and dropped."""
        data = json.loads(self.ip("-s", "-j", "link", "show", "dev", dev))
        stats = data[0]["stats64"]
        out: dict[str, int] = {}
        for direction in ("rx", "tx"):
            for key in ("packets", "bytes", "errors", "dropped"):
                out[f"{direction}_{key}"] = int(stats[direction].get(key, 0))
        return out

    def set_txqueuelen(self, dev: str, qlen: int) -> None:
        """Set ``dev``'s txqueuelen (for a TAP: the size of the ring its reader drains)."""
        self.ip("link", "set", "dev", dev, "txqueuelen", str(qlen))

    def __repr__(self) -> str:
        return f"BridgeLoop(netns={self.netns!r}, taps=({self.tap_a!r}, {self.tap_b!r}))"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise TopologyError(f"{argv[0]} not found (install iproute2)") from exc
    if proc.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as ended (its parent reaps it, not us)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while cleaning up (main thread only); re-raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[object] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    except ValueError:  # not in the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt
