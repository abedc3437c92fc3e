"""vnetio's SLIP encoder and decoder (Rust) against sliplib, an independent implementation.

Generated packets, including ones made mostly of END/ESC/ESC_END/ESC_ESC bytes, must encode
to the same bytes as sliplib's, decode from sliplib's encoding, and be decoded by sliplib
from ours; arbitrary byte streams must give the same clean frames and the same number of
bad-escape frames in both. No privileges, no devices.
"""

from __future__ import annotations

import itertools

import sliplib
import vnetio
from hypothesis import given, settings
from hypothesis import strategies as st

END, ESC, ESC_END, ESC_ESC = b"\xc0", b"\xdb", b"\xdc", b"\xdd"

#: Mostly the four special bytes, with a few ordinary ones between them.
special_heavy = st.lists(
    st.sampled_from([0xC0, 0xDB, 0xDC, 0xDD, 0x00, 0x41, 0xFF]), max_size=400
).map(bytes)
payloads = st.one_of(st.binary(max_size=1500), special_heavy)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, repeats allowed)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def sliplib_frames(stream_pieces: list[bytes]) -> tuple[list[bytes], int]:
    """What sliplib's Driver makes of a byte stream: clean messages, and how many packets
    it refused with ProtocolError."""
    driver = sliplib.Driver()
    for piece in stream_pieces:
        if piece:  # an empty piece would tell the driver the stream ended
            driver.receive(piece)
    frames, errors = [], 0
    while True:
        try:
            message = driver.get(block=False)
        except sliplib.ProtocolError:
            errors += 1
            continue
        if message is None:
            return frames, errors
        frames.append(message)


@given(payloads)
def test_encoding_is_sliplibs_between_two_ends(packet: bytes) -> None:
    # vnetio sends a leading END too (RFC 1055's advice, and what Linux's slip driver does).
    assert vnetio.slip_encode(packet) == END + sliplib.encode(packet) + END


@given(st.lists(payloads, max_size=20), st.lists(st.integers(min_value=0), max_size=12))
def test_vnetio_decodes_sliplib(packets: list[bytes], cuts: list[int]) -> None:
    driver = sliplib.Driver()
    stream = b"".join(driver.send(p) for p in packets)
    decoder = vnetio.SlipDecoder(mtu=4096)
    frames = [f for piece in pieces(stream, cuts) for f in decoder.feed(piece)]
    assert frames == [p for p in packets if p]  # an empty packet is no frame in either
    stats = decoder.stats()
    assert (stats["bad_escape"], stats["over_mtu"], decoder.pending) == (0, 0, 0)


@given(st.lists(payloads, max_size=20), st.lists(st.integers(min_value=0), max_size=12))
def test_sliplib_decodes_vnetio(packets: list[bytes], cuts: list[int]) -> None:
    stream = vnetio.slip_encode_batch(packets)
    assert stream == b"".join(vnetio.slip_encode(p) for p in packets)
    frames, errors = sliplib_frames(pieces(stream, cuts))
    assert (frames, errors) == ([p for p in packets if p], 0)


noise = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from([0xC0, 0xDB, 0xDC, 0xDD, 0x01]), max_size=200).map(bytes),
)


@settings(max_examples=300)
@given(noise, st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_streams_agree_with_sliplib(stream: bytes, cuts: list[int]) -> None:
    """Clean frames are the same; frames with a bad escape are dropped by vnetio (counted)
    where sliplib raises ProtocolError; what is not yet terminated waits in both."""
    decoder = vnetio.SlipDecoder(mtu=1 << 16)
    ours = [f for piece in pieces(stream, cuts) for f in decoder.feed(piece)]
    theirs, errors = sliplib_frames([stream])
    assert ours == theirs
    assert decoder.stats()["bad_escape"] == errors


def test_frames_over_the_mtu_are_dropped_and_counted() -> None:
    decoder = vnetio.SlipDecoder(mtu=8)
    line = vnetio.slip_encode(b"123456789") + vnetio.slip_encode(b"12345678")
    assert decoder.feed(line) == [b"12345678"]
    assert decoder.stats() == {
        "frames": 1,
        "bytes": 8,
        "empty": 2,  # before the first leading END, and END END between the two
        "bad_escape": 0,
        "over_mtu": 1,
    }


def test_encode_batch_takes_a_batch() -> None:
    batch = vnetio.Batch.from_frames([b"a\xc0", b"\xdb"])
    assert vnetio.slip_encode_batch(batch) == b"\xc0a\xdb\xdc\xc0\xc0\xdb\xdd\xc0"
