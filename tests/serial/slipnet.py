"""Helpers for the SLIP tests: UDP packets' payloads (the packets: tests/packets.py), and
the exact set of packets a corrupted line must lose."""

from __future__ import annotations

from tests.packets import udp4

# udp4: test_slip_tun.py imports it from here.
__all__ = ["SPECIAL", "hit", "spans", "special_heavy", "udp4", "udp_payload"]


def udp_payload(packet: bytes) -> bytes:
    return packet[28:]


#: Payload bytes chosen to need escaping often (END, ESC, and the bytes that follow ESC).
SPECIAL = bytes([0xC0, 0xDB, 0xDC, 0xDD])


def special_heavy(n: int, seed: int) -> bytes:
    """``n`` bytes, about half of them SLIP special bytes, deterministic per seed."""
    out = bytearray()
    x = seed * 2654435761 & 0xFFFFFFFF
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(SPECIAL[x % 4] if (x >> 8) & 1 else (x >> 16) & 0xFF)
    return bytes(out)


def spans(stream: bytes, count: int) -> list[tuple[int, int]]:
    """Where each of ``count`` packets sits in a stream of vnetio's encodings (END packet
    END, back to back): the [start, end] offsets of its two ENDs, inclusive."""
    out, start = [], 0
    for _ in range(count):
        end = stream.index(0xC0, start + 1)
        out.append((start, end))
        start = end + 1
    assert start == len(stream), "the stream holds more than the packets"
    return out


def hit(spans_: list[tuple[int, int]], changed: list[int]) -> set[int]:
    """The packets a changed byte falls in (its own END bytes included)."""
    out = set()
    j = 0
    for i, (a, b) in enumerate(spans_):
        while j < len(changed) and changed[j] < a:
            j += 1
        if j < len(changed) and changed[j] <= b:
            out.add(i)
    return out
