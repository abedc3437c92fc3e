"""vnetio.loopback_pair: the in-memory adapter pair (no privileges needed)."""

from __future__ import annotations

import gc
import select
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import vnetio
from vnetio import AdapterClosedError, Batch, Loopback, QueueFullError, VnetError

from tests.adapters import Background, blocked_then_closed
from tests.packets import frame_seq, make_frame

STAT_NAMES = {
    "rx_frames", "rx_bytes", "tx_frames", "tx_bytes",
    "rx_errors", "tx_errors", "rx_dropped", "tx_dropped",
    "tx_coalesced", "coalesce_fallbacks", "rx_filtered",
}  # fmt: skip


@pytest.fixture
def pair() -> Iterator[tuple[Loopback, Loopback]]:
    a, b = vnetio.loopback_pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def frames(count: int, start: int = 0) -> list[bytes]:
    return [make_frame(start + i, 60 + (start + i) * 37 % 1455) for i in range(count)]


def recv_all(end: Loopback, count: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(end.recv_batch(timeout=0.5).to_list())
    return got


def test_properties() -> None:
    a, b = vnetio.loopback_pair(16, kind="tun", mtu=9000, overflow="error")
    with a, b:
        for end in (a, b):
            assert end.kind == "tun"
            assert end.mtu == 9000
            assert end.capacity == 16
            assert end.pending == 0
            assert not end.closed
            assert isinstance(end.name, str)
            assert isinstance(end, vnetio._core.Adapter)
    assert a.closed
    assert b.closed


def test_defaults() -> None:
    a, b = vnetio.loopback_pair()
    with a, b:
        assert (a.kind, a.mtu, a.capacity) == ("tap", 1500, 1024)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0},
        {"capacity": -1},
        {"mtu": 10},
        {"mtu": 70_000},
        {"kind": "eth"},
        {"overflow": "block"},
    ],
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, OverflowError)):
        vnetio.loopback_pair(**kwargs)  # type: ignore[arg-type]


