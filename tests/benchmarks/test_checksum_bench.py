"""Checksums of 1500-byte TCP frames: vnetio's engine against scapy's own TCP checksum path.

The offload issue asks for ≥ 1000× scapy in one run. Compare the rows of one
``make bench`` run: ``test_scapy_tcp_checksum`` (scapy serialising a TCP packet with its
checksum left to compute, which is how scapy produces a checksum) against
``test_vnetio_fix_batch`` per frame (256 frames per round), both on the same frames.
"""

from __future__ import annotations

from typing import Any

import vnetio
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import raw
from vnetio import checksum

PAYLOAD = bytes(range(256)) * 5 + bytes(1500 - 20 - 20 - 1280)


def packet() -> Any:
    return (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / TCP(sport=1234, dport=80, seq=1, flags="A")
        / PAYLOAD
    )


def test_scapy_tcp_checksum(benchmark: Any) -> None:
    pkt = packet()

    def scapy_checksum() -> bytes:
        p = pkt.copy()
        del p[TCP].chksum  # scapy computes it while serialising
        return raw(p)

    assert benchmark(scapy_checksum) == raw(pkt)


def test_vnetio_fix_one_frame(benchmark: Any) -> None:
    frame = bytearray(raw(packet()))
    want = bytes(frame)
    benchmark(checksum.fix, frame)
    assert bytes(frame) == want


def test_vnetio_fix_batch(benchmark: Any) -> None:
    batch = vnetio.Batch.from_frames([raw(packet())] * 256)
    fixed = benchmark(batch.fix_checksums)
    assert fixed.verify_checksums() == [True] * 256


def test_vnetio_verify_batch(benchmark: Any) -> None:
    batch = vnetio.Batch.from_frames([raw(packet())] * 256)
    assert benchmark(batch.verify_checksums) == [True] * 256
