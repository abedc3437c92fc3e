"""Two TAP adapters on a Linux bridge in a private network namespace: :class:`KernelLoop`,
the topology vnetio is tested and measured on through the kernel (needs root).

The namespace, bridge and TAPs are built by ``vnetio._topology.BridgeLoop``; this module
opens both TAPs with vnetio and gives frames that cross the bridge.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Literal, Self

from ._core import Batch, Tap

if TYPE_CHECKING:
    from ._topology import BridgeLoop

__all__ = ["KernelLoop"]


class KernelLoop:
    """Two TAP adapters on a Linux bridge in a private network namespace: a frame sent on
    ``loop.a`` comes out of ``loop.b``, through the kernel. Needs root (CAP_NET_ADMIN and
    CAP_SYS_ADMIN).

    ``with KernelLoop(offload=False, rx_mode="segments", mtu=None, queues=1) as loop:``
    builds the namespace (``loop.netns``: ``netns`` if given, else
    ``vnetio-<purpose>-<pid>-<random>``), a bridge (``loop.bridge``) and two persistent
    TAPs, opens both with vnetio (the options are passed to both ``vnetio.Tap`` opens) and
    waits until both bridge ports forward. Leaving the block closes the adapters and
    deletes the namespace with everything in it, also on an exception or Ctrl-C.

    The pitfalls of this topology are handled for you: bridge netfilter is off in the
    namespace (else every IPv4 frame runs iptables), IPv6 is off before any device exists
    (no DAD, router solicitation or MLD noise), STP and multicast snooping are off, and
    the ports are awaited (a TAP has no carrier until a reader is attached; until then the
    bridge drops frames silently). What is left to you: send frames *to*
    :attr:`dst_mac`, a unicast address nobody owns (the bridge floods it to ``b``), and
    never *from* it (the bridge would learn it on ``a`` and drop every later frame to it
    for 300 s). :meth:`frame` and :meth:`batch` build such frames; :meth:`own_frames`
    counts them in a received batch, since the kernel may still add frames of its own.

    ``loop.kernel_counters("b")`` reads B's kernel counters: frames a slow reader lost show
    up there as ``tx_dropped`` (the TAP's queue was full), and nowhere else.
    """

    #: Source MAC of the frames :meth:`frame` builds (locally administered, unicast).
    src_mac: str = "02:76:6e:10:00:01"
    #: Destination MAC of those frames: unicast, owned by nobody on the bridge.
    dst_mac: str = "02:76:6e:10:00:02"
    #: EtherType of those frames (IEEE 802 local experimental: nothing on the path parses it).
    ethertype: int = 0x88B5

    def __init__(
        self,
        *,
        offload: bool = False,
        rx_mode: Literal["segments", "superframes"] = "segments",
        mtu: int | None = None,
        queues: int = 1,
        netns: str | None = None,
        purpose: str = "loop",
        timeout: float = 10.0,
    ) -> None:
        if rx_mode not in ("segments", "superframes"):
            raise ValueError(f"rx_mode must be 'segments' or 'superframes', not {rx_mode!r}")
        if rx_mode == "superframes" and not offload:
            raise ValueError("rx_mode='superframes' needs offload=True")
        if not isinstance(queues, int) or not 1 <= queues <= 256:
            raise ValueError(f"queues must be an integer from 1 to 256, not {queues!r}")
        if mtu is not None and (not isinstance(mtu, int) or not 68 <= mtu <= 65535):
            raise ValueError(f"mtu must be None or an integer from 68 to 65535, not {mtu!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._options: dict[str, Any] = {"offload": bool(offload), "rx_mode": rx_mode}
        if mtu is not None:
            self._options["mtu"] = mtu
        if queues > 1:
            self._options["queues"] = queues
        self._queues = queues
        self._netns = netns
        self._purpose = purpose
        self._timeout = timeout
        self._topology: BridgeLoop | None = None
        self._a: Tap | None = None
        self._b: Tap | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> Self:
        """Build the topology and open both adapters (``with`` does this for you)."""
        if self._topology is not None:
            raise RuntimeError("this KernelLoop is already open")
        from . import _topology

        ok, reason = _topology.have_privileges()
        if not ok:
            raise PermissionError(
                errno.EPERM,
                f"KernelLoop needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, /dev/net/tun and "
                f"iproute2) to build a network namespace with a bridge and two TAPs: {reason}. "
                "Run as root, or use vnetio.loopback_pair() for an in-memory pair without "
                "privileges",
            )
        self._topology = topo = _topology.BridgeLoop(
            self._purpose, multi_queue=self._queues > 1, netns=self._netns
        )
        try:
            topo.__enter__()
            # B first: a TAP without an attached reader has no carrier (pitfall 4).
            self._b = Tap(topo.tap_b, netns=topo.netns, **self._options)
            self._a = Tap(topo.tap_a, netns=topo.netns, **self._options)
            topo.wait_forwarding(timeout=self._timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close both adapters and delete the namespace. Idempotent."""
        a, b, topo = self._a, self._b, self._topology
        self._a = self._b = self._topology = None
        try:
            for tap in (a, b):
                if tap is not None:
                    tap.close()
        finally:
            if topo is not None:
                topo.close()

    @property
    def closed(self) -> bool:
        return self._topology is None

    # -- what is inside -------------------------------------------------------------------

    def _need(self) -> BridgeLoop:
        if self._topology is None:
            raise RuntimeError("the KernelLoop is not open: use `with KernelLoop() as loop:`")
        return self._topology

    @property
    def a(self) -> Tap:
        """The sending side (TAP ``vnA``)."""
        self._need()
        assert self._a is not None
        return self._a

    @property
    def b(self) -> Tap:
        """The receiving side (TAP ``vnB``)."""
        self._need()
        assert self._b is not None
        return self._b

    @property
    def netns(self) -> str:
        """Name of the private network namespace (see ``ip netns list``)."""
        return self._need().netns

    @property
    def bridge(self) -> str:
        """Name of the bridge inside the namespace."""
        return self._need().bridge

    @property
    def topology(self) -> BridgeLoop:
        """The namespace helper: ``run_in_ns(argv)``, ``ip(...)``, ``port_states()``, …"""
        return self._need()

    # -- frames that cross ----------------------------------------------------------------

    def frame(self, size: int = 64, *, seq: int = 0, src: str | None = None) -> bytes:
        """An Ethernet frame of ``size`` bytes (60..65535) from :attr:`src_mac` (or ``src``)
        to :attr:`dst_mac`, EtherType 0x88b5, payload ``seq`` (64-bit) then a byte pattern.
        A ``src`` equal to :attr:`dst_mac` is refused: the bridge would learn it and drop
        every later frame sent to it."""
        from . import _topology

        src = src or self.src_mac
        if src.lower() == self.dst_mac:
            raise ValueError(
                f"src={src!r} is the loop's destination MAC: the bridge would learn it on "
                "this port and drop every frame sent to it for 300 s; use another source"
            )
        return _topology.build_frame(
            size, src=src, dst=self.dst_mac, ethertype=self.ethertype, seq=seq
        )

    def batch(self, count: int = 256, size: int = 64) -> Batch:
        """``count`` frames from :meth:`frame` (sequence numbers 0..count-1) as one Batch."""
        return Batch.from_frames(self.frame(size, seq=i) for i in range(count))

    def own_frames(self, batch: Batch, size: int) -> int:
        """How many frames of ``batch`` are this loop's ``size``-byte frames (whatever else
        the kernel put on the bridge is not counted)."""
        from . import _topology

        return _topology.count_own_frames(batch, size)

    def kernel_counters(self, side: Literal["a", "b"] = "b") -> dict[str, int]:
        """The kernel's counters of TAP A or B: rx/tx packets, bytes, errors, dropped.
        B's ``tx_dropped`` counts the frames its reader was too slow to take."""
        topo = self._need()
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        return topo.counters(topo.tap_a if side == "a" else topo.tap_b)

    def __repr__(self) -> str:
        if self._topology is None:
            return "<KernelLoop closed>"
        return f"<KernelLoop netns={self.netns!r} a={self.a.name!r} b={self.b.name!r}>"
