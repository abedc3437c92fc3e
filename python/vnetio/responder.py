"""A virtual host behind an adapter: :class:`EchoResponder` answers ARP, IPv6 neighbour
solicitations and ICMP/ICMPv6 echo for its addresses, so code under test can ping it.

The answering is done by the Rust core (``vnetio._core.EchoResponder``); this module adds the
background thread that serves an adapter and the counters of what it received and sent.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Literal, Self

from ._core import Batch, Macvtap
from ._core import EchoResponder as _CoreResponder
from .exceptions import AdapterClosedError

if TYPE_CHECKING:
    from ._core import Adapter

__all__ = ["EchoResponder", "Kind", "random_mac"]

Kind = Literal["tap", "tun"]


def random_mac() -> str:
    """A random locally administered unicast MAC address (``02:xx:xx:xx:xx:xx``)."""
    return ":".join(f"{b:02x}" for b in b"\x02" + os.urandom(5))


class EchoResponder:
    """A virtual host behind ``adapter``: answers ARP requests and IPv6 neighbour
    solicitations for its addresses and ICMP/ICMPv6 echo requests to them.

    ``EchoResponder(adapter, ipv4="192.0.2.2", ipv6="2001:db8::2", mac=None)``: either
    address may be None (not both). On a TAP the responder has a MAC address of its own
    (``mac``, by default a random locally administered one), different from the TAP's,
    which is the kernel's side of the link. On a :class:`~vnetio.Macvtap` it is the host
    behind the link and takes the link's own MAC by default (frames to other addresses
    never reach a macvtap, except in passthru mode). On a TUN it answers echo requests
    only (there is no link layer to resolve).

    Two ways to use it:

    - as a context manager, it serves ``adapter`` from a background thread until the block
      ends: receive a batch (GIL released while waiting), answer, send the replies;
    - ``replies = responder.answer(batch)`` inside your own receive loop (``adapter`` may be
      None then, with ``kind=`` given).

    ``stats()`` counts every frame seen: ``arp``, ``ns``, ``echo4``, ``echo6`` (answered),
    ``ignored`` (not a request for us), ``malformed``, and in serving mode ``received``,
    ``sent`` and ``send_failed`` (replies the adapter refused, e.g. while it is down).
    """

    def __init__(
        self,
        adapter: Adapter | None = None,
        ipv4: str | None = "192.0.2.2",
        ipv6: str | None = "2001:db8::2",
        mac: str | None = None,
        *,
        kind: Kind | None = None,
        max_frames: int = 256,
    ) -> None:
        if kind is None:
            if adapter is None:
                raise TypeError("EchoResponder needs an adapter, or kind='tap'/'tun' without one")
            kind = adapter.kind
        elif adapter is not None and adapter.kind != kind:
            raise ValueError(f"kind={kind!r} does not match the adapter's kind {adapter.kind!r}")
        macvtap = isinstance(adapter, Macvtap)
        if isinstance(adapter, Macvtap) and mac is None:
            mac = adapter.mac  # the link's address is the responder's own
        if kind == "tap" and mac is None:
            mac = random_mac()
        self._core = _CoreResponder(mac, ipv4=ipv4, ipv6=ipv6, kind=kind)
        own = getattr(adapter, "mac", None) if kind == "tap" and not macvtap else None
        # Compared as parsed (the core's canonical spelling): "02-AA-..." is the same MAC.
        if mac is not None and isinstance(own, str) and own.lower() == self._core.mac.lower():
            raise ValueError(
                f"mac={mac!r} is the TAP's own MAC address, which belongs to the kernel's side "
                "of the link; the responder is another host and needs another MAC (leave "
                "mac=None for a random one)"
            )
        self.adapter = adapter
        self.max_frames = max_frames
        self._lock = threading.Lock()
        self._io = {"received": 0, "sent": 0, "send_failed": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- what it is -----------------------------------------------------------------------

    @property
    def mac(self) -> str:
        """The responder's MAC address (all zeros on a TUN)."""
        return self._core.mac

    @property
    def ipv4(self) -> str | None:
        return self._core.ipv4

    @property
    def ipv6(self) -> str | None:
        return self._core.ipv6

    @property
    def kind(self) -> Kind:
        return self._core.kind

    # -- answering ------------------------------------------------------------------------

    def answer(self, frames: Batch | Any) -> Batch:
        """The replies to ``frames`` (a Batch or any iterable of bytes-like frames), as a
        Batch, possibly empty; each frame is counted in :meth:`stats`. GIL released."""
        return self._core.answer(frames)

    def stats(self) -> dict[str, int]:
        """Counters (see the class documentation)."""
        counts = dict(self._core.stats())
        with self._lock:
            counts.update(self._io)
        return counts

    # -- serving --------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Serve the adapter from a background thread (see ``stop``)."""
        if self.adapter is None:
            raise TypeError("start() needs the adapter to serve: EchoResponder(adapter, ...)")
        if self.serving:
            raise RuntimeError("this responder is already serving")
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._serve, name=f"vnetio-echo-{self.adapter.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (within about 50 ms: the serving loop's receive timeout; measured by
        benches/latency.py) and re-raise an error the thread met, if any."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the responder thread did not stop within {timeout} s")
        error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        adapter = self.adapter
        assert adapter is not None
        recv, send, answer = adapter.recv_batch, adapter.send_batch, self._core.answer
        io, lock = self._io, self._lock
        try:
            while not self._stop.is_set():
                batch = recv(self.max_frames, timeout=0.05)
                if not batch:
                    continue
                replies = answer(batch)
                sent = failed = 0
                if replies:
                    try:
                        sent = send(replies)
                    except AdapterClosedError:
                        raise
                    except OSError as exc:  # e.g. EIO while the adapter is down: counted
                        sent = int(getattr(exc, "sent", 0) or 0)
                        failed = len(replies) - sent
                with lock:
                    io["received"] += len(batch)
                    io["sent"] += sent
                    io["send_failed"] += failed
        except AdapterClosedError:
            if not self._stop.is_set():  # closed under us: serving ends, nothing to report
                return
        except BaseException as exc:  # noqa: BLE001 - handed to stop(), which re-raises it
            self._error = exc

    def __repr__(self) -> str:
        state = "serving" if self.serving else "idle"
        return (
            f"<EchoResponder {self.kind} mac={self.mac} ipv4={self.ipv4} ipv6={self.ipv6} {state}>"
        )
