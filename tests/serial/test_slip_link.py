"""SlipLink as an in-process adapter (no TUN, no privileges): sliplib speaking SLIP over
pyserial on the far end of a SerialPair as the "embedded device"; the adapter features the
link gets from being an Adapter (filters, asyncio, counters); and line noise injected by
a SerialPair's fault mode, where exactly the packets the noise touched must be lost and
every packet passed on must verify.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest
import serial  # pyserial
import sliplib
import vnetio

from tests.packets import udp4
from tests.serial.slipnet import hit, spans, special_heavy
from tests.waiting import settle

HOST, DEVICE = "192.0.2.1", "192.0.2.2"


@pytest.fixture
def pair() -> Iterator[vnetio.SerialPair]:
    with vnetio.SerialPair(None) as p:
        yield p


def recv_n(link: vnetio.SlipLink, n: int, timeout: float = 10.0) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += link.recv_batch(256, timeout=0.1).to_list()
    return out


def packets(count: int, max_size: int = 1006) -> list[bytes]:
    """UDP packets from DEVICE to HOST, sizes spread up to ``max_size``, payloads heavy in
    SLIP special bytes."""
    sizes = [28 + (i * 97) % (max_size - 27) for i in range(count)]
    return [
        udp4(DEVICE, HOST, 4000 + i, 9, special_heavy(size - 28, seed=i), ident=i)
        for i, size in enumerate(sizes)
    ]


def test_sliplib_device_and_link_exchange_packets(pair: vnetio.SerialPair) -> None:
    sent = packets(60)
    with (
        vnetio.SlipLink(pair.paths[1]) as link,
        serial.Serial(pair.paths[0], 115200, timeout=5) as port,
    ):
        # chunk_size=1: pyserial's read(n) waits for all n bytes, SlipStream would stall.
        device = sliplib.SlipStream(port, chunk_size=1)
        assert link.kind == "tun" and link.mtu == 1006 and link.tun is None
        for p in sent:
            device.send_msg(p)
        assert recv_n(link, len(sent)) == sent
        # And back: one batch from the link, message by message at the device.
        assert link.send_batch(sent) == len(sent)
        assert [device.recv_msg() for _ in sent] == sent
        # The link's threads count a batch just after handing it on.
        s = settle(link.link_stats, lambda s: (s["packets_in"], s["packets_out"]) == (60, 60))
        st = link.stats()
    assert (s["packets_in"], s["packets_out"]) == (60, 60)
    assert s["bad_escape"] + s["over_mtu"] + s["noise"] + s["bad_checksum"] == 0
    assert (st.rx_frames, st.tx_frames) == (60, 60)


def test_an_echoing_device(pair: vnetio.SerialPair) -> None:
    """The device answers every packet with its payload reversed (a tiny "firmware")."""
    with (
        vnetio.SlipLink(pair.paths[1]) as link,
        serial.Serial(pair.paths[0], 115200, timeout=5) as port,
    ):
        device = sliplib.SlipStream(port, chunk_size=1)
        count = 20

        def firmware() -> None:
            for _ in range(count):
                msg = device.recv_msg()
                device.send_msg(udp4(DEVICE, HOST, 9, 4000, msg[28:][::-1]))

        t = threading.Thread(target=firmware, daemon=True)
        t.start()
        queries = [udp4(HOST, DEVICE, 4000, 9, os.urandom(50 + i)) for i in range(count)]
        link.send_batch(queries)
        answers = recv_n(link, count)
        t.join(5)
    assert [a[28:] for a in answers] == [q[28:][::-1] for q in queries]


def test_the_link_is_an_adapter(pair: vnetio.SerialPair) -> None:
    """Filters, asyncio and counters come with the Adapter base class."""
    with (
        vnetio.SlipLink(pair.paths[1]) as link,
        vnetio.SlipLink(os.open(pair.paths[0], os.O_RDWR | os.O_NOCTTY)) as far,
    ):
        assert far.line.startswith("fd:")
        assert link.set_filter("udp dst port 9") == "userspace"
        far.send_batch([udp4(DEVICE, HOST, 1, 9, b"keep"), udp4(DEVICE, HOST, 1, 10, b"drop")])
        got = asyncio.run(link.recv_batch_async(timeout=5)).to_list()
        assert [p[28:] for p in got] == [b"keep"]
        # The second packet may be judged a moment after the first was delivered.
        assert settle(lambda: link.stats().rx_filtered, lambda n: n == 1) == 1
        # Too big for the link's MTU: refused before anything is sent.
        with pytest.raises(ValueError, match="MTU"):
            far.send(udp4(DEVICE, HOST, 1, 9, bytes(1006)))
    with pytest.raises(vnetio.AdapterClosedError):
        link.recv(timeout=0)


def test_bad_lines_are_refused(pair: vnetio.SerialPair) -> None:
    with pytest.raises(TypeError, match="paths"):
        vnetio.SlipLink(pair)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="terminal"):
        vnetio.SlipLink("/dev/null")
    with pytest.raises(FileNotFoundError):
        vnetio.SlipLink("/dev/pts/no-such-pty")
    with pytest.raises(ValueError, match="mtu"):
        vnetio.SlipLink(pair.paths[0], mtu=20)


def test_line_noise_loses_exactly_the_packets_it_touched() -> None:
    """Packets cross a SerialPair that corrupts bytes (seeded); the test reads the damaged
    line, so it knows which bytes changed, and replays it to a SlipLink through a clean
    pair. The pair's count must equal the bytes that changed; the link must pass on every
    packet no changed byte touched, unchanged, and no other (one changed byte always breaks
    a checksum or the framing)."""
    sent = packets(300, max_size=400)
    stream = vnetio.slip_encode_batch(sent)
    with (
        vnetio.SerialPair(None, faults={"corrupt": 0.0005, "seed": 2}) as noisy,
        serial.Serial(noisy.paths[0], timeout=5, write_timeout=30) as a,
        serial.Serial(noisy.paths[1], timeout=5) as b,
    ):
        writer = threading.Thread(target=a.write, args=(stream,), daemon=True)
        writer.start()
        damaged = bytearray()
        while len(damaged) < len(stream):
            damaged += b.read(max(1, b.in_waiting))
        writer.join(5)
        corrupted = noisy.stats()["a_to_b"]["corrupted"]
    changed = [i for i, (x, y) in enumerate(zip(stream, damaged, strict=True)) if x != y]
    assert len(changed) == corrupted > 10
    lost = hit(spans(stream, len(sent)), changed)
    assert 10 < len(lost) < len(sent)

    with (
        vnetio.SerialPair(None) as clean,
        vnetio.SlipLink(clean.paths[1]) as link,
        serial.Serial(clean.paths[0], timeout=5) as line,
    ):
        line.write(bytes(damaged))
        received = recv_n(link, len(sent) - len(lost))
        time.sleep(0.3)  # anything else the link might (wrongly) pass on
        received += link.recv_batch(256, timeout=0).to_list()
        # (its reader thread counts a batch just after handing it on)
        s = settle(link.link_stats, lambda s: s["packets_in"] >= len(received))
    assert received == [p for i, p in enumerate(sent) if i not in lost]
    for p in received:
        assert vnetio.checksum.verify(p, "tun") == (True, True)
    errors = s["bad_escape"] + s["over_mtu"] + s["noise"] + s["bad_checksum"]
    assert errors >= 1
    assert s["packets_in"] == len(received)
