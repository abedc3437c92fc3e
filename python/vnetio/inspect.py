"""scapy inspection for vnetio batches and adapters (optional: ``pip install vnetio[scapy]``).

- :func:`to_scapy` turns a batch into a lazy sequence of scapy packets: frame ``i`` is
  dissected when it is first asked for (``Ether`` on a TAP, ``IP``/``IPv6`` on a TUN), then
  cached; nothing is dissected unless asked.
- :func:`send_packets` sends scapy packets through an adapter: one conversion to bytes each,
  then one batch.
- :class:`VnetioSocket` is a scapy ``SuperSocket`` over any vnetio adapter (Tap, Tun, Queue,
  Loopback), so ``sniff(opened_socket=sock)``, ``AsyncSniffer``, ``sock.sr1(...)`` /
  ``sock.srp1(...)`` and answering machines (``sock.am(...)``) work, and ``filter=`` is
  honoured (see :func:`frame_filter`).

scapy is imported when one of these runs, never by ``import vnetio`` or by importing this
module; without scapy they raise an ImportError that says how to install it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ._dependencies import scapy_module
from .exceptions import AdapterClosedError

if TYPE_CHECKING:
    from ._core import Adapter, Batch

__all__ = [
    "BpfFilter",
    "ScapyFrames",
    "VnetioSocket",
    "filter_batch",
    "frame_filter",
    "send_packets",
    "to_scapy",
]

Kind = Literal["tap", "tun"]
#: A socket-level filter: called with each received frame (a read-only ``memoryview``),
#: keeps the frame when it returns true.
FramePredicate = Callable[[memoryview], bool]
#: A predicate on the dissected scapy packet (scapy's ``lfilter``): keeps it when true.
PacketPredicate = Callable[[Any], object]


def _need(feature: str) -> None:
    scapy_module("scapy.packet", feature)


def _check_kind(kind: str) -> Kind:
    if kind == "tap":
        return "tap"
    if kind == "tun":
        return "tun"
    raise ValueError(f"kind must be 'tap' or 'tun', not {kind!r}")


def _dissect(frame: bytes, kind: Kind) -> Any:
    """One frame as a scapy packet: Ether on a TAP; IP, IPv6 (or Raw) on a TUN."""
    return _layer_class(frame, kind)(frame)


class ScapyFrames(Sequence[Any]):
    """The frames of a batch as scapy packets, dissected on first access and cached.

    ``frames[i]`` (negative too) dissects frame ``i`` once; slices give lists; ``len()``
    dissects nothing. Each packet's ``time`` is the frame's receive time when the batch
    has one. ``raw(i)`` is the frame's bytes without dissecting it.
    """

    __slots__ = ("_cache", "_frames", "_times", "kind")

    def __init__(self, frames: Batch | Sequence[Any], kind: Kind = "tap") -> None:
        self.kind = _check_kind(kind)
        self._frames = frames
        stamps = getattr(frames, "timestamps_ns", None)
        self._times: list[int | None] | None = list(stamps) if stamps is not None else None
        self._cache: list[Any] = [None] * len(frames)

    def __len__(self) -> int:
        return len(self._cache)

    def raw(self, index: int) -> bytes:
        return bytes(self._frames[index])

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self._cache)
        i = index.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame index {index} out of range for {n} frames")
        packet = self._cache[i]
        if packet is None:
            packet = _dissect(bytes(self._frames[i]), self.kind)
            stamp = self._times[i] if self._times else None
            if stamp:  # 0: built in memory; None: the source recorded no time
                packet.time = stamp / 1e9
            self._cache[i] = packet
        return packet

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    @property
    def dissected(self) -> int:
        """How many frames have been dissected so far."""
        return sum(p is not None for p in self._cache)

    def __repr__(self) -> str:
        return f"<ScapyFrames kind={self.kind} frames={len(self)} dissected={self.dissected}>"


def to_scapy(batch: Batch | Sequence[Any], kind: Kind = "tap") -> ScapyFrames:
    """The frames of ``batch`` (or any sequence of bytes-like frames) as a lazy sequence of
    scapy packets: ``Ether`` for ``kind="tap"``, ``IP``/``IPv6`` for ``kind="tun"``.

    Raises ImportError (with the install command) when scapy is missing.
    """
    _need("Batch.to_scapy()")
    return ScapyFrames(batch, kind)


def filter_batch(batch: Batch, predicate: PacketPredicate, kind: Kind = "tap") -> Batch:
    """The frames of ``batch`` whose scapy packet ``predicate`` accepts, as a new Batch
    (receive times and offload metadata kept). ``Batch.filter(predicate, kind)`` calls this.

    For what BPF cannot express: the predicate sees the dissected packet (``Ether`` for
    ``kind="tap"``, ``IP``/``IPv6`` for ``"tun"``, as :func:`to_scapy` makes them), e.g.
    ``batch.filter(lambda p: p.haslayer(DNS) and p[DNS].qd.qname.endswith(b".example."))``.
    Every frame is dissected, so this runs at scapy's speed: narrow the batch with a BPF
    filter first (``batch.filter("udp port 53").filter(predicate)``) when it is large. An
    exception raised by the predicate propagates.
    """
    _need("Batch.filter(predicate)")
    if not callable(predicate):
        raise TypeError(f"predicate must be callable, not {type(predicate).__name__}")
    packets = ScapyFrames(batch, _check_kind(kind))
    return batch._take([i for i in range(len(packets)) if predicate(packets[i])])


def _packet_bytes(packet: Any, kind: Kind, index: int) -> Any:
    """A scapy packet as the bytes to write (anything else is passed on, for the adapter
    to check); refuses a packet of the wrong layer for the adapter, naming its index."""
    packet_cls = scapy_module("scapy.packet").Packet
    if not isinstance(packet, packet_cls):
        return packet
    if kind == "tap":
        l3 = (
            scapy_module("scapy.layers.inet").IP,
            scapy_module("scapy.layers.inet6").IPv6,
            scapy_module("scapy.layers.l2").ARP,
        )
        if isinstance(packet, l3):
            raise TypeError(
                f"packet {index} is a {type(packet).__name__} packet, but a TAP carries "
                "Ethernet frames: send Ether(...)/packet"
            )
    elif isinstance(packet, scapy_module("scapy.layers.l2").Ether):
        raise TypeError(
            f"packet {index} starts with an Ethernet header, but a TUN carries IP packets: "
            "send its payload (packet.payload)"
        )
    data = bytes(packet)
    with contextlib.suppress(AttributeError):
        packet.sent_time = time.time()
    return data


def send_packets(adapter: Adapter, packets: Iterable[Any]) -> int:
    """Send scapy packets (or bytes-like frames) through ``adapter`` as one batch.

    Each packet is converted to bytes once; then ``adapter.send_batch`` validates all of
    them and writes them. Returns the count sent. A packet of the wrong layer (an ``IP``
    packet on a TAP, an ``Ether`` frame on a TUN) is a TypeError naming its index, and
    nothing is sent.
    """
    _need("send_packets()")
    kind = _check_kind(adapter.kind)
    if isinstance(packets, scapy_module("scapy.packet").Packet):
        packets = [packets]
    frames = [_packet_bytes(p, kind, i) for i, p in enumerate(packets)]
    return adapter.send_batch(frames)


class BpfFilter:
    """A socket's ``filter=`` given as a tcpdump expression or a classic BPF program:
    applied to whole batches by vnetio's Rust interpreter (``Batch.filter``)."""

    def __init__(self, program: str | Sequence[tuple[int, int, int, int]], kind: Kind) -> None:
        from vnetio import filters

        self.expression = program if isinstance(program, str) else None
        self.program: Sequence[tuple[int, int, int, int]] = (
            filters.compile(program, kind) if isinstance(program, str) else program
        )
        self.kind = kind

    def __call__(self, frame: memoryview | bytes) -> bool:
        """One frame (slower than filtering a batch; for callers that have one frame)."""
        from ._core import Batch

        return len(Batch.from_frames([frame]).filter(self.program, self.kind)) == 1

    def __repr__(self) -> str:
        return f"BpfFilter({self.expression or f'<{len(self.program)} instructions>'!r})"


