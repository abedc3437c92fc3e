"""Checksums from Python, vnetio against scapy (pytest-benchmark rows; the paired figures in
BENCHMARKS.md come from ``benches/checksum_scapy.py``).

Two kinds of rows, not to be mixed up:

- **same work**: ``test_scapy_checksum_routine`` and ``test_vnetio_internet_checksum`` compute
  the Internet checksum of the same 1500 bytes, with scapy's own routine
  (``scapy.utils.checksum``) and with vnetio's;
- **end to end, fix a frame's checksums**: ``test_scapy_tcp_checksum`` (scapy serialising a
  copy of the packet with its IPv4 and TCP checksums left to compute: all four layers built,
  which is how scapy produces a checksum) against ``test_vnetio_fix_one_frame`` and
  ``test_vnetio_fix_batch`` (per frame: 256 frames per round), on the same frames.
"""

from __future__ import annotations

from typing import Any

import vnetio
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import raw
from scapy.utils import checksum as scapy_checksum
from vnetio import checksum

PAYLOAD = bytes(range(256)) * 5 + bytes(1500 - 20 - 20 - 1280)


def packet() -> Any:
    return (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / TCP(sport=1234, dport=80, seq=1, flags="A")
        / PAYLOAD
    )


def ip_packet() -> bytes:
    """The 1500 bytes of the frame's IP packet: the data both checksum routines sum."""
    return raw(packet())[14:]


def test_scapy_checksum_routine(benchmark: Any) -> None:
    data = ip_packet()
    assert benchmark(scapy_checksum, data) == checksum.internet_checksum(data)


def test_vnetio_internet_checksum(benchmark: Any) -> None:
    data = ip_packet()
    assert benchmark(checksum.internet_checksum, data) == scapy_checksum(data)


def test_scapy_tcp_checksum(benchmark: Any) -> None:
    pkt = packet()

    def scapy_fix() -> bytes:
        p = pkt.copy()
        del p[IP].chksum  # scapy computes both while serialising
        del p[TCP].chksum
        return raw(p)

    assert benchmark(scapy_fix) == raw(pkt)


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
