"""Type stubs for the Rust extension ``vnetio._core`` (hand-written, checked by stubtest)."""

import os
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Final, Literal, Self, SupportsIndex, TypedDict, final, type_check_only

from typing_extensions import Buffer, disjoint_base

__all__ = [
    "ABI_VERSION",
    "IFF_MULTI_QUEUE",
    "IFF_NAPI",
    "IFF_NO_PI",
    "IFF_PERSIST",
    "IFF_TAP",
    "IFF_TUN",
    "IFF_VNET_HDR",
    "Adapter",
    "Batch",
    "EchoResponder",
    "Forwarder",
    "Loopback",
    "Macvtap",
    "Offload",
    "Queue",
    "Reader",
    "SerialPair",
    "SlipDecoder",
    "SlipLink",
    "Stats",
    "Tap",
    "Tun",
    "VhostStats",
    "VhostUserNet",
    "WireGuard",
    "Writer",
    "_KernelAdapter",
    "__version__",
    "_install_python_layer",
    "_panic_for_test",
    "build_profile",
    "delete_link",
    "fix_checksums",
    "internet_checksum",
    "list_links",
    "loopback_pair",
    "slip_encode",
    "slip_encode_batch",
    "summarize",
    "tun_fd_netns",
    "tun_features",
    "update_checksum",
    "update_checksum32",
    "validate_ifname",
    "verify_checksums",
    "wg_genkey",
    "wg_pubkey",
]

__version__: Final[str]
ABI_VERSION: Final[int]
build_profile: Final[str]

IFF_TUN: Final[int]
IFF_TAP: Final[int]
IFF_NO_PI: Final[int]
IFF_MULTI_QUEUE: Final[int]
IFF_VNET_HDR: Final[int]
IFF_NAPI: Final[int]
IFF_PERSIST: Final[int]

def tun_fd_netns(pid: int, fd: int) -> tuple[int, int] | None:
    """The namespace (st_dev, st_ino) of the adapter behind descriptor ``fd`` of ``pid``."""

def tun_features() -> int:
    """Return the kernel's TUNGETFEATURES bit mask (IFF_* flags this kernel supports).

    Raises:
        OSError: /dev/net/tun cannot be opened (errno set).
    """

def list_links(netns: str | None = None) -> list[dict[str, Any]]:
    """Every interface of a network namespace (None: the caller's), as dicts.

    Keys: ifindex, name, kind, flags, up, mtu, txqlen, operstate, carrier, master, mac,
    link (IFLA_LINK: the index of the link it sits on, or None), link_netnsid, tun (None,
    or a dict: mode, owner, group, pi, vnet_hdr, persist, multi_queue, queues,
    disabled_queues; the kernel reports the queue counts for multi-queue adapters only, so
    they are None for single-queue ones), and macvtap (None, or a dict: mode, lower (its
    name, None when in another namespace), dev (the character device's (major, minor),
    None when sysfs does not tell)).
    """

def delete_link(name: str, *, netns: str | None = None, ifindex: int | None = None) -> None:
    """Delete the TUN/TAP adapter or macvtap link ``name`` over rtnetlink, even while a
    process holds it (only while its index is ``ifindex``, when given); refuses any other
    kind of interface (``vnetio.delete_adapter`` is the public API)."""

def internet_checksum(data: Buffer) -> int:
    """The Internet checksum (RFC 1071) of ``data``: the value a checksum field holds."""

def update_checksum(check: int, old: int, new: int) -> int:
    """RFC 1624: the checksum after a 16-bit field changes from ``old`` to ``new``."""

def update_checksum32(check: int, old: int, new: int) -> int:
    """RFC 1624 for a changed 32-bit field (an IPv4 address, a TCP sequence number)."""

def verify_checksums(
    frame: Buffer, kind: Literal["tap", "tun"] = "tap"
) -> tuple[bool | None, bool | None]:
    """Verify a frame's IPv4 header and TCP/UDP/ICMP/ICMPv6 checksums: (ip_ok, l4_ok)."""

