"""WireGuard's cross-platform userspace API (UAPI) on a Unix socket, both ends.

Userspace WireGuard implementations serve ``/var/run/wireguard/NAME.sock``; wireguard-tools'
``wg show NAME`` and ``wg showconf NAME`` read an interface's state from it (``get=1``), and
``wg set``, ``wg setconf`` and ``wg addconf`` change it (``set=1``). :class:`Server` serves a
vnetio :class:`~vnetio.wireguard.Interface` there, so those commands work on vnetio's
interfaces too; :func:`query` reads any implementation's socket (vnetio's or wireguard-go's),
which ``vnetio wg show`` prints.

A ``set=1`` request is read whole and checked (:func:`parse_set`) before anything changes;
then :meth:`Interface.apply <vnetio.wireguard.Interface.apply>` binds a new port or sets the
mark first (the steps that can fail) and changes the key and the peers under one lock, so a
refused request leaves the interface as it was. The reply is ``errno=0``, or the error
negated, as wireguard-go sends it and ``wg`` reads it (``errno=-22``): EPROTO for a line that
is not ``key=value``, EINVAL for an unknown key or a bad value, EADDRINUSE for a port in use,
EOPNOTSUPP for removing the private key (a vnetio interface always has one). Why a request was
refused is logged (logger ``vnetio.wireguard.uapi``).
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .interface import Interface

__all__ = [
    "RUN_DIR",
    "InterfaceState",
    "PeerChange",
    "PeerState",
    "Record",
    "Server",
    "SetRequest",
    "UapiError",
    "forget",
    "parse_set",
    "query",
    "records",
    "served",
    "socket_path",
]

log = logging.getLogger(__name__)

#: Where userspace WireGuard implementations put their sockets (wireguard-tools looks here).
RUN_DIR = Path(os.environ.get("VNETIO_WG_RUN_DIR", "/var/run/wireguard"))


def socket_path(name: str) -> Path:
    return RUN_DIR / f"{name}.sock"


def _record_path(name: str) -> Path:
    return RUN_DIR / f"{name}.vnetio.pid"


@dataclass(frozen=True)
class Record:
    """A vnetio process's claim on a socket in :data:`RUN_DIR`: interface ``name`` is served
    by process ``pid`` (written by :class:`Server`, removed when it closes)."""

    name: str
    pid: int

    @property
    def alive(self) -> bool:
        """The process still runs and still answers on the socket (else: killed). A user
        who may not connect to the socket (root's, mode 0600) cannot ask it: then the
        process running is taken as the answer, so a live interface is never called stale."""
        if not Path(f"/proc/{self.pid}").exists():
            return False
        try:
            return _alive(socket_path(self.name), may_refuse=True)
        except PermissionError:
            return True


def records() -> list[Record]:
    """Every vnetio record in :data:`RUN_DIR`, live or left behind by a killed process."""
    found = []
    for path in sorted(RUN_DIR.glob("*.vnetio.pid")) if RUN_DIR.is_dir() else []:
        try:
            found.append(Record(path.name.removesuffix(".vnetio.pid"), int(path.read_text())))
        except (OSError, ValueError):
            continue
    return found


def forget(name: str) -> None:
    """Remove what a vnetio process left for interface `name`: socket, record, log."""
    for path in (socket_path(name), _record_path(name), RUN_DIR / f"{name}.vnetio.log"):
        path.unlink(missing_ok=True)


def _hex(b64: str) -> str:
    return base64.b64decode(b64).hex()


def _b64(hex_key: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_key)).decode()


def dump(iface: Interface) -> str:
    """The ``get=1`` answer for `iface` (keys in hex, as the protocol has them)."""
    lines = [f"private_key={_hex(iface.private_key)}", f"listen_port={iface.listen_port}"]
    if iface.fwmark:
        lines.append(f"fwmark={iface.fwmark}")
    for peer in iface.peers():
        psk = iface.preshared_key_of(peer.public_key)
        handshake = peer.latest_handshake or 0.0
        seconds = int(handshake)
        lines += [
            f"public_key={_hex(peer.public_key)}",
            f"preshared_key={_hex(psk) if psk else '0' * 64}",
            "protocol_version=1",
            *([f"endpoint={peer.endpoint}"] if peer.endpoint else []),
            f"last_handshake_time_sec={seconds}",
            f"last_handshake_time_nsec={int((handshake - seconds) * 1e9)}",
            f"tx_bytes={peer.tx_bytes}",
            f"rx_bytes={peer.rx_bytes}",
            f"persistent_keepalive_interval={peer.persistent_keepalive or 0}",
            *(f"allowed_ip={network}" for network in peer.allowed_ips),
        ]
    lines.append("errno=0")
    return "\n".join(lines) + "\n\n"


class UapiError(OSError):
    """A ``set=1`` request refused: ``errno`` is what the reply carries, the message why."""


#: An all-zero key: as a preshared key it removes it; as a private key, it would remove that.
ZERO_KEY = base64.b64encode(bytes(32)).decode()


@dataclass
class PeerChange:
    """How one peer changes: one ``public_key=`` block of a ``set=1`` request. Keys are in
    base64, as vnetio's API has them; ``None`` leaves a setting as it is."""

    public_key: str
    #: Remove the peer (the other fields are then ignored; an unknown peer is no error).
    remove: bool = False
    #: Change the peer only if it exists (else the block is skipped).
    update_only: bool = False
    #: A new preshared key (:data:`ZERO_KEY`: none).
    preshared_key: str | None = None
    #: A new endpoint, ``IP:PORT`` or ``[IPv6]:PORT``.
    endpoint: str | None = None
    #: A new persistent keepalive interval in seconds (0: off).
    persistent_keepalive: int | None = None
    #: Drop the peer's AllowedIPs before adding ``allowed_ips``.
    replace_allowed_ips: bool = False
    #: AllowedIPs to add (a network another peer had moves to this one).
    allowed_ips: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "public_key": self.public_key,
            "remove": self.remove,
            "update_only": self.update_only,
            "preshared_key": self.preshared_key,
            "endpoint": self.endpoint,
            "persistent_keepalive": self.persistent_keepalive,
            "replace_allowed_ips": self.replace_allowed_ips,
            "allowed_ips": list(self.allowed_ips),
        }


