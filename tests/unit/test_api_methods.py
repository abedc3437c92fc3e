"""The adapter and batch methods that delegate to vnetio.aio and vnetio.inspect."""

from __future__ import annotations

import asyncio

import vnetio
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether


def test_async_methods_and_async_with_on_adapters() -> None:
    async def main() -> list[int]:
        a, b = vnetio.loopback_pair()
        async with a, b:
            frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / (b"x" * 50))
            assert await a.send_batch_async([frame] * 3) == 3
            got = await b.recv_batch_async(max_frames=10, timeout=1.0)
            sizes = list(got.lengths)
            await a.send_batch_async([frame])
            async for batch in b.batches(max_frames=4):
                sizes.append(len(batch))
                break
        assert a.closed and b.closed
        return sizes

    assert asyncio.run(main()) == [64, 64, 64, 1]


def test_send_packets_and_to_scapy() -> None:
    a, b = vnetio.loopback_pair()
    pkts = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / UDP(sport=1000 + i, dport=53)
        for i in range(3)
    ]
    assert a.send_packets(pkts) == 3
    frames = b.recv_batch(timeout=1.0).to_scapy()
    assert [p[UDP].sport for p in frames] == [1000, 1001, 1002]
    tun_a, tun_b = vnetio.loopback_pair(kind="tun")
    tun_a.send(bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=7, dport=9)))
    (packet,) = tun_b.recv_batch(timeout=1.0).to_scapy(kind="tun")
    assert packet[UDP].dport == 9


def test_submodules_are_reachable() -> None:
    assert vnetio.aio.recv_batch_async is not None
    assert vnetio.checksum.verify is not None
    assert vnetio.inspect.to_scapy is not None
