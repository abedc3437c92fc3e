"""Host ends of TCP streams to and from a guest, run inside a network namespace.

Each end is a short Python process started with ``ip netns exec NS python -c …`` (the test
process itself stays in its own namespace); it reports what it moved as JSON, with the
sha256 of the bytes, so a test compares digests at both ends::

    rx = StreamReceiver(ns, "192.0.2.1", 5001)      # listening when this returns
    guest.run("nc 192.0.2.1 5001 < /tmp/blob")
    assert rx.result().sha256 == expected

    send_stream(ns, "192.0.2.2", 5002, blob_path)    # retries until the guest listens
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# One script for both ends (argv: mode, address, port, then file or timeout).
_PEER = r"""
import hashlib, json, socket, sys, time
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
h, n = hashlib.sha256(), 0
if mode == "recv":
    ls = socket.socket(family)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1)
    ls.settimeout(float(sys.argv[4]))
    print("LISTENING", flush=True)
    conn, _ = ls.accept()
    conn.settimeout(float(sys.argv[4]))
    start = time.monotonic()
    while chunk := conn.recv(1 << 20):
        h.update(chunk)
        n += len(chunk)
else:
    data = open(sys.argv[4], "rb").read()
    deadline = time.monotonic() + float(sys.argv[5])
    while True:
        conn = socket.socket(family)
        try:
            conn.connect((addr, port))
            break
        except (ConnectionRefusedError, OSError):
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.settimeout(float(sys.argv[5]))
    start = time.monotonic()
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(65536):  # the guest's nc closes once it has everything
        pass
    h.update(data)
    n = len(data)
seconds = time.monotonic() - start
conn.close()
print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "seconds": seconds}), flush=True)
"""


@dataclass(frozen=True)
class StreamResult:
    bytes: int
    sha256: str
    seconds: float

    @property
    def gbit_per_s(self) -> float:
        return self.bytes * 8 / self.seconds / 1e9 if self.seconds else 0.0


def _parse(output: str, what: str) -> StreamResult:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return StreamResult(**json.loads(line))
    raise RuntimeError(f"{what}: no result in {output!r}")


class StreamReceiver:
    """Accepts one TCP connection on ``address``:``port`` inside ``netns`` and hashes all it
    receives until EOF. Listening once the constructor returns."""

    def __init__(self, netns: str, address: str, port: int, timeout: float = 60.0) -> None:
        self.timeout = timeout
        argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _PEER, "recv", address]
        self._proc = subprocess.Popen(
            [*argv, str(port), str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline()
        if ready.strip() != "LISTENING":
            self.close()
            raise RuntimeError(f"host receiver did not start: {self._proc.stderr.read()}")  # type: ignore[union-attr]

    def result(self) -> StreamResult:
        try:
            out, err = self._proc.communicate(timeout=self.timeout + 5)
        finally:
            self.close()
        if self._proc.returncode != 0:
            raise RuntimeError(f"host receiver failed ({self._proc.returncode}): {err}")
        return _parse(out, "host receiver")

    def close(self) -> None:
        """Kill the receiver by PID if it is still running."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def send_stream(
    netns: str, address: str, port: int, path: Path, timeout: float = 60.0
) -> StreamResult:
    """Connect to ``address``:``port`` from inside ``netns`` (retrying until something
    listens), send the file, half-close, wait for the peer to close."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _PEER, "send", address]
    proc = subprocess.run(
        [*argv, str(port), str(path), str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"host sender failed ({proc.returncode}): {proc.stderr}")
    return _parse(proc.stdout, "host sender")