@dataclass
class SetRequest:
    """A change of a running interface, as ``set=1`` carries it (``wg set``, ``wg setconf``,
    ``wg addconf``); ``None``/``False`` leaves a setting as it is."""

    #: A new private key (base64); all zeros is refused (EOPNOTSUPP).
    private_key: str | None = None
    #: A new UDP port (0: one the kernel picks); the socket is bound anew.
    listen_port: int | None = None
    #: A new firewall mark on the UDP socket (0: none).
    fwmark: int | None = None
    #: Remove every peer before applying ``peers`` (``wg setconf``).
    replace_peers: bool = False
    peers: list[PeerChange] = field(default_factory=list)


_DEVICE_KEYS = ("private_key", "listen_port", "fwmark", "replace_peers")
_PEER_KEYS = (
    "remove",
    "update_only",
    "preshared_key",
    "endpoint",
    "persistent_keepalive_interval",
    "replace_allowed_ips",
    "allowed_ip",
    "protocol_version",
)


def _invalid(what: str) -> UapiError:
    return UapiError(errno.EINVAL, what)


def _key(key: str, value: str) -> str:
    """A hex key of the protocol (64 hex digits) as base64."""
    if len(value) != 64:
        raise _invalid(f"{key}: {len(value)} characters, not 64 hex digits")
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise _invalid(f"{key}: not hex digits") from None


def _number(key: str, value: str, bits: int) -> int:
    if not value.isascii() or not value.isdigit():
        raise _invalid(f"{key}={value!r}: not a decimal number")
    number = int(value)
    if number >= 1 << bits:
        raise _invalid(f"{key}={value}: more than {(1 << bits) - 1}")
    return number


def _true(key: str, value: str) -> bool:
    if value != "true":
        raise _invalid(f"{key}={value!r}: the only value it takes is 'true'")
    return True


