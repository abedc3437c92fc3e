"""vnetio.aio over in-memory loopback pairs: event-loop driven, no thread per call, and
cancellation loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest
import vnetio
from vnetio import aio

from tests.packets import frame_seq
from tests.packets import make_frame as _make_frame


def make_frame(seq: int) -> bytes:
    return _make_frame(seq, 64)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def seqs(batch: vnetio.Batch) -> list[int | None]:
    return [frame_seq(bytes(f)) for f in batch]


def test_waiting_frames_come_at_once() -> None:
    async def main() -> list[int | None]:
        a, b = vnetio.loopback_pair()
        a.send_batch([make_frame(i) for i in range(3)])
        return seqs(await aio.recv_batch_async(b))

    assert run(main()) == [0, 1, 2]


def test_the_reader_callback_delivers_without_a_thread() -> None:
    async def main() -> tuple[list[int | None], int, float]:
        a, b = vnetio.loopback_pair()
        threads = threading.active_count()
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, a.send_batch, [make_frame(i) for i in range(5)])
        task = asyncio.create_task(aio.recv_batch_async(b, max_frames=4))
        await asyncio.sleep(0.05)
        assert threading.active_count() == threads  # waiting costs no thread
        assert b.fileno() in loop._selector.get_map()  # type: ignore[attr-defined]
        started = time.monotonic()
        batch = await task
        rest = await aio.recv_batch_async(b, timeout=1.0)
        assert not aio._STATES  # nothing left registered
        return seqs(batch) + seqs(rest), threading.active_count() - threads, started

    got, extra_threads, _ = run(main())
    assert got == [0, 1, 2, 3, 4] and extra_threads == 0


def test_timeout_gives_an_empty_batch() -> None:
    async def main() -> tuple[int, int, float]:
        _, b = vnetio.loopback_pair()
        start = time.monotonic()
        waited = await aio.recv_batch_async(b, timeout=0.2)
        elapsed = time.monotonic() - start
        now = await aio.recv_batch_async(b, timeout=0)
        return len(waited), len(now), elapsed

    waited, now, elapsed = run(main())
    assert (waited, now) == (0, 0) and 0.15 < elapsed < 2


def test_recv_async_raises_timeout_error() -> None:
    async def main() -> None:
        a, b = vnetio.loopback_pair()
        with pytest.raises(TimeoutError):
            await aio.recv_async(b, timeout=0.05)
        a.send(make_frame(7))
        assert frame_seq(await aio.recv_async(b, timeout=1)) == 7

    run(main())


def test_cancelled_receive_loses_nothing() -> None:
    async def main() -> list[int | None]:
        a, b = vnetio.loopback_pair()
        task = asyncio.create_task(aio.recv_batch_async(b))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        a.send_batch([make_frame(i) for i in range(4)])
        assert b.pending == 4  # the cancelled call read nothing
        return seqs(await aio.recv_batch_async(b, timeout=1))

    assert run(main()) == [0, 1, 2, 3]


def test_a_batch_delivered_to_a_cancelled_task_is_kept() -> None:
    """The race: the reader callback handed a batch over, then the task was cancelled
    before it ran. The batch goes to the next receive (cut to its max_frames)."""

    async def main() -> list[list[int | None]]:
        a, b = vnetio.loopback_pair()
        task = asyncio.create_task(aio.recv_batch_async(b))
        await asyncio.sleep(0.05)
        a.send_batch([make_frame(i) for i in range(6)])
        aio._STATES[id(b)].on_readable()  # the callback runs first ...
        task.cancel()  # ... then the cancellation
        with pytest.raises(asyncio.CancelledError):
            await task
        a.send(make_frame(6))
        first = await aio.recv_batch_async(b, max_frames=4, timeout=1)
        second = await aio.recv_batch_async(b, timeout=1)
        third = await aio.recv_batch_async(b, timeout=1)
        return [seqs(first), seqs(second), seqs(third)]

    assert run(main()) == [[0, 1, 2, 3], [4, 5], [6]]


def test_cancellation_storm_loses_nothing() -> None:
    total = 3000

    async def main() -> list[int | None]:
        a, b = vnetio.loopback_pair(capacity=4096)
        got: list[int | None] = []
        rng = random.Random(1)

        async def producer() -> None:
            for start in range(0, total, 50):
                await aio.send_batch_async(a, [make_frame(i) for i in range(start, start + 50)])
                await asyncio.sleep(0)

        prod = asyncio.create_task(producer())
        while len(got) < total:
            task = asyncio.create_task(aio.recv_batch_async(b, max_frames=rng.randint(1, 64)))
            for _ in range(rng.randint(0, 2)):
                await asyncio.sleep(0)
            if rng.random() < 0.5:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                got.extend(seqs(await task))
        await prod
        return got

    assert run(main()) == list(range(total))


def test_concurrent_waiters_share_the_frames() -> None:
    async def main() -> list[int | None]:
        a, b = vnetio.loopback_pair()
        tasks = [asyncio.create_task(aio.recv_batch_async(b, max_frames=2)) for _ in range(3)]
        await asyncio.sleep(0.05)
        a.send_batch([make_frame(i) for i in range(6)])
        batches = await asyncio.gather(*tasks)
        return [s for batch in batches for s in seqs(batch)]

    assert run(main()) == [0, 1, 2, 3, 4, 5]


def test_batches_until_closed() -> None:
    async def main() -> list[int | None]:
        a, b = vnetio.loopback_pair()
        got: list[int | None] = []

        async def consume() -> None:
            async for batch in aio.batches(b, max_frames=3):
                got.extend(seqs(batch))

        consumer = asyncio.create_task(consume())
        for i in range(0, 9, 3):
            await aio.send_batch_async(a, [make_frame(j) for j in range(i, i + 3)])
            await asyncio.sleep(0.01)
        while len(got) < 9:
            await asyncio.sleep(0.01)
        await aio.aclose(b)  # wakes the waiting iterator at once
        await asyncio.wait_for(consumer, 1)
        return got

    assert run(main()) == list(range(9))


def test_plain_close_is_noticed_while_waiting() -> None:
    async def main() -> None:
        _, b = vnetio.loopback_pair()
        task = asyncio.create_task(aio.recv_batch_async(b))
        await asyncio.sleep(0.05)
        b.close()  # not through aio: the periodic check notices it
        with pytest.raises(vnetio.AdapterClosedError):
            await asyncio.wait_for(task, 2)
        with pytest.raises(vnetio.AdapterClosedError):
            await aio.recv_batch_async(b)
        assert not aio._STATES

    run(main())


def test_async_adapter_context() -> None:
    async def main() -> None:
        a, b = vnetio.loopback_pair()
        async with aio.open(a) as aa, aio.open(b) as ab:
            assert aa.name == a.name and aa.kind == "tap"
            await aa.send_batch([make_frame(1), make_frame(2)])
            await aa.send(make_frame(3))
            assert seqs(await ab.recv_batch(timeout=1)) == [1, 2, 3]
            waiter = asyncio.create_task(ab.recv_batch())
            await asyncio.sleep(0.02)
        assert a.closed and b.closed
        with pytest.raises(vnetio.AdapterClosedError):
            await waiter  # woken by the close, not left hanging

        c, d = vnetio.loopback_pair()
        async with aio.open(c, close=False):
            pass
        assert not c.closed
        assert await aio.aenter(c) is c
        await aio.aexit(c, None, None, None)
        assert c.closed
        d.close()

    run(main())


def test_async_for_over_an_async_adapter() -> None:
    async def main() -> list[int | None]:
        a, b = vnetio.loopback_pair()
        a.send_batch([make_frame(i) for i in range(4)])
        got: list[int | None] = []
        async with aio.open(b) as ab:
            async for batch in ab:
                got.extend(seqs(batch))
                if len(got) == 4:
                    break
        return got

    assert run(main()) == [0, 1, 2, 3]


def test_send_waits_for_room_on_a_full_queue() -> None:
    async def main() -> tuple[int, list[int | None]]:
        a, b = vnetio.loopback_pair(capacity=4, overflow="error")
        got: list[int | None] = []

        async def drain() -> None:
            while len(got) < 20:
                got.extend(seqs(await aio.recv_batch_async(b, max_frames=3)))
                await asyncio.sleep(0.005)

        drainer = asyncio.create_task(drain())
        sent = await aio.send_batch_async(a, [make_frame(i) for i in range(20)])
        await drainer
        return sent, got

    sent, got = run(main())
    assert sent == 20 and got == list(range(20))


def test_max_frames_must_be_positive() -> None:
    async def main() -> None:
        _, b = vnetio.loopback_pair()
        with pytest.raises(ValueError, match="max_frames"):
            await aio.recv_batch_async(b, max_frames=0)

    run(main())
