"""scapy inspection: what ``to_scapy()`` costs against scapy's own ``sniff``.

The cost of scapy is paid per *dissected* frame only. All rows handle the same 1000
frames (a mix of UDP, TCP and ICMP over IPv4 and IPv6, 80-600 bytes); frames/s is
``FRAMES / median``:

- ``test_to_scapy_create``: ``batch.to_scapy()`` alone (nothing dissected yet);
- ``test_to_scapy_dissect_1pct`` / ``_all``: then 10 frames / every frame dissected;
- ``test_filter_predicate``: ``batch.filter(predicate)`` (dissects every frame);
- ``test_scapy_sniff_offline``: scapy's ``sniff(offline=...)`` on a pcap of the frames;
- ``test_scapy_sniff_socket``: scapy's ``sniff`` on a ``VnetioSocket`` holding them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import vnetio
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.sendrecv import sniff
from scapy.utils import wrpcap
from vnetio.inspect import VnetioSocket

FRAMES = 1000


def frames() -> list[bytes]:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = IP(src="192.0.2.1", dst="192.0.2.2")
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    kinds = [
        eth / v4 / UDP(sport=1000, dport=53),
        eth / v4 / TCP(sport=1000, dport=80, flags="PA"),
        eth / v4 / ICMP(),
        eth / v6 / UDP(sport=1000, dport=53),
        eth / v6 / ICMPv6EchoRequest(),
    ]
    return [bytes(kinds[i % 5] / bytes(40 + i % 520)) for i in range(FRAMES)]


@pytest.fixture(scope="module")
def batch() -> vnetio.Batch:
    return vnetio.Batch.from_frames(frames())


def per_frame(benchmark: Any) -> None:
    benchmark.extra_info["frames"] = FRAMES


def test_to_scapy_create(benchmark: Any, batch: vnetio.Batch) -> None:
    per_frame(benchmark)
    packets = benchmark(batch.to_scapy)
    assert len(packets) == FRAMES and packets.dissected == 0


def test_to_scapy_dissect_1pct(benchmark: Any, batch: vnetio.Batch) -> None:
    per_frame(benchmark)

    def some() -> Any:
        packets = batch.to_scapy()
        for i in range(0, FRAMES, 100):
            packets[i]
        return packets

    assert benchmark(some).dissected == FRAMES // 100


def test_to_scapy_dissect_all(benchmark: Any, batch: vnetio.Batch) -> None:
    per_frame(benchmark)
    got = benchmark(lambda: list(batch.to_scapy()))
    assert len(got) == FRAMES and got[1].haslayer(TCP)


def test_filter_predicate(benchmark: Any, batch: vnetio.Batch) -> None:
    per_frame(benchmark)
    kept = benchmark(batch.filter, lambda p: p.haslayer(TCP))
    assert len(kept) == FRAMES // 5


def test_scapy_sniff_offline(benchmark: Any, tmp_path: Path) -> None:
    per_frame(benchmark)
    path = tmp_path / "frames.pcap"
    wrpcap(str(path), [Ether(f) for f in frames()])
    got = benchmark(lambda: sniff(offline=str(path), store=True))
    assert len(got) == FRAMES


def test_scapy_sniff_socket(benchmark: Any) -> None:
    per_frame(benchmark)
    data = frames()
    a, b = vnetio.loopback_pair(capacity=FRAMES, kind="tap", mtu=1500)
    with a, b:
        sock = VnetioSocket(b)

        def fill() -> None:
            assert a.send_batch(data) == FRAMES

        got = benchmark.pedantic(
            lambda: sniff(opened_socket=sock, count=FRAMES, timeout=5),
            setup=fill,
            rounds=5,
        )
        assert len(got) == FRAMES
