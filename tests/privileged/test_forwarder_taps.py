"""vnetio.Forwarder between two TAPs in two namespaces: one Ethernet segment, through Rust."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time

import pytest
import vnetio

from tests.netutil import Netns, create_netns, delete_netns, random_suffix

pytestmark = pytest.mark.privileged

SERVER = """
import hashlib, socket, sys
s = socket.create_server(("10.77.0.2", 5201))
print("listening", flush=True)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while data := c.recv(1 << 16):
    h.update(data); n += len(data)
print(n, h.hexdigest(), flush=True)
"""

CLIENT = """
import random, socket, sys
data = random.Random(7).randbytes(16 << 20)
with socket.create_connection(("10.77.0.2", 5201), timeout=30) as c:
    c.sendall(data)
"""


def test_two_taps_joined_by_a_forwarder_carry_ping_and_tcp(netns: Netns) -> None:
    other = create_netns()
    suffix = random_suffix(3)
    try:
        with (
            vnetio.Tap(f"vnfa{suffix}", netns=netns.name, offload=True, rx_mode="superframes") as a,
            vnetio.Tap(f"vnfb{suffix}", netns=other.name, offload=True, rx_mode="superframes") as b,
        ):
            a.add_address("10.77.0.1/24")
            b.add_address("10.77.0.2/24")
            a.up()
            b.up()
            with vnetio.Forwarder(a, b) as fwd:
                netns.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2")
                with subprocess.Popen(
                    ["ip", "netns", "exec", other.name, sys.executable, "-c", SERVER],
                    stdout=subprocess.PIPE,
                    text=True,
                ) as server:
                    try:
                        assert server.stdout is not None
                        assert server.stdout.readline().strip() == "listening"
                        netns.exec(sys.executable, "-c", CLIENT, timeout=60)
                        size, digest = server.stdout.readline().split()
                        server.wait(timeout=10)
                    finally:
                        if server.poll() is None:
                            server.kill()
                expected = hashlib.sha256(random.Random(7).randbytes(16 << 20)).hexdigest()
                assert (int(size), digest) == (16 << 20, expected)
                stats = fwd.stats()
                ab, ba = stats["a_to_b"], stats["b_to_a"]
                # The sender's TSO super-frames crossed whole (both TAPs take metadata).
                assert ab["superframes"] > 0, stats
                assert ab["bytes"] > 16 << 20
                assert ab["dropped"] == 0 and ba["dropped"] == 0, stats
                assert ba["frames"] > 0  # ACKs and ping replies came back
                # Closing one TAP stops the forwarder and names it.
                b.close()
                started = time.monotonic()
                assert fwd.wait(2.0)
                assert time.monotonic() - started < 0.5
                assert fwd.state == "stopped" and fwd.reason == f"{b.name} was closed"
                assert not a.closed
    finally:
        delete_netns(other.name)
