"""SlipLink bridged to vnetio Tuns in private namespaces: the kernel's own IP stack at both
ends of a SerialPair — ping and TCP streams both ways, byte-exact — and, under line noise
injected by a SerialPair, the kernel counts no bad checksum and receives exactly the
datagrams the noise did not touch. Privileged (namespaces, TUN).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial  # pyserial
import vnetio

from tests.netutil import Netns, create_netns, delete_netns
from tests.serial.slipnet import hit, spans, udp4
from tests.vm.hostnet import StreamReceiver, send_stream
from tests.waiting import settle

pytestmark = pytest.mark.privileged

A, B = "192.0.2.1", "192.0.2.2"


@pytest.fixture
def other_netns() -> Iterator[Netns]:
    ns = create_netns()
    try:
        yield ns
    finally:
        delete_netns(ns.name)


def snmp(ns: Netns, proto: str) -> dict[str, int]:
    rows = [
        line.split()[1:]
        for line in ns.exec("cat", "/proc/net/snmp").splitlines()
        if line.startswith(f"{proto}:")
    ]
    return {k: int(v) for k, v in zip(rows[0], rows[1], strict=True)}


def tun_with(ns: Netns, address: str) -> vnetio.Tun:
    tun = vnetio.Tun("vnsl%d", netns=ns.name, mtu=1006)
    tun.add_address(f"{address}/24")
    tun.up()
    return tun


def test_ping_and_tcp_both_ways_over_a_serial_line(
    netns: Netns, other_netns: Netns, tmp_path: Path
) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(1 << 20))
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    with (
        vnetio.SerialPair(None) as pair,
        tun_with(netns, A) as tun_a,
        tun_with(other_netns, B) as tun_b,
        vnetio.SlipLink(pair.paths[0], tun_a) as link_a,
        vnetio.SlipLink(pair.paths[1], tun_b) as link_b,
    ):
        assert link_a.tun == tun_a.name
        netns.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", B)
        other_netns.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "900", A)
        for src, dst, addr, port in ((netns, other_netns, B, 5001), (other_netns, netns, A, 5002)):
            rx = StreamReceiver(dst.name, addr, port, timeout=60)
            try:
                sent = send_stream(src.name, addr, port, blob, timeout=60)
                got = rx.result()
            finally:
                rx.close()
            assert sent.sha256 == got.sha256 == digest
            assert got.bytes == blob.stat().st_size
        sa, sb = link_a.link_stats(), link_b.link_stats()
        # The bridged link is not an adapter of its own: packets go to the Tun.
        with pytest.raises(ValueError, match="bridges the line"):
            link_a.recv(timeout=0)
    for s in (sa, sb):
        assert s["bad_escape"] + s["over_mtu"] + s["noise"] + s["bad_checksum"] == 0
        assert s["packets_in"] > 700 and s["packets_out"] > 700
    for ns in (netns, other_netns):
        assert snmp(ns, "Tcp")["InCsumErrors"] == 0
    # The Tuns were left open by the links and closed by their own `with`.
    assert tun_a.closed and tun_b.closed


_UDP_SINK = r"""
import hashlib, json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: a slow sink drops nothing
s.bind((sys.argv[1], int(sys.argv[2])))
expected, idle = int(sys.argv[3]), float(sys.argv[4])
print("READY", flush=True)
got = []
try:
    while True:
        # until idle for a while; once the expected number is in, a short wait for extras
        s.settimeout(idle if len(got) < expected else 0.5)
        data = s.recv(2048)
        got.append([int.from_bytes(data[:4], "big"), hashlib.sha256(data).hexdigest()])
except socket.timeout:
    pass
print(json.dumps(got), flush=True)
"""


def test_line_noise_never_reaches_the_kernel_as_a_bad_packet(netns: Netns) -> None:
    """The damaged line comes from a SerialPair with injected corruption (the test reads
    it, so it knows which bytes changed), then is replayed into a SlipLink bridged to a Tun.
    The kernel must count no checksum error and receive exactly the intact datagrams."""
    count = 300
    sent = [
        udp4(B, A, 4000, 9999, i.to_bytes(4, "big") + os.urandom(40 + i % 300), ident=i)
        for i in range(count)
    ]
    stream = vnetio.slip_encode_batch(sent)
    with (
        vnetio.SerialPair(None, faults={"corrupt": 0.0005, "seed": 11}) as noisy,
        serial.Serial(noisy.paths[0], timeout=5, write_timeout=30) as a,
        serial.Serial(noisy.paths[1], timeout=5) as b,
    ):
        writer = threading.Thread(target=a.write, args=(stream,), daemon=True)
        writer.start()
        damaged = bytearray()
        while len(damaged) < len(stream):
            damaged += b.read(max(1, b.in_waiting))
        # pyserial's write() polls the port once more after its last chunk: closing the
        # port under it (a loaded machine) fails that thread.
        writer.join(5)
        assert noisy.stats()["a_to_b"]["corrupted"] > 10
    changed = [i for i, (x, y) in enumerate(zip(stream, damaged, strict=True)) if x != y]
    lost = hit(spans(stream, count), changed)
    assert len(lost) > 10

    with tun_with(netns, A) as tun, vnetio.SerialPair(None) as clean:
        before_udp, before_ip = snmp(netns, "Udp"), snmp(netns, "Ip")
        sink = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, sys.executable, "-c", _UDP_SINK, A, "9999",
             str(count - len(lost)), "15"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert sink.stdout is not None and sink.stdout.readline().strip() == "READY"
            with (
                vnetio.SlipLink(clean.paths[1], tun) as link,
                serial.Serial(clean.paths[0], timeout=5) as line,
            ):
                line.write(bytes(damaged))
                out, _ = sink.communicate(timeout=60)
                # (the link counts a batch just after the Tun took it)
                s = settle(link.link_stats, lambda s: s["packets_in"] >= count - len(lost))
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait()
        after_udp, after_ip = snmp(netns, "Udp"), snmp(netns, "Ip")
    received = [tuple(x) for x in json.loads(out.strip().splitlines()[-1])]
    # the sink's own socket never overflowed: a missing datagram is the link's doing
    assert after_udp["RcvbufErrors"] == before_udp["RcvbufErrors"]
    expected = [
        (i, hashlib.sha256(p[28:]).hexdigest()) for i, p in enumerate(sent) if i not in lost
    ]
    assert received == expected
    assert after_udp["InCsumErrors"] == before_udp["InCsumErrors"]
    assert after_ip["InHdrErrors"] == before_ip["InHdrErrors"]
    assert s["packets_in"] == len(expected)
    assert s["bad_escape"] + s["over_mtu"] + s["noise"] + s["bad_checksum"] >= 1
