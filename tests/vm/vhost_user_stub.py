"""A vhost-user *stub*: answers just enough of the protocol for QEMU to boot a guest with a
vhost-user virtio-net NIC, and records every request. It moves no packets.

It checks the rig's QEMU command line for vhost-user (chardev, netdev, shared memfd guest
RAM) before vnetio's real backend exists, and shows what a backend receives. Messages are a
12-byte header (request, flags, payload size; little endian) plus payload, with file
descriptors as SCM_RIGHTS. Only requests that expect a reply get one: GET_FEATURES,
GET_PROTOCOL_FEATURES (none offered) and GET_VRING_BASE. Received descriptors are
described (``readlink /proc/self/fd/N``) and closed.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
import threading
from dataclasses import dataclass

# Request codes (vhost-user specification, "Front-end message types").
GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
SET_MEM_TABLE = 5
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16

VIRTIO_F_VERSION_1 = 1 << 32
VHOST_USER_F_PROTOCOL_FEATURES = 1 << 30
_REPLY = 0x1 | 0x4  # protocol version 1, reply flag
_HEADER = struct.Struct("<III")


@dataclass(frozen=True)
class Message:
    request: int
    payload: bytes
    fds: tuple[str, ...]  # what each received descriptor pointed to


class VhostUserStub:
    """Listens on ``path`` (QEMU connects: ``VhostUserNic(path, mac)``); serves one
    connection on a daemon thread. ``messages`` fills as QEMU talks."""

    def __init__(self, path: str, features: int = VIRTIO_F_VERSION_1) -> None:
        self.path = path
        self.features = features | VHOST_USER_F_PROTOCOL_FEATURES
        self.messages: list[Message] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="vhost-user-stub", daemon=True)
        self._thread.start()

    def requests(self, request: int) -> list[Message]:
        return [m for m in self.messages if m.request == request]

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            self._conn, _ = self._listener.accept()
            while self._handle(self._conn):
                pass

    def _handle(self, conn: socket.socket) -> bool:
        header, ancillary, _, _ = conn.recvmsg(_HEADER.size, socket.CMSG_SPACE(8 * 4))
        if len(header) < _HEADER.size:
            return False
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        request, _flags, size = _HEADER.unpack(header)
        payload = conn.recv(size, socket.MSG_WAITALL) if size else b""
        targets = []
        for fd in fds:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
            os.close(fd)
        self.messages.append(Message(request, payload, tuple(targets)))
        if request == GET_FEATURES:
            conn.sendall(_HEADER.pack(request, _REPLY, 8) + struct.pack("<Q", self.features))
        elif request == GET_PROTOCOL_FEATURES:
            conn.sendall(_HEADER.pack(request, _REPLY, 8) + struct.pack("<Q", 0))
        elif request == GET_VRING_BASE:  # vring state: index, then num (the last avail index)
            conn.sendall(_HEADER.pack(request, _REPLY, 8) + payload[:4] + bytes(4))
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the thread if it still waits in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