def fix_checksums(frame: bytearray, kind: Literal["tap", "tun"] = "tap") -> None:
    """Recompute a frame's IPv4 header and transport checksums in place."""

def validate_ifname(name: str) -> None:
    """Raise ValueError if ``name`` is not a valid interface name (or ``%d`` pattern)."""

@final
class Offload:
    """Offload metadata of one frame (a virtio-net header); immutable, and readable as a
    mapping with the keys gso_type, ecn, gso_size, hdr_len, csum_start, csum_offset,
    needs_csum, data_valid."""

    def __new__(
        cls,
        gso_type: str = "none",
        *,
        ecn: bool = False,
        gso_size: int = 0,
        hdr_len: int = 0,
        csum_start: int = 0,
        csum_offset: int = 0,
        needs_csum: bool = False,
        data_valid: bool = False,
    ) -> Offload: ...
    @property
    def gso_type(self) -> str: ...
    @property
    def ecn(self) -> bool: ...
    @property
    def gso_size(self) -> int: ...
    @property
    def hdr_len(self) -> int: ...
    @property
    def csum_start(self) -> int: ...
    @property
    def csum_offset(self) -> int: ...
    @property
    def needs_csum(self) -> bool: ...
    @property
    def data_valid(self) -> bool: ...
    def as_dict(self) -> dict[str, Any]: ...
    def __getitem__(self, key: str, /) -> Any: ...
    def get(self, key: str, default: Any | None = None) -> Any: ...
    def __contains__(self, key: str, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[Any]: ...
    def items(self) -> list[tuple[str, Any]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Batch:
    """A batch of frames in one contiguous Rust-owned arena.

    Supports ``len()``, indexing (negative too) and iteration; each frame is a
    read-only, zero-copy ``memoryview`` into the arena. The batch itself exports
    the whole arena through the buffer protocol.
    """

    @staticmethod
    def from_frames(
        frames: Iterable[Buffer],
        offload: Iterable[Offload | Mapping[str, Any] | None] | None = None,
    ) -> Batch:
        """Copy frames into one arena; ``offload``: per-frame virtio-net metadata or None."""
    def filter(
        self,
        program: str | Sequence[tuple[int, int, int, int]] | Callable[[Any], object],
        kind: Literal["tap", "tun"] = "tap",
    ) -> Batch:
        """The frames a tcpdump expression, a classic BPF program or a predicate on the
        scapy packet accepts, as a new Batch (receive times kept)."""
    def _take(self, indices: Sequence[int]) -> Batch:
        """The frames at ``indices`` as a new Batch (receive times and metadata kept)."""
    def to_scapy(self, kind: Literal["tap", "tun"] = "tap") -> Sequence[Any]:
        """The frames as scapy packets, dissected lazily on access."""
    def segment(self, kind: Literal["tap", "tun"] = "tap") -> Batch:
        """The frames as they would cross a wire: super-frames split, checksums completed."""
    def offload_info(self, index: SupportsIndex) -> Offload | None:
        """Offload metadata of a frame (gso_type, ecn, gso_size, hdr_len, csum_start,
        csum_offset, needs_csum, data_valid), or None for a plain frame."""
    def __len__(self) -> int: ...
    def __getitem__(self, index: SupportsIndex, /) -> memoryview: ...
    def __iter__(self) -> Iterator[memoryview]: ...
    @property
    def nbytes(self) -> int:
        """Total bytes of all frames."""
    @property
    def lengths(self) -> list[int]: ...
    @property
    def timestamps_ns(self) -> list[int | None]:
        """Receive time of each frame (CLOCK_REALTIME, ns); 0 for frames built in memory;
        None where the source recorded no time (pcapng Simple Packet Blocks)."""
    def to_list(self) -> list[bytes]: ...
    def verify_checksums(self, kind: Literal["tap", "tun"] = "tap") -> list[bool]:
        """One bool per frame: every checksum that applies is correct (GIL released)."""
    def fix_checksums(self, kind: Literal["tap", "tun"] = "tap") -> Batch:
        """A copy with every parsable frame's checksums recomputed (GIL released)."""

@final
class Stats:
    """Counters of one adapter (or queue). Kernel counters are read when stats() is called."""

    rx_frames: int
    rx_bytes: int
    tx_frames: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int
    tx_coalesced: int
    coalesce_fallbacks: int
    rx_filtered: int | None
    """Frames a filter rejected (not in rx_frames or rx_dropped); None while a classic
    kernel filter is attached (the kernel then counts its rejects in rx_dropped)."""
    def as_dict(self) -> dict[str, int | None]: ...
    def __getitem__(self, key: str, /) -> int | None: ...

@disjoint_base
class Adapter:
    """Common interface of Tap, Tun, Queue and Loopback (see the subclasses)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["tap", "tun"]: ...
    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def recv(self, timeout: float | None = None) -> bytes:
        """Receive one frame. Raises TimeoutError when ``timeout`` passes first."""
    def recv_batch(self, max_frames: int = 256, timeout: float | None = None) -> Batch:
        """Receive up to ``max_frames`` frames: waits up to ``timeout`` seconds (None: forever,
        0: not at all) for the first, then takes what is queued without waiting; on timeout
        the Batch is empty (``recv`` raises TimeoutError instead). On a TAP, TUN or macvtap
        a batch also ends once it holds about 512 KiB of frames (8 super-frames of 64 KiB),
        so it stays in the CPU cache; what is left is returned by the next call. On an
        offload adapter in ``rx_mode="segments"`` the last super-frame read is split whole,
        so the batch may hold the segments of that one super-frame beyond ``max_frames``."""
    def send(self, frame: Buffer) -> None: ...
    def send_batch(self, frames: Batch | Iterable[Buffer]) -> int:
        """Send every frame; returns the count. All frames are validated before the first is
        written. On an OS error part-way, raises OSError with ``.sent`` = frames written."""
    def stats(self) -> Stats: ...
    def capture_to(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Capture into a file (see vnetio.capture.capture_to); returns a CaptureStats."""
    def set_filter(
        self,
        filter: str | Sequence[tuple[int, int, int, int]] | None,
        *,
        placement: Literal["auto", "kernel", "classic", "userspace"] = "auto",
    ) -> Literal["kernel", "classic", "userspace"] | None:
        """Keep only received frames the filter accepts (tcpdump expression or cBPF
        program; None removes it). Returns where it runs; on error nothing changes."""
    @property
    def filter(self) -> str | None:
        """The current filter's tcpdump expression (None: none, or a raw program)."""
    @property
    def filter_placement(self) -> Literal["kernel", "classic", "userspace"] | None: ...
    def send_packets(self, packets: Iterable[Any]) -> int:
        """Send scapy packets (one conversion to bytes each, then one batch)."""
    def recv_batch_async(
        self, max_frames: int = 256, timeout: float | None = None
    ) -> Coroutine[Any, Any, Batch]:
        """Receive without blocking the event loop (see vnetio.aio)."""
    def send_batch_async(self, frames: Batch | Iterable[Buffer]) -> Coroutine[Any, Any, int]:
        """Send without blocking the event loop (see vnetio.aio)."""
    def batches(self, max_frames: int = 256) -> AsyncIterator[Batch]:
        """``async for batch in adapter.batches()``."""
    def __aenter__(self) -> Coroutine[Any, Any, Self]: ...
    def __aexit__(self, *exc_info: object) -> Coroutine[Any, Any, None]: ...

@final
class Queue(Adapter):
    """One queue (file descriptor) of a multi-queue adapter."""

    @property
    def index(self) -> int: ...

@disjoint_base
class _KernelAdapter(Adapter):
    @property
    def ifindex(self) -> int: ...
    @property
    def netns(self) -> str | None: ...
    @property
    def persistent(self) -> bool: ...
    @property
    def created(self) -> bool:
        """True when this open created the adapter (False: attached to an existing one)."""
    @property
    def queues(self) -> tuple[Queue, ...]: ...
    @property
    def offload(self) -> bool:
        """Whether frames carry virtio-net metadata (opened with offload=True)."""
    @property
    def offloads(self) -> list[str]:
        """Offloads the kernel accepted: "csum", "tso4", "tso6", "uso4", "uso6"."""
    @property
    def mtu(self) -> int: ...
    @mtu.setter
    def mtu(self, value: int) -> None: ...
    @property
    def queue_length(self) -> int:
        """Kernel queue length in frames (txqueuelen); settable with CAP_NET_ADMIN."""
    @queue_length.setter
    def queue_length(self, value: int) -> None: ...
    @property
    def is_up(self) -> bool: ...
    def up(self) -> None: ...
    def down(self) -> None: ...
    def add_address(self, address: str) -> None:
        """Add an IPv4 or IPv6 address in CIDR form, e.g. ``"192.0.2.1/24"``."""
    def del_address(self, address: str) -> None: ...
    def addresses(self) -> list[str]: ...
    def add_route(self, network: str) -> None:
        """Route a network in CIDR form through this adapter (`ip route add NET dev NAME`)."""
    def del_route(self, network: str) -> None: ...
    def set_persistent(self, persistent: bool) -> None: ...

@final
class Tap(_KernelAdapter):
    def __new__(
        cls,
        name: str = "vn%d",
        *,
        queues: int = 1,
        persist: bool = False,
        netns: str | None = None,
        owner: int | None = None,
        group: int | None = None,
        mtu: int | None = None,
        offload: bool = False,
        rx_mode: Literal["segments", "superframes"] = "segments",
    ) -> Self: ...
    @property
    def mac(self) -> str: ...
    @mac.setter
    def mac(self, value: str) -> None: ...

@final
class Tun(_KernelAdapter):
    def __new__(
        cls,
        name: str = "vn%d",
        *,
        queues: int = 1,
        persist: bool = False,
        netns: str | None = None,
        owner: int | None = None,
        group: int | None = None,
        mtu: int | None = None,
        offload: bool = False,
        rx_mode: Literal["segments", "superframes"] = "segments",
    ) -> Self: ...

@final
class VhostUserNet(Adapter):
    """A vhost-user virtio-net backend on a Unix socket: the other end of a virtual
    machine's NIC (QEMU ``-netdev vhost-user``)."""

    def __new__(
        cls,
        socket_path: str | os.PathLike[str],
        *,
        queues: int = 1,
        mac: str | None = None,
        mtu: int = 1500,
        offload: bool = True,
        rx_mode: Literal["segments", "superframes"] = "segments",
        client: bool = False,
        send_timeout: float = 0.1,
        overflow: Literal["drop", "error"] = "drop",
    ) -> VhostUserNet: ...
    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until a guest driver has set up the NIC; True if it did in time."""
    @property
    def connected(self) -> bool: ...
    @property
    def features(self) -> frozenset[str]:
        """The virtio-net features the guest driver negotiated."""
    @property
    def offered_features(self) -> frozenset[str]: ...
    @property
    def socket_path(self) -> os.PathLike[str]: ...
    @property
    def queues(self) -> tuple[Queue, ...]: ...
    @property
    def mac(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...
    def vhost_stats(self) -> VhostStats: ...

@final
class VhostStats:
    """Counters of a vhost-user adapter beyond Stats."""

    @property
    def connections(self) -> int: ...
    @property
    def disconnects(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def bad_frames(self) -> int: ...
    @property
    def ring_faults(self) -> int: ...
    @property
    def superframes(self) -> int: ...
    @property
    def sent_in_software(self) -> int: ...
    @property
    def dropped_no_guest(self) -> int: ...
    @property
    def dropped_no_buffers(self) -> int: ...
    @property
    def dropped_too_big(self) -> int: ...
    @property
    def tx_kicks(self) -> int: ...
    @property
    def rx_kicks(self) -> int: ...
    @property
    def tx_interrupts(self) -> int: ...
    @property
    def rx_interrupts(self) -> int: ...
    @property
    def tx_taken_at_kick(self) -> int: ...
    @property
    def guest_tx_unterminated(self) -> int: ...
    @property
    def guest_tx_out_of_bounds(self) -> int: ...
    @property
    def guest_tx_wrong_direction(self) -> int: ...
    @property
    def guest_tx_too_long(self) -> int: ...
    @property
    def guest_tx_short_header(self) -> int: ...
    @property
    def guest_rx_unterminated(self) -> int: ...
    @property
    def guest_rx_out_of_bounds(self) -> int: ...
    @property
    def guest_rx_wrong_direction(self) -> int: ...
    @property
    def guest_rx_too_long(self) -> int: ...
    @property
    def guest_rx_short_header(self) -> int: ...
    @property
    def refused_chains(self) -> int: ...
    def as_dict(self) -> dict[str, int]: ...

@final
class Macvtap(_KernelAdapter):
    """A macvtap link on a lower Ethernet device, created by vnetio and opened through its
    character device: Ethernet frames, with the I/O, offload and configuration of a Tap.

    The link is deleted on close unless ``persist=True`` (``persistent`` is settable with
    ``set_persistent``). Filters run in this process: a macvtap descriptor takes no kernel
    filter, so ``set_filter(..., placement="kernel"/"classic")`` raises ValueError.
    """

    def __new__(
        cls,
        lower: str,
        *,
        name: str = "vnmvt%d",
        mode: Literal["private", "vepa", "bridge", "passthru", "source"] = "bridge",
        netns: str | None = None,
        mac: str | None = None,
        mtu: int | None = None,
        queues: int = 1,
        persist: bool = False,
        offload: bool = False,
        rx_mode: Literal["segments", "superframes"] = "segments",
    ) -> Self: ...
    @property
    def lower(self) -> str:
        """The lower device the link sits on."""
    @property
    def mode(self) -> Literal["private", "vepa", "bridge", "passthru", "source"]: ...
    @property
    def mac(self) -> str:
        """The link's Ethernet address: frames to it (and broadcasts) reach this adapter."""
    @mac.setter
    def mac(self, value: str) -> None: ...

@final
class Loopback(Adapter):
    """One end of an in-memory adapter pair (see loopback_pair)."""

    @property
    def mtu(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def pending(self) -> int:
        """Frames queued for this end's recv."""

def loopback_pair(
    capacity: int = 1024,
    *,
    kind: Literal["tap", "tun"] = "tap",
    mtu: int = 1500,
    overflow: Literal["drop", "error"] = "drop",
) -> tuple[Loopback, Loopback]: ...

@type_check_only
class _Faults(TypedDict, total=False):
    drop: float
    corrupt: float
    delay: float
    delay_ms: float
    seed: int

@final
class SerialPair:
    """A virtual null-modem cable: two pseudo-terminals joined by a relay in Rust. What is
    written to one end is read from the other, optionally paced at ``baud`` (10 bits per
    byte) and with injected faults (``drop``/``corrupt``/``delay`` rates per byte,
    ``delay_ms``, ``seed``)."""

    def __new__(
        cls,
        links: tuple[str, str] | None = ...,
        *,
        link_dir: str | os.PathLike[str] | None = None,
        baud: int | None = None,
        faults: _Faults | None = None,
    ) -> Self: ...
    @property
    def paths(self) -> tuple[str, str]:
        """The two ends as users open them: the symlinks, or the ptys when links=None."""
    @property
    def ptys(self) -> tuple[str, str]:
        """The two ends' pseudo-terminals (/dev/pts/N)."""
    @property
    def baud(self) -> int | None: ...
    @property
    def closed(self) -> bool: ...
    def stats(self) -> dict[str, dict[str, int | float]]:
        """{"a_to_b": {...}, "b_to_a": {...}} (a is paths[0]): bytes_in, bytes_out, dropped,
        corrupted, delays, blocked_s."""
    def close(self) -> None:
        """Stop the relay, close both ptys (users see a hang-up), remove the links."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...

@final
class SlipLink(Adapter):
    """IP over a serial line (RFC 1055 SLIP) between the tty ``serial`` (a path or an open
    descriptor, which the link duplicates) and the Tun ``tun`` (the link then reads the Tun:
    do not receive from it yourself; closing the link leaves it open); with ``tun=None`` the
    link is itself an adapter of IP packets. Packets that arrive damaged are dropped and
    counted (``link_stats()``)."""

    def __new__(
        cls,
        serial: str | os.PathLike[str] | int,
        tun: Tun | Queue | None = None,
        *,
        mtu: int = 1006,
        baud: int | None = None,
        capacity: int = 1024,
    ) -> Self: ...
    @property
    def mtu(self) -> int: ...
    @property
    def line(self) -> str:
        """The line: its path, or "fd:N"."""
    @property
    def tun(self) -> str | None:
        """The name of the Tun the link bridges to (None: the link is the adapter)."""
    def link_stats(self) -> dict[str, int]:
        """line_bytes_in/out, packets_in/out, empty, bad_escape, over_mtu, noise,
        bad_checksum, refused, oversize, line_errors."""

@final
class Forwarder:
    """Forward frames both ways between two adapters of the same kind, in two Rust threads
    (no Python per batch; the interpreter lock is never taken). Offload metadata crosses
    when the destination takes it, and is resolved in software otherwise. A closed adapter
    stops the forwarder (``state == "stopped"``, ``reason`` names it); ``close()`` stops it
    and leaves both adapters open. Do not receive from ``a`` or ``b`` yourself meanwhile.
    A multi-queue adapter is forwarded through its first queue: to use every queue, give
    each pair of ``Queue`` objects a Forwarder of its own."""

    def __new__(cls, a: Adapter, b: Adapter, *, batch: int = 256) -> Self: ...
    @property
    def a(self) -> Adapter: ...
    @property
    def b(self) -> Adapter: ...
    @property
    def state(self) -> Literal["running", "closed", "stopped"]: ...
    @property
    def running(self) -> bool: ...
    @property
    def reason(self) -> str | None:
        """Why it stopped ("<name> was closed", "close() was called"), or None."""
    @property
    def last_error(self) -> str | None: ...
    def stats(self) -> dict[str, dict[str, int]]:
        """{"a_to_b": {...}, "b_to_a": {...}}: frames, bytes, batches, superframes (taken),
        delivered, dropped (taken, not delivered), refused (of dropped), recv_errors,
        send_errors."""
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until it stops; returns whether it did within ``timeout`` seconds."""
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...

@final
class SlipDecoder:
    """A streaming SLIP decoder: feed() bytes in any pieces, get the complete clean frames."""

    def __new__(cls, mtu: int = 1006) -> Self: ...
    def feed(self, data: Buffer) -> list[bytes]: ...
    def stats(self) -> dict[str, int]:
        """frames, bytes, empty, bad_escape, over_mtu."""
    @property
    def pending(self) -> int: ...
    @property
    def mtu(self) -> int: ...

def slip_encode(packet: Buffer) -> bytes:
    """The SLIP line encoding of one packet (leading and trailing END)."""

def slip_encode_batch(packets: Batch | Iterable[Buffer]) -> bytes:
    """The SLIP line encodings of every packet, concatenated."""

@final
class EchoResponder:
    """Answers ARP, IPv6 neighbour solicitations and ICMP/ICMPv6 echo requests for one MAC
    and IPv4 and/or IPv6 address (see vnetio.responder.EchoResponder)."""

    def __new__(
        cls,
        mac: str | None = None,
        *,
        ipv4: str | None = None,
        ipv6: str | None = None,
        kind: Literal["tap", "tun"] = "tap",
    ) -> Self: ...
    def answer(self, frames: Batch | Iterable[Buffer]) -> Batch:
        """The replies to the frames that deserve one, as a new Batch (GIL released)."""
    def stats(self) -> dict[str, int]:
        """arp, ns, echo4, echo6, ignored, malformed, answered."""
    @property
    def mac(self) -> str: ...
    @property
    def ipv4(self) -> str | None: ...
    @property
    def ipv6(self) -> str | None: ...
    @property
    def kind(self) -> Literal["tap", "tun"]: ...

def _panic_for_test() -> None:
    """Raise a Rust panic (tests prove it surfaces as PanicException)."""

@final
class Writer:
    """A pcapng or pcap file being written (see vnetio.capture)."""

    def __new__(
        cls,
        path: str | os.PathLike[str],
        *,
        format: Literal["pcapng", "pcap"] = "pcapng",
        snaplen: int = 262144,
        linktype: Literal["auto", "ethernet", "raw"] | int | None = None,
        interface: Adapter | str | None = None,
        filter: str | None = None,
        direct_io: bool = True,
    ) -> Writer: ...
    def write_batch(self, batch: Batch | Iterable[Buffer]) -> int:
        """Append frames with their timestamps (0: now), GIL released; returns the count."""
    def write(self, frame: Buffer, timestamp_ns: int | None = None) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def capture(
        self,
        adapter: Adapter,
        *,
        count: int | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> tuple[int, int, Literal["count", "size", "timeout"]]:
        """Capture from an adapter with the GIL released: (written, filtered total, reason)."""
    @property
    def path(self) -> str: ...
    @property
    def format(self) -> Literal["pcapng", "pcap"]: ...
    @property
    def linktype(self) -> int: ...
    @property
    def snaplen(self) -> int: ...
    @property
    def interface(self) -> str | None: ...
    @property
    def filter(self) -> str | None: ...
    @property
    def direct_io(self) -> bool: ...
    @property
    def frames(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def file_bytes(self) -> int: ...
    @property
    def truncated_frames(self) -> int: ...
    @property
    def filtered(self) -> int: ...
    @property
    def closed(self) -> bool: ...

@final
class Reader:
    """A pcapng or pcap file read batch by batch (see vnetio.capture)."""

    def __new__(cls, path: str | os.PathLike[str]) -> Reader: ...
    def read_batch(self, max_frames: int = 256) -> Batch:
        """Up to max_frames frames with the file's timestamps; empty at the end."""
    def __iter__(self) -> Self: ...
    def __next__(self) -> Batch: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def format(self) -> Literal["pcapng", "pcap"]: ...
    @property
    def linktype(self) -> int | None: ...
    @property
    def kind(self) -> Literal["tap", "tun"] | None: ...
    @property
    def interfaces(self) -> list[dict[str, Any]]: ...
    @property
    def frames(self) -> int: ...
    @property
    def truncated_frames(self) -> int: ...

def summarize(
    batch: Batch, kind: Literal["tap", "tun"] = "tap", utc_offset: int | None = None
) -> str:
    """One tcpdump-style line per frame, newline-terminated, decoded in Rust."""

def _install_python_layer(functions: dict[str, Callable[..., Any]]) -> None: ...

@final
class WireGuard:
    """A WireGuard endpoint between a plaintext adapter and a UDP socket."""

    def __new__(
        cls,
        private_key: str,
        port: Adapter,
        *,
        listen_port: int | None = None,
        netns: str | None = None,
    ) -> Self: ...
    @property
    def public_key(self) -> str: ...
    @property
    def listen_port(self) -> int: ...
    @property
    def private_key(self) -> str: ...
    @property
    def fwmark(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def preshared_key_of(self, public_key: str) -> str | None: ...
    def reconfigure(
        self,
        *,
        private_key: str | None = None,
        listen_port: int | None = None,
        fwmark: int | None = None,
        replace_peers: bool = False,
        peers: list[dict[str, Any]] = ...,
    ) -> None: ...
    def add_peer(
        self,
        public_key: str,
        *,
        endpoint: str | None = None,
        allowed_ips: list[str] = ...,
        preshared_key: str | None = None,
        persistent_keepalive: int | None = None,
    ) -> None: ...
    def remove_peer(self, public_key: str) -> bool: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def stats(self) -> dict[str, Any]: ...
    def start_capture(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["pcapng", "pcap"] = "pcapng",
        snaplen: int = 262144,
        direct_io: bool = True,
    ) -> None: ...
    def capture_frames(self) -> int | None: ...
    def stop_capture(self) -> dict[str, int]: ...
    def close(self) -> None: ...

def wg_genkey() -> str: ...
def wg_pubkey(private_key: str) -> str: ...
