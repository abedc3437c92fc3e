"""WireGuard's cross-platform userspace API (UAPI) on a Unix socket, both ends.

Userspace WireGuard implementations serve ``/var/run/wireguard/NAME.sock``; wireguard-tools'
``wg show NAME`` and ``wg showconf NAME`` read an interface's state from it (``get=1``).
:class:`Server` serves a vnetio :class:`~vnetio.wireguard.Interface` there, so those commands
work on vnetio's interfaces too; :func:`query` reads any implementation's socket (vnetio's or
wireguard-go's), which ``vnetio wg show`` prints.

Configuration changes (``set=1``, i.e. ``wg set``) are refused with EOPNOTSUPP: change a
vnetio interface through its Python API or its configuration file.
"""

from __future__ import annotations

import base64
import errno
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
    "PeerState",
    "Record",
    "Server",
    "forget",
    "query",
    "records",
    "served",
    "socket_path",
]

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
        if op == "get=1":
            conn.sendall(dump(self._iface).encode())
        elif op == "set=1":
            conn.sendall(f"errno={errno.EOPNOTSUPP}\n\n".encode())
        else:
            conn.sendall(f"errno={errno.EINVAL}\n\n".encode())

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
            raise OSError(int(value), f"{name}: the UAPI get failed: {os.strerror(int(value))}")
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