def test_send_recv_both_directions(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    f1, f2 = make_frame(1, 100), make_frame(2, 200)
    a.send(f1)
    b.send(f2)
    assert b.pending == 1
    assert a.pending == 1
    got1, got2 = b.recv(timeout=1), a.recv(timeout=1)
    assert type(got1) is bytes
    assert (got1, got2) == (f1, f2)
    assert (a.pending, b.pending) == (0, 0)


@pytest.mark.parametrize("convert", [bytes, bytearray, memoryview])
def test_send_accepts_buffers(pair: tuple[Loopback, Loopback], convert: type) -> None:
    a, b = pair
    frame = make_frame(7, 77)
    a.send(convert(frame))
    assert b.recv(timeout=1) == frame


@pytest.mark.parametrize("timeout", [0, 0.05, 0.2])
def test_recv_timeout_raises_timeout_error(pair: tuple[Loopback, Loopback], timeout: float) -> None:
    _, b = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        b.recv(timeout=timeout)
    elapsed = time.monotonic() - start
    assert elapsed >= timeout * 0.9
    assert elapsed < timeout + 2


def test_recv_batch_timeout_zero_returns_empty_batch(pair: tuple[Loopback, Loopback]) -> None:
    _, b = pair
    batch = b.recv_batch(timeout=0)
    assert isinstance(batch, Batch)
    assert len(batch) == 0
    assert batch.to_list() == []


def test_recv_batch_timeout_returns_empty_batch(pair: tuple[Loopback, Loopback]) -> None:
    _, b = pair
    start = time.monotonic()
    batch = b.recv_batch(timeout=0.1)
    assert len(batch) == 0
    assert time.monotonic() - start >= 0.09


def test_recv_batch_takes_what_is_queued_without_waiting_for_max(
    pair: tuple[Loopback, Loopback],
) -> None:
    a, b = pair
    sent = frames(5)
    for f in sent:
        a.send(f)
    job = Background(lambda: b.recv_batch(max_frames=256, timeout=None).to_list())
    assert job.join(5), "recv_batch waited for more frames than were queued"
    assert job.value == sent


def test_recv_batch_respects_max_frames(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    sent = frames(10)
    assert a.send_batch(sent) == 10
    first = b.recv_batch(max_frames=3, timeout=0)
    assert first.to_list() == sent[:3]
    assert b.pending == 7
    assert b.recv_batch(max_frames=100, timeout=0).to_list() == sent[3:]


@pytest.mark.parametrize("max_frames", [0, -1])
def test_recv_batch_rejects_bad_max_frames(
    pair: tuple[Loopback, Loopback], max_frames: int
) -> None:
    with pytest.raises((ValueError, OverflowError)):
        pair[1].recv_batch(max_frames=max_frames, timeout=0)


def test_order_preserved(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    sent = frames(500)
    for f in sent[:250]:
        a.send(f)
    a.send_batch(sent[250:])
    assert recv_all(b, 500) == sent


def test_send_batch_with_batch_and_list(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    first, second = frames(20), frames(30, start=20)
    assert a.send_batch(Batch.from_frames(first)) == 20
    assert a.send_batch([bytearray(f) for f in second]) == 30
    assert a.send_batch([]) == 0
    assert recv_all(b, 50) == first + second


def test_received_batch_can_be_forwarded(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    sent = frames(8)
    a.send_batch(sent)
    batch = b.recv_batch(timeout=1)
    assert b.send_batch(batch) == len(sent)
    assert a.recv_batch(timeout=1).to_list() == sent


def test_received_timestamps(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    before = time.time_ns()
    a.send_batch(frames(3))
    batch = b.recv_batch(timeout=1)
    after = time.time_ns()
    assert len(batch.timestamps_ns) == 3
    assert all(before <= ts <= after for ts in batch.timestamps_ns)


def test_overflow_drop_counts_and_never_raises() -> None:
    a, b = vnetio.loopback_pair(4, overflow="drop")
    with a, b:
        sent = frames(10)
        for f in sent[:5]:
            a.send(f)
        assert a.send_batch(sent[5:]) == 5
        assert b.pending == 4
        assert b.stats().rx_dropped == 6
        assert a.stats().tx_frames == 10
        # Drop-tail: the first frames that fit are the ones kept.
        assert b.recv_batch(timeout=0).to_list() == sent[:4]
        assert b.stats().rx_frames == 4
        # Room again: sending works and the drop counter stays where it was.
        a.send(sent[0])
        assert b.recv(timeout=1) == sent[0]
        assert b.stats().rx_dropped == 6


def test_overflow_error_raises_queue_full_with_sent() -> None:
    a, b = vnetio.loopback_pair(4, overflow="error")
    with a, b:
        sent = frames(10)
        with pytest.raises(QueueFullError) as info:
            a.send_batch(sent)
        assert info.value.sent == 4
        assert isinstance(info.value, VnetError)
        assert isinstance(info.value, BlockingIOError)
        assert b.pending == 4
        with pytest.raises(QueueFullError) as info:
            a.send(sent[4])
        assert info.value.sent == 0
        assert b.stats().rx_dropped == 0
        assert b.recv_batch(timeout=0).to_list() == sent[:4]
        assert a.send_batch(sent[4:8]) == 4
        assert b.recv_batch(timeout=0).to_list() == sent[4:8]


def test_overflow_error_producer_resumes_from_sent() -> None:
    """A producer that resumes from `.sent` delivers every frame exactly once, in order."""
    a, b = vnetio.loopback_pair(16, overflow="error")
    sent = frames(3000)

    def produce() -> int:
        i = fulls = 0
        while i < len(sent):
            try:
                i += a.send_batch(sent[i : i + 40])
            except QueueFullError as exc:
                i += exc.sent
                fulls += 1
                time.sleep(0.0005)
        return fulls

    with a, b:
        job = Background(produce)
        got = recv_all(b, len(sent), timeout=30)
        assert job.join(30)
        assert job.error is None, job.error
        assert got == sent


@pytest.mark.parametrize(("kind", "mtu"), [("tap", 1500), ("tap", 576), ("tun", 1500)])
def test_frame_larger_than_mtu_rejected_before_anything_is_queued(kind: str, mtu: int) -> None:
    a, b = vnetio.loopback_pair(kind=kind, mtu=mtu)  # type: ignore[arg-type]
    with a, b:
        header = 14 if kind == "tap" else 0
        good = bytes([0x45]) + bytes(mtu + header - 1)  # 0x45: IPv4 for tun, any for tap
        too_big = good + b"\0" * 100
        before = a.stats().as_dict()
        with pytest.raises(ValueError, match="larger"):
            a.send(too_big)
        with pytest.raises(ValueError, match="larger"):
            a.send_batch([good, good, too_big])
        with pytest.raises(ValueError, match="larger"):
            a.send_batch(Batch.from_frames([good, too_big]))
        assert b.pending == 0
        assert a.stats().as_dict() == before
        a.send(good)  # exactly MTU (+ Ethernet header on TAP) fits
        assert b.recv(timeout=1) == good


def test_non_buffer_frames_are_type_errors_and_nothing_is_queued(
    pair: tuple[Loopback, Loopback],
) -> None:
    """README: a non-buffer frame is a TypeError (naming its index in a batch) and nothing
    of the batch was sent; a frame over 4 GiB (no arena holds it) is a ValueError so."""
    a, b = pair
    good = make_frame(0, 60)
    before = a.stats().as_dict()
    for bad in (42, "a str is not a frame", None, [good]):
        with pytest.raises(TypeError, match="expected a bytes-like object"):
            a.send(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"frame 2\b.*got int"):
        a.send_batch([good, good, 42, good])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"frame 1\b.*got object"):
        a.send_batch(f for f in (memoryview(good), object()))  # a generator, read to its end
    with pytest.raises(TypeError, match=r"frame 1\b.*got int"):
        Batch.from_frames([good, 7])  # type: ignore[list-item]
    huge = bytes(2**32)  # calloc'd: costs no memory unless copied
    with pytest.raises(ValueError, match=r"frame 1 is 4294967296 bytes"):
        a.send_batch([good, huge])
    with pytest.raises(ValueError, match=r"frame 0 is 4294967296 bytes"):
        Batch.from_frames([huge])
    assert b.pending == 0
    assert a.stats().as_dict() == before
    assert a.send_batch([good, good]) == 2  # the end still works
    assert recv_all(b, 2) == [good, good]


def test_untagged_frame_one_byte_over_mtu_plus_14_is_rejected() -> None:
    """The brief's limit: an Ethernet frame carries at most MTU + 14 bytes of header.

    (An 802.1Q-tagged frame may legitimately carry 4 more; this frame is untagged.)
    """
    a, b = vnetio.loopback_pair(mtu=1500)
    with a, b:
        frame = make_frame(1, 1500 + 14 + 1)
        with pytest.raises(ValueError):
            a.send(frame)
        assert b.pending == 0


def test_short_tap_frame_rejected(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    with pytest.raises(ValueError):
        a.send(b"\x01" * 13)
    with pytest.raises(ValueError):
        a.send_batch([make_frame(1, 60), b""])
    assert b.pending == 0
    a.send(b"\x01" * 14)
    assert b.recv(timeout=1) == b"\x01" * 14


@pytest.mark.parametrize("first", [0x00, 0x15, 0x55, 0xF0])
def test_tun_frame_must_be_ipv4_or_ipv6(first: int) -> None:
    a, b = vnetio.loopback_pair(kind="tun")
    with a, b:
        with pytest.raises(ValueError):
            a.send(bytes([first]) + bytes(39))
        with pytest.raises(ValueError):
            a.send(b"")
        assert b.pending == 0
        for ok in (bytes([0x45]) + bytes(19), bytes([0x60]) + bytes(39)):
            a.send(ok)
            assert b.recv(timeout=1) == ok


def test_bad_frame_error_names_the_frame_index(pair: tuple[Loopback, Loopback]) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match=r"\b3\b"):
        a.send_batch([make_frame(i, 60) for i in range(3)] + [b"short"])


def test_use_after_close_raises_value_error() -> None:
    a, b = vnetio.loopback_pair()
    b.close()
    b.close()  # idempotent
    assert b.closed
    calls: list[Callable[[], object]] = [
        lambda: b.send(make_frame(1, 60)),
        lambda: b.send_batch([make_frame(1, 60)]),
        lambda: b.recv(timeout=0),
        lambda: b.recv_batch(timeout=0),
        b.fileno,
    ]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, AdapterClosedError)
    a.close()


def test_context_manager_closes() -> None:
    a, b = vnetio.loopback_pair()
    with a as entered:
        assert entered is a
    assert a.closed
    assert not b.closed
    b.close()


def test_close_while_recv_batch_blocked_returns_promptly(
    pair: tuple[Loopback, Loopback],
) -> None:
    _, b = pair
    job = blocked_then_closed(lambda: b.recv_batch(timeout=None), b.close)
    assert isinstance(job.error, AdapterClosedError), job.error


def test_close_while_recv_blocked_returns_promptly(pair: tuple[Loopback, Loopback]) -> None:
    _, b = pair
    job = blocked_then_closed(lambda: b.recv(timeout=30), b.close)
    assert isinstance(job.error, AdapterClosedError), job.error


def test_peer_close_wakes_a_blocked_recv(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    job = blocked_then_closed(lambda: b.recv_batch(timeout=None), a.close)
    assert isinstance(job.error, AdapterClosedError), job.error


def test_peer_close_delivers_queued_frames_then_reports_closed() -> None:
    a, b = vnetio.loopback_pair()
    with b:
        sent = frames(2)
        a.send_batch(sent)
        a.close()
        assert b.recv(timeout=1) == sent[0]
        assert b.recv(timeout=1) == sent[1]
        with pytest.raises(AdapterClosedError):
            b.recv(timeout=1)


def test_send_to_closed_peer_fails(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    b.close()
    with pytest.raises(OSError) as info:
        a.send(make_frame(1, 60))
    assert getattr(info.value, "sent", None) == 0
    with pytest.raises(OSError) as info:
        a.send_batch(frames(3))
    assert getattr(info.value, "sent", None) == 0


def test_fileno_polls_readable_while_frames_wait(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    fd = b.fileno()
    assert isinstance(fd, int)
    assert select.select([fd], [], [], 0)[0] == []
    a.send_batch(frames(3))
    assert select.select([fd], [], [], 1)[0] == [fd]
    b.recv_batch(max_frames=1, timeout=0)
    assert select.select([fd], [], [], 0)[0] == [fd]
    b.recv_batch(timeout=0)
    assert select.select([fd], [], [], 0)[0] == []


def test_stats_counters(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    sent = frames(25)
    zero = a.stats().as_dict()
    assert set(zero) == STAT_NAMES
    assert set(zero.values()) == {0}
    for f in sent[:5]:
        a.send(f)
    a.send_batch(sent[5:])
    got = recv_all(b, 25)
    assert got == sent
    sa, sb = a.stats(), b.stats()
    assert (sa.tx_frames, sa.tx_bytes) == (25, sum(map(len, sent)))
    assert (sa.rx_frames, sa.rx_bytes) == (0, 0)
    assert (sb.rx_frames, sb.rx_bytes) == (25, sum(map(len, sent)))
    assert (sb.tx_frames, sb.tx_bytes) == (0, 0)
    for s in (sa, sb):
        assert (s.rx_errors, s.tx_errors, s.rx_dropped, s.tx_dropped) == (0, 0, 0, 0)
        assert s.as_dict() == {name: getattr(s, name) for name in STAT_NAMES}


@pytest.mark.parametrize("timeout", [1.8e19, 1e300, sys.float_info.max])
def test_huge_finite_timeout_waits_instead_of_panicking(
    pair: tuple[Loopback, Loopback], timeout: float
) -> None:
    """Any finite timeout >= 0 is accepted; one too long to represent means "no limit"."""
    a, b = pair
    sent = frames(2)
    a.send_batch(sent)
    assert b.recv(timeout=timeout) == sent[0]
    assert b.recv_batch(timeout=timeout).to_list() == sent[1:]


@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan"), float("inf"), float("-inf")])
def test_invalid_timeout_is_a_value_error(pair: tuple[Loopback, Loopback], timeout: float) -> None:
    a, b = pair
    a.send(make_frame(0, 60))
    with pytest.raises(ValueError):
        b.recv(timeout=timeout)
    with pytest.raises(ValueError):
        b.recv_batch(timeout=timeout)
    assert b.pending == 1


def test_blocked_recv_wakes_when_a_frame_arrives(pair: tuple[Loopback, Loopback]) -> None:
    a, b = pair
    job = Background(lambda: b.recv(timeout=None))
    time.sleep(0.2)
    assert job.running
    sent_at = time.monotonic()
    a.send(make_frame(5, 99))
    assert job.join(5)
    assert job.value == make_frame(5, 99)
    assert job.done_at is not None
    assert job.done_at - sent_at < 1.0


def test_concurrent_senders_lose_nothing_and_keep_per_sender_order() -> None:
    a, b = vnetio.loopback_pair(8192)
    per_sender = 1000
    with a, b:
        jobs = [
            Background(
                lambda s=s: [a.send(make_frame(s * per_sender + i, 64)) for i in range(per_sender)]
            )
            for s in range(4)
        ]
        got = recv_all(b, 4 * per_sender, timeout=30)
        assert all(job.join(30) and job.error is None for job in jobs)
    seqs = [frame_seq(f) or 0 for f in got]
    assert sorted(seqs) == list(range(4 * per_sender))
    for s in range(4):
        mine = [q for q in seqs if q // per_sender == s]
        assert mine == sorted(mine)


def test_views_of_a_received_batch_survive_later_receives(pair: tuple[Loopback, Loopback]) -> None:
    """Received arenas are pooled; one must not be reused while views of it are alive."""
    a, b = pair
    first = frames(4)
    a.send_batch(first)
    views = list(b.recv_batch(timeout=1))  # the Batch object itself is dropped here
    gc.collect()
    for round_ in range(10):
        a.send_batch(frames(4, start=100 + 10 * round_))
        b.recv_batch(timeout=1)
    assert [bytes(v) for v in views] == first