def _endpoint(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or host.count(":") == 1:
        raise _invalid(f"endpoint={value!r}: no port; write IP:PORT or [IPv6]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise _invalid(f"endpoint={value!r}: write an IPv6 endpoint as [ADDRESS]:PORT")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise _invalid(f"endpoint={value!r}: not IP:PORT or [IPv6]:PORT") from None
    if _number("endpoint port", port, 16) == 0:
        raise _invalid(f"endpoint={value!r}: port 0; give a port from 1 to 65535")
    return value


def _network(value: str) -> str:
    if "/" not in value:
        raise _invalid(f"allowed_ip={value!r}: no prefix length (ADDRESS/BITS)")
    address, _, bits = value.partition("/")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise _invalid(f"allowed_ip={value!r}: not an IP address") from None
    if _number("allowed_ip prefix", bits, 8) > ip.max_prefixlen:
        raise _invalid(f"allowed_ip={value!r}: more than {ip.max_prefixlen} bits")
    return str(ipaddress.ip_network(value, strict=False))


def parse_set(text: str) -> SetRequest:
    """Read a ``set=1`` request (the text after the ``set=1`` line, or with it) into a
    :class:`SetRequest`, checking every line first: raises :class:`UapiError` with the
    errno the protocol answers with (EPROTO: a line that is not ``key=value``; EINVAL: an
    unknown or misplaced key, a bad value, a public key given twice). Nothing is changed."""
    request = SetRequest()
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            break  # the blank line that ends the request
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError(errno.EPROTO, f"line {number}: {line[:40]!r} is not key=value")
        if key == "set" and number == 1:
            if value != "1":
                raise _invalid(f"set={value!r}: the operation is set=1")
            continue
        _line(request, key, value)
    return request


def _line(request: SetRequest, key: str, value: str) -> None:
    peer = request.peers[-1] if request.peers else None
    if key == "public_key":
        public = _key(key, value)
        if any(p.public_key == public for p in request.peers):
            raise _invalid(f"public_key={value}: this peer comes twice in one request")
        request.peers.append(PeerChange(public))
    elif key in _DEVICE_KEYS:
        if peer is not None:
            raise _invalid(f"{key}: an interface key after a public_key= (peer) line")
        _device_field(request, key, value)
    elif key in _PEER_KEYS:
        if peer is None:
            raise _invalid(f"{key}: a peer key before any public_key= line")
        _peer_change(peer, key, value)
    else:
        raise _invalid(f"{key}: not a key of the set operation")


def _device_field(request: SetRequest, key: str, value: str) -> None:
    if key == "private_key":
        request.private_key = _key(key, value)
    elif key == "listen_port":
        request.listen_port = _number(key, value, 16)
    elif key == "fwmark":
        request.fwmark = _number(key, value, 32)
    else:
        request.replace_peers = _true(key, value)


def _peer_change(peer: PeerChange, key: str, value: str) -> None:
    if key == "remove":
        peer.remove = _true(key, value)
    elif key == "update_only":
        peer.update_only = _true(key, value)
    elif key == "preshared_key":
        peer.preshared_key = _key(key, value)
    elif key == "endpoint":
        peer.endpoint = _endpoint(value)
    elif key == "persistent_keepalive_interval":
        peer.persistent_keepalive = _number(key, value, 16)
    elif key == "replace_allowed_ips":
        # In order, as wireguard-go applies it: networks given before it are dropped too.
        peer.replace_allowed_ips = _true(key, value)
        peer.allowed_ips.clear()
    elif key == "allowed_ip":
        peer.allowed_ips.append(_network(value))
    elif value != "1":
        raise _invalid(f"protocol_version={value!r}: only version 1 exists")


class Server:
    """Serve `iface`'s state at :func:`socket_path` (`name`) until :meth:`close`."""

    def __init__(self, iface: Interface, name: str) -> None:
        self.path = socket_path(name)
        RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.exists():
            if _alive(self.path):
                raise FileExistsError(
                    errno.EEXIST,
                    f"a WireGuard interface named {name!r} is already served at {self.path} "
                    "(a socket path is shared by every network namespace); choose another name "
                    "or bring that one down",
                )
            self.path.unlink()  # left behind by a process that died
        self._iface = iface
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # the answer holds the private key: root only
        try:
            self._sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._record = _record_path(name)
        self._record.write_text(f"{os.getpid()}\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"vnetio-wg-uapi-{name}")
        self._thread.daemon = True
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    self._answer(conn)
                except OSError:
                    continue  # the client went away

    def _answer(self, conn: socket.socket) -> None:
        request = _read_message(conn)
        op = request.split("\n", 1)[0].strip()
        if not request:
            return  # `wg` connects once without a word to see that the socket is alive
        if op == "get=1":
            conn.sendall(dump(self._iface).encode())
        elif op == "set=1":
            # Negated, as wireguard-go answers and wireguard-tools' `wg` reads it.
            conn.sendall(f"errno={-self._set(request)}\n\n".encode())
        else:
            log.warning("%s: refused a request that is neither get=1 nor set=1", self.path)
            conn.sendall(f"errno={-errno.EINVAL}\n\n".encode())

    def _set(self, text: str) -> int:
        """Apply a ``set=1`` request; the errno of the reply (0: done)."""
        try:
            request = parse_set(text)
            if request.private_key == ZERO_KEY:
                raise UapiError(
                    errno.EOPNOTSUPP,
                    "private_key=0…: a vnetio interface cannot run without a private key",
                )
            self._iface.apply(request)
        except OSError as exc:
            code = exc.errno or errno.EIO
            log.warning("%s: set refused (errno %d): %s", self.path, code, exc.strerror or exc)
            return code
        except ValueError as exc:
            log.warning("%s: set refused (errno %d): %s", self.path, errno.EINVAL, exc)
            return errno.EINVAL
        return 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        self.path.unlink(missing_ok=True)
        self._record.unlink(missing_ok=True)


def _alive(path: Path, *, may_refuse: bool = False) -> bool:
    """Something accepts connections on `path`. With `may_refuse`, a PermissionError
    (this user may not connect) is raised rather than taken as "nobody there"."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except PermissionError:
        if may_refuse:
            raise
        return False
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _read_message(conn: socket.socket) -> str:
    data = b""
    while b"\n\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > 1 << 20:
            raise OSError(errno.EMSGSIZE, "UAPI message too long")
    return data.decode(errors="replace")


@dataclass
class PeerState:
    public_key: str
    endpoint: str | None = None
    allowed_ips: list[str] = field(default_factory=list)
    latest_handshake: float | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0
    persistent_keepalive: int | None = None
    preshared_key: bool = False


@dataclass
class InterfaceState:
    name: str
    public_key: str | None = None
    listen_port: int | None = None
    peers: list[PeerState] = field(default_factory=list)


def query(name: str, *, timeout: float = 2.0) -> InterfaceState:
    """Read interface `name`'s state from its UAPI socket (vnetio, wireguard-go, …)."""
    from . import pubkey

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(socket_path(name)))
        conn.sendall(b"get=1\n\n")
        answer = _read_message(conn)
    state = InterfaceState(name)
    peer: PeerState | None = None
    for line in answer.splitlines():
        key, _, value = line.partition("=")
        if key == "errno" and value != "0":
            code = abs(int(value))  # wireguard-go and vnetio send it negated
            raise OSError(code, f"{name}: the UAPI get failed: {os.strerror(code)}")
        if key == "private_key":
            state.public_key = pubkey(_b64(value))
        elif key == "listen_port":
            state.listen_port = int(value)
        elif key == "public_key":
            peer = PeerState(_b64(value))
            state.peers.append(peer)
        elif peer is not None:
            _peer_field(peer, key, value)
    return state


def _peer_field(peer: PeerState, key: str, value: str) -> None:
    if key == "endpoint":
        peer.endpoint = value
    elif key == "allowed_ip":
        peer.allowed_ips.append(value)
    elif key == "preshared_key":
        peer.preshared_key = value != "0" * 64
    elif key in ("rx_bytes", "tx_bytes"):
        setattr(peer, key, int(value))
    elif key == "persistent_keepalive_interval":
        peer.persistent_keepalive = int(value) or None
    elif key == "last_handshake_time_sec":
        peer.latest_handshake = (int(value) + (peer.latest_handshake or 0) % 1) or None
    elif key == "last_handshake_time_nsec":
        peer.latest_handshake = (int(peer.latest_handshake or 0) + int(value) / 1e9) or None


def served() -> list[str]:
    """Names of the interfaces with a live socket in :data:`RUN_DIR`."""
    if not RUN_DIR.is_dir():
        return []
    return sorted(p.stem for p in RUN_DIR.glob("*.sock") if _alive(p))