def frame_filter(filter: object, kind: Kind) -> FramePredicate | None:
    """Turn a socket's ``filter=`` argument into a predicate over raw frames (or None).

    A filter is a tcpdump expression (compiled by libpcap for the socket's link type, run
    on each received batch by vnetio's BPF interpreter: a bad expression is a
    ``ValueError``), a classic BPF program as ``(code, jt, jf, k)`` tuples, or a Python
    callable taking the frame (a ``memoryview`` of an Ethernet frame on a TAP, of an IP
    packet on a TUN) and returning true to keep it. For a filter in the kernel, where
    rejected frames cost nothing, use ``adapter.set_filter`` instead.
    """
    if filter is None:
        return None
    if isinstance(filter, str | list | tuple):
        return BpfFilter(filter, kind)
    if callable(filter):
        return filter
    raise TypeError(
        "filter must be None, a tcpdump expression, a BPF program or a callable, "
        f"not {type(filter).__name__}"
    )


class _VnetioSocketBase:
    """A scapy socket over a vnetio adapter (Tap, Tun, Queue or Loopback).

    ``VnetioSocket(adapter, filter=None, *, lfilter=None, kind=None, max_frames=256,
    close_adapter=False)``: received frames are dissected as ``Ether`` (TAP) or
    ``IP``/``IPv6`` (TUN; ``kind`` defaults to ``adapter.kind``) and carry their receive
    time; ``filter`` is a predicate on the raw frame (see ``frame_filter``), ``lfilter`` one
    on the dissected packet (as scapy's ``sniff(lfilter=...)``, but for every use of the
    socket: ``sniff``, ``sr1``, answering machines). ``filtered`` counts the frames either
    one turned away. Frames are read in batches of up to ``max_frames``
    and handed out one by one. ``recv()`` does not block: it returns None when nothing
    (that passes the filter) is waiting; ``select``, ``sniff`` and ``sr1`` wait on the
    adapter's descriptor. Closing the socket leaves the adapter open unless
    ``close_adapter=True``.

    The methods live here, without scapy; :func:`_socket_class` mixes them into scapy's
    ``SuperSocket`` when the class is first used.
    """

    desc = "vnetio adapter (TUN/TAP/loopback)"
    nonblocking_socket = False
    closed = False

    def __init__(
        self,
        adapter: Adapter,
        filter: object = None,
        *,
        lfilter: PacketPredicate | None = None,
        kind: Kind | None = None,
        max_frames: int = 256,
        close_adapter: bool = False,
    ) -> None:
        # SuperSocket.__init__ would open an OS socket: not called on purpose. What close()
        # (and so __del__) touches is set first, in case a check below raises.
        self._pending: collections.deque[tuple[bytes, float | None]] = collections.deque()
        self.close_adapter = False
        self.adapter = adapter
        self.kind = _check_kind(kind or adapter.kind)
        self.iface = adapter.name
        self.promisc = False
        self.ins = self.outs = None
        self.max_frames = max_frames
        self.filter = frame_filter(filter, self.kind)
        if lfilter is not None and not callable(lfilter):
            raise TypeError(f"lfilter must be None or a callable, not {type(lfilter).__name__}")
        self.lfilter = lfilter
        self.filtered = 0
        self.close_adapter = close_adapter

    def fileno(self) -> int:
        return self.adapter.fileno()

    def _fill(self) -> None:
        try:
            batch = self.adapter.recv_batch(self.max_frames, timeout=0)
        except AdapterClosedError as exc:
            raise EOFError(f"adapter {self.adapter.name} is closed") from exc
        keep = self.filter
        if isinstance(keep, BpfFilter):
            kept = batch.filter(keep.program, self.kind)
            self.filtered += len(batch) - len(kept)
            batch, keep = kept, None
        for frame, ts in zip(batch, batch.timestamps_ns, strict=True):
            if keep is None or keep(frame):
                self._pending.append((bytes(frame), ts / 1e9 if ts else None))
            else:
                self.filtered += 1

    def recv(self, x: int = 65535, **kwargs: Any) -> Any:
        """The next packet that passes ``filter`` and ``lfilter``, or None (no waiting)."""
        while True:
            # super() is scapy's SuperSocket, the other base _socket_class() joins at run time.
            packet = super().recv(x, **kwargs)  # type: ignore[misc]
            if packet is None or self.lfilter is None or self.lfilter(packet):
                return packet
            self.filtered += 1

    def recv_raw(self, x: int = 65535) -> tuple[Any, bytes | None, float | None]:
        if not self._pending:
            self._fill()
        if not self._pending:
            return None, None, None
        data, ts = self._pending.popleft()
        return _layer_class(data, self.kind), data[:x], ts

    def send(self, x: Any) -> int:
        data = _packet_bytes(x, self.kind, 0)
        self.adapter.send(data)
        return len(memoryview(data))

    def send_packets(self, packets: Iterable[Any]) -> int:
        """Send many packets as one batch (see ``vnetio.inspect.send_packets``)."""
        return send_packets(self.adapter, packets)

    def srp(self, *args: Any, **kwargs: Any) -> Any:
        """Same as ``sr``: the socket's layer is the adapter's."""
        return self.sr(*args, **kwargs)  # type: ignore[attr-defined]  # scapy's SuperSocket.sr

    def srp1(self, *args: Any, **kwargs: Any) -> Any:
        """Same as ``sr1``: the socket's layer is the adapter's."""
        return self.sr1(*args, **kwargs)  # type: ignore[attr-defined]  # SuperSocket.sr1

    @property
    def pending(self) -> int:
        """Frames read from the adapter that recv() has not handed out yet."""
        return len(self._pending)

    @staticmethod
    def select(sockets: list[Any], remain: float | None = None) -> list[Any]:
        """Sockets with frames buffered are ready at once; otherwise wait on the descriptors
        (a closed adapter counts as ready, so that recv() reports the end)."""
        ready = [
            s
            for s in sockets
            if isinstance(s, _VnetioSocketBase) and (s._pending or s.adapter.closed)
        ]
        if ready:
            return ready
        base = scapy_module("scapy.supersocket").SuperSocket
        waited: list[Any] = base.select(sockets, remain)
        return waited

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        if self.close_adapter:
            self.adapter.close()

    def __repr__(self) -> str:
        return f"<VnetioSocket {self.kind} {self.iface!r} pending={len(self._pending)}>"


def _layer_class(data: bytes, kind: Kind) -> Any:
    """The scapy class a received frame is dissected as."""
    if kind == "tap":
        return scapy_module("scapy.layers.l2").Ether
    version = data[0] >> 4 if data else 0
    if version == 4:
        return scapy_module("scapy.layers.inet").IP
    if version == 6:
        return scapy_module("scapy.layers.inet6").IPv6
    return scapy_module("scapy.packet").Raw


@functools.cache
def _socket_class() -> type:
    """VnetioSocket: the methods above on top of scapy's SuperSocket (imported now)."""
    base = scapy_module("scapy.supersocket", "VnetioSocket").SuperSocket
    cls: type = type(base)(
        "VnetioSocket",
        (_VnetioSocketBase, base),
        {"__module__": __name__, "__doc__": _VnetioSocketBase.__doc__},
    )
    return cls


if TYPE_CHECKING:
    VnetioSocket: type
else:

    def __getattr__(name: str) -> Any:
        if name == "VnetioSocket":
            return _socket_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
