"""The WireGuard interface: the tunnel engine of the Rust core and its plaintext adapter."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from .. import _core
from .._core import Adapter, Batch, Tun
from . import uapi as _uapi
from .config import Config

__all__ = ["Interface", "Peer", "genkey", "pubkey"]

#: Frames the in-process interface's plaintext queue holds in each direction.
DEFAULT_CAPACITY = 4096


def genkey() -> str:
    """A new private key in base64, like ``wg genkey`` (interchangeable with it)."""
    return _core.wg_genkey()


def pubkey(private_key: str) -> str:
    """The public key of ``private_key``, like ``wg pubkey``."""
    return _core.wg_pubkey(private_key)


@dataclass(frozen=True)
class Peer:
    """A peer as ``wg show`` describes it."""

    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    #: Unix time of the latest completed handshake (None: never).
    latest_handshake: float | None
    rx_bytes: int
    tx_bytes: int
    rx_datagrams: int
    tx_datagrams: int
    persistent_keepalive: int | None
    preshared_key: bool


class Interface:
    """A WireGuard interface. With ``tun``: a TUN adapter of that name (root), addresses on
    it, routes for the peers' AllowedIPs. Without: an in-process endpoint whose plaintext
    side is this object (``recv_batch``/``send_batch``, ``adapter`` for the rest).

    ``uapi=True`` (TUN mode) serves WireGuard's userspace API socket
    ``/var/run/wireguard/<tun>.sock``, so ``wg show``/``wg showconf`` read this interface and
    ``wg set``/``wg setconf``/``wg addconf`` change it (see :meth:`apply`), and ``vnetio list``
    marks its TUN as WireGuard's."""

    def __init__(
        self,
        private_key: str,
        *,
        listen_port: int | None = None,
        addresses: Iterable[str] = (),
        mtu: int = 1420,
        netns: str | None = None,
        tun: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        uapi: bool = False,
    ) -> None:
        use_uapi = uapi  # the parameter shadows nothing below: the module is _uapi
        self.addresses = tuple(addresses)
        self.mtu = mtu
        self.netns = netns
        self._tun: Tun | None = None
        self._routes: list[str] = []
        port: Adapter
        if tun is None:
            user, port = _core.loopback_pair(capacity, kind="tun", mtu=mtu)
            self._port: Adapter | None = port
            self._adapter: Adapter = user
        else:
            self._tun = Tun(tun, netns=netns, mtu=mtu, offload=True)
            self._adapter = port = self._tun
            self._port = None
        try:
            if self._tun is not None:
                for address in self.addresses:
                    self._tun.add_address(address)
                self._tun.up()
            self._wg = _core.WireGuard(private_key, port, listen_port=listen_port, netns=netns)
        except BaseException:
            self._adapter.close()
            if tun is None:
                port.close()
            raise
        self._uapi: _uapi.Server | None = None
        if use_uapi:
            if tun is None:
                self.close()
                raise ValueError(
                    "uapi=True serves /var/run/wireguard/NAME.sock for a TUN named NAME; "
                    "give tun= (an in-process interface has no name for `wg show`)"
                )
            try:
                self._uapi = _uapi.Server(self, tun)
            except BaseException:
                self.close()
                raise

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike[str] | Config,
        *,
        tun: str | None = None,
        netns: str | None = None,
        **kwargs: Any,
    ) -> Interface:
        """An interface and its peers from a wg-quick file (a path or its text). Keys vnetio
        does not use (DNS, PostUp, Table, …) are named in a warning, not ignored silently."""
        if not isinstance(config, Config):
            text = str(config)
            if "\n" not in text and Path(text).exists():
                config = Config.parse(Path(text).read_text(), source=text)
            else:
                config = Config.parse(text)
        if config.ignored:
            names = ", ".join(f"{section}.{key}" for section, key in config.ignored)
            warnings.warn(
                f"WireGuard configuration: vnetio does not use {names} (left out)",
                stacklevel=2,
            )
        iface = cls(
            config.private_key,
            listen_port=config.listen_port,
            addresses=config.addresses,
            mtu=config.mtu or 1420,
            netns=netns,
            tun=tun,
            **kwargs,
        )
        try:
            for peer in config.peers:
                iface.add_peer(
                    peer.public_key,
                    endpoint=peer.endpoint,
                    allowed_ips=peer.allowed_ips,
                    preshared_key=peer.preshared_key,
                    persistent_keepalive=peer.persistent_keepalive,
                )
        except BaseException:
            iface.close()
            raise
        return iface

    # -- the tunnel ----------------------------------------------------------------------

    @property
    def public_key(self) -> str:
        return self._wg.public_key

    @property
    def private_key(self) -> str:
        """This end's private key (base64)."""
        return self._wg.private_key

    def preshared_key_of(self, public_key: str) -> str | None:
        """The preshared key of a peer (None: none, or no such peer)."""
        return self._wg.preshared_key_of(public_key)

    @property
    def listen_port(self) -> int:
        return self._wg.listen_port

    @property
    def fwmark(self) -> int:
        """The firewall mark of the tunnel's UDP datagrams (``SO_MARK``; 0: none)."""
        return self._wg.fwmark

    def apply(self, request: _uapi.SetRequest) -> None:
        """Change the running interface as ``wg set`` does (what the UAPI socket's ``set=1``
        does; :func:`vnetio.wireguard.uapi.parse_set` reads one). All or nothing: every value
        is checked and the steps that can fail — binding a new ``listen_port`` (the old port
        is closed once this returns), setting ``fwmark`` — are done before the key and the
        peers change, together. A peer's new endpoint or AllowedIPs keep its session; a new
        private key, preshared key or keepalive interval start a new handshake. Routes are
        not touched (as with ``wg set`` on any WireGuard): :meth:`add_peer` adds them, this
        does not. Raises ValueError (a bad value) or OSError (``.errno``: the port is in use,
        no permission to set the mark)."""
        self._wg.reconfigure(
            private_key=request.private_key,
            listen_port=request.listen_port,
            fwmark=request.fwmark,
            replace_peers=request.replace_peers,
            peers=[peer.as_dict() for peer in request.peers],
        )

    @property
    def tun(self) -> Tun | None:
        """The TUN adapter (TUN mode), or None (in-process)."""
        return self._tun

    @property
    def adapter(self) -> Adapter:
        """The plaintext adapter: the TUN in TUN mode (the tunnel reads and writes it), this
        interface's own end in-process (capture, asyncio, filters, scapy helpers)."""
        return self._adapter

    def add_peer(
        self,
        public_key: str,
        *,
        endpoint: str | None = None,
        allowed_ips: Sequence[str] = (),
        preshared_key: str | None = None,
        persistent_keepalive: int | None = None,
    ) -> None:
        """Add a peer (or replace the one with this key). In TUN mode, each AllowedIPs
        network also gets a route through the TUN (one that exists already is kept)."""
        self._wg.add_peer(
            public_key,
            endpoint=endpoint,
            allowed_ips=list(allowed_ips),
            preshared_key=preshared_key,
            persistent_keepalive=persistent_keepalive,
        )
        if self._tun is not None:
            for network in allowed_ips:
                try:
                    self._tun.add_route(network)
                except FileExistsError:
                    continue
                self._routes.append(network)

    def remove_peer(self, public_key: str) -> bool:
        """Remove a peer; returns whether it existed."""
        return self._wg.remove_peer(public_key)

    def peers(self) -> list[Peer]:
        """Every peer, with what ``wg show`` prints for it."""
        return [Peer(**{**p, "allowed_ips": tuple(p["allowed_ips"])}) for p in self._wg.peers()]

    def stats(self) -> dict[str, Any]:
        """Datagrams, packets, handshakes, and ``drops``: every datagram or packet not
        delivered, by reason. In-process, ``drops`` also holds the two queues between this
        object and the tunnel: ``tunnel_queue_full`` (packets you sent that found the
        tunnel's queue full) and ``reader_queue_full`` (decrypted packets that found your
        queue full: read faster, or make the interface with a larger ``capacity``).
        ``gso_unavailable``/``gro_unavailable`` are 1 when the kernel refused UDP GSO/GRO
        and the tunnel sends/receives single datagrams; ``gso_fallbacks`` counts GSO sends
        it refused (their datagrams were resent one by one)."""
        stats = self._wg.stats()
        if self._port is not None:
            stats["drops"]["tunnel_queue_full"] = self._port.stats().rx_dropped
            stats["drops"]["reader_queue_full"] = self._adapter.stats().rx_dropped
        return stats

    def capture_to(
        self,
        path: str | os.PathLike[str],
        *,
        count: int | None = None,
        duration: float | None = None,
        format: Literal["pcapng", "pcap"] = "pcapng",
        snaplen: int = 262144,
        direct_io: bool = True,
    ) -> dict[str, int]:
        """Capture the plaintext packets the tunnel carries, both ways, in either mode (on a
        TUN the tunnel itself reads the adapter, so this is how to see its traffic): raw IP
        (linktype 101) into ``path`` until ``count`` packets or ``duration`` seconds (or
        Ctrl-C). Returns ``{"frames", "bytes"}``; the file is complete either way. Read it
        with :class:`vnetio.capture.Reader` (Batches, so :mod:`vnetio.inspect`'s scapy
        views apply), tshark or scapy."""
        if count is None and duration is None:
            raise ValueError("give count= or duration= (or use start_capture/stop_capture)")
        self._wg.start_capture(path, format=format, snaplen=snaplen, direct_io=direct_io)
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                frames = self._wg.capture_frames()
                if frames is None or (count is not None and frames >= count):
                    break
                time.sleep(0.02)
        finally:
            result = self._wg.stop_capture()
        return result

    def start_capture(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["pcapng", "pcap"] = "pcapng",
        snaplen: int = 262144,
        direct_io: bool = True,
    ) -> None:
        """Start capturing the tunnel's plaintext into ``path`` (see :meth:`capture_to`)."""
        self._wg.start_capture(path, format=format, snaplen=snaplen, direct_io=direct_io)

    def stop_capture(self) -> dict[str, int]:
        """Stop the capture and complete the file: ``{"frames", "bytes"}``."""
        return self._wg.stop_capture()

    def close(self) -> None:
        """Stop the tunnel and close the plaintext side (the TUN goes with it)."""
        if getattr(self, "_uapi", None) is not None:
            assert self._uapi is not None
            self._uapi.close()
            self._uapi = None
        self._wg.close()
        self._adapter.close()

    @property
    def closed(self) -> bool:
        return self._wg.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the plaintext side (in-process) -------------------------------------------------

    def _plaintext(self) -> Adapter:
        if self._tun is not None:
            raise RuntimeError(
                f"{self._tun.name} is a TUN: the system sends and receives through it, and "
                "the tunnel reads it; make the interface without tun= to handle the "
                "plaintext packets in Python"
            )
        return self._adapter

    def recv_batch(self, max_frames: int = 256, timeout: float | None = None) -> Batch:
        """Decrypted IP packets from the peers (in-process mode)."""
        return self._plaintext().recv_batch(max_frames, timeout)

    def recv(self, timeout: float | None = None) -> bytes:
        """One decrypted IP packet (in-process mode)."""
        return self._plaintext().recv(timeout)

    def send_batch(self, packets: Batch | Iterable[Any]) -> int:
        """Encrypt IP packets to the peers their destinations route to (in-process mode)."""
        return self._plaintext().send_batch(packets)

    def send(self, packet: Any) -> None:
        """Encrypt one IP packet to its peer (in-process mode)."""
        self._plaintext().send(packet)

    def fileno(self) -> int:
        """Readable while decrypted packets wait (in-process mode; for event loops)."""
        return self._plaintext().fileno()

    def set_filter(self, expression: str | None, **kwargs: Any) -> Any:
        """Filter the decrypted packets this interface delivers (in-process mode)."""
        return self._plaintext().set_filter(expression, **kwargs)

    def __repr__(self) -> str:
        mode = f"tun={self._tun.name!r}" if self._tun is not None else "in-process"
        return (
            f"<vnetio.wireguard.Interface {mode} port={self._wg.listen_port} "
            f"peers={len(self._wg.peers())}{' closed' if self.closed else ''}>"
        )
