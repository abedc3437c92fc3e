"""asyncio for vnetio adapters: no thread per call, nothing lost on cancellation.

>>> import asyncio, vnetio, vnetio.aio
>>> async def main():
...     a, b = vnetio.loopback_pair()
...     async with vnetio.aio.open(a) as a, vnetio.aio.open(b) as b:
...         await a.send_batch([b"\\x02" * 12 + b"\\x88\\xb5" + bytes(46)])
...         return len(await b.recv_batch(timeout=1.0))
>>> asyncio.run(main())
1

Receiving is driven by the event loop's reader callback on the adapter's descriptor
(``loop.add_reader(adapter.fileno(), …)``; a loopback end's descriptor is readable while
frames wait): frames are read with ``recv_batch(max_frames, timeout=0)`` only inside that
callback, and only for a waiter still waiting, so a cancelled ``recv_batch_async`` has
read nothing it then drops. In the one race left (the callback handed a batch to a task
whose cancellation arrived before it could run), the batch is kept for the adapter's next
``recv_batch_async``. Several tasks may wait on one adapter: they are served in order.

The functions take any vnetio adapter (Tap, Tun, Queue, Loopback); :class:`AsyncAdapter`
(from :func:`open`) wraps one with the same methods as coroutines.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Self

from .exceptions import AdapterClosedError

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ._core import Adapter, Batch, Stats

__all__ = [
    "AsyncAdapter",
    "aclose",
    "aenter",
    "aexit",
    "batches",
    "open",
    "recv_async",
    "recv_batch_async",
    "send_async",
    "send_batch_async",
]

#: How often a waiting adapter is checked for a close() that did not come through
#: :func:`aclose` (a closed descriptor never becomes readable).
CLOSE_CHECK_INTERVAL = 0.25


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    """Complete ``future`` with ``value`` unless it is already done (a timer callback)."""
    if not future.done():
        future.set_result(value)


def _empty_batch() -> Batch:
    from ._core import Batch

    return Batch.from_frames([])


def _split(batch: Batch, max_frames: int) -> tuple[Batch, Batch | None]:
    """``batch`` cut after ``max_frames`` frames (copies; offload metadata kept)."""
    if len(batch) <= max_frames:
        return batch, None
    from ._core import Batch

    def part(indices: range) -> Batch:
        return Batch.from_frames(
            [batch[i] for i in indices], offload=[batch.offload_info(i) for i in indices]
        )

    return part(range(max_frames)), part(range(max_frames, len(batch)))


class _Waiters:
    """The asyncio state of one adapter: tasks waiting to receive (in order), batches kept
    from cancelled receives, and the reader registration while anyone waits."""

    def __init__(self, adapter: Adapter, loop: asyncio.AbstractEventLoop) -> None:
        self.adapter = adapter  # a strong reference: keeps id(adapter) unique while we exist
        self.loop = loop
        self.queue: collections.deque[tuple[asyncio.Future[Batch], int]] = collections.deque()
        self.kept: collections.deque[Batch] = collections.deque()
        self.fd: int | None = None
        self.watch: asyncio.TimerHandle | None = None

    def take_kept(self, max_frames: int) -> Batch:
        head, rest = _split(self.kept.popleft(), max_frames)
        if rest is not None:
            self.kept.appendleft(rest)
        return head

    def keep(self, batch: Batch) -> None:
        """Keep a batch read for a task that was cancelled before it could take it."""
        if self.adapter.closed:
            return
        current = _STATES.setdefault(id(self.adapter), self)  # released meanwhile: back
        current.kept.append(batch)

    def register(self) -> None:
        if self.fd is None:
            self.fd = self.adapter.fileno()
            self.loop.add_reader(self.fd, self.on_readable)
            self.watch = self.loop.call_later(CLOSE_CHECK_INTERVAL, self.check_closed)

    def unregister(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            self.fd = None
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None

    def drop_done(self) -> None:
        while self.queue and self.queue[0][0].done():
            self.queue.popleft()

    def on_readable(self) -> None:
        """Reader callback: read for the first waiter still waiting, never for another."""
        self.drop_done()
        if not self.queue:
            self.release()
            return
        future, max_frames = self.queue[0]
        try:
            batch = self.adapter.recv_batch(max_frames, timeout=0)
        except (OSError, ValueError) as exc:  # closed (AdapterClosedError) or broken
            self.fail(exc)
            return
        if len(batch):
            self.queue.popleft()
            future.set_result(batch)
        self.drop_done()
        if not self.queue:
            self.release()

    def check_closed(self) -> None:
        self.watch = None
        if self.adapter.closed:
            self.fail(AdapterClosedError(f"adapter {self.adapter.name} was closed"))
        elif self.fd is not None:
            self.watch = self.loop.call_later(CLOSE_CHECK_INTERVAL, self.check_closed)

    def fail(self, exc: BaseException) -> None:
        """Hand ``exc`` to every waiter (the adapter is closed or broken)."""
        while self.queue:
            future, _ = self.queue.popleft()
            if not future.done():
                future.set_exception(exc)
        self.release()

    def release(self) -> None:
        """Forget this state when nobody waits and nothing is kept."""
        if self.queue:
            return
        self.unregister()
        if not self.kept and _STATES.get(id(self.adapter)) is self:
            del _STATES[id(self.adapter)]


#: id(adapter) -> its state, only while a task waits or a batch is kept (the adapters do
#: not take weak references, so the state holds the adapter and is dropped when idle).
_STATES: dict[int, _Waiters] = {}


def _state(adapter: Adapter, loop: asyncio.AbstractEventLoop) -> _Waiters:
    state = _STATES.get(id(adapter))
    if state is None:
        state = _STATES[id(adapter)] = _Waiters(adapter, loop)
    elif state.loop is not loop:
        if state.queue:
            raise RuntimeError(f"adapter {adapter.name} is being received from in another loop")
        state.loop = loop
    return state


async def recv_batch_async(
    adapter: Adapter, max_frames: int = 256, timeout: float | None = None
) -> Batch:
    """Receive up to ``max_frames`` frames without blocking the event loop.

    Waits up to ``timeout`` seconds (None: for ever, 0: not at all) for the first frame,
    then takes what is queued; returns a possibly empty ``Batch`` (empty on timeout).
    Cancelling it loses no frame. Raises ``AdapterClosedError`` when the adapter is (or
    gets) closed.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, not {max_frames}")
    loop = asyncio.get_running_loop()
    state = _STATES.get(id(adapter))
    if state is not None and state.kept:
        batch = state.take_kept(max_frames)
        state.release()
        return batch
    if state is None or not state.queue:  # never overtake earlier waiters
        batch = adapter.recv_batch(max_frames, timeout=0)
        if len(batch) or timeout == 0:
            return batch
    elif timeout == 0:
        return _empty_batch()
    return await _wait(_state(adapter, loop), max_frames, timeout)


async def _wait(state: _Waiters, max_frames: int, timeout: float | None) -> Batch:
    """Queue up as a waiter; the reader callback (or the timeout) completes the future."""
    loop = state.loop
    future: asyncio.Future[Batch] = loop.create_future()
    state.queue.append((future, max_frames))
    timer = None
    if timeout is not None:
        timer = loop.call_later(timeout, lambda: _settle(future, _empty_batch()))
    try:
        state.register()
        return await future
    except asyncio.CancelledError:
        if future.done() and not future.cancelled() and future.exception() is None:
            batch = future.result()
            if len(batch):  # delivered, but the task was cancelled first: keep it
                state.keep(batch)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if not future.done():
            future.cancel()
        state.drop_done()
        state.release()


async def recv_async(adapter: Adapter, timeout: float | None = None) -> bytes:
    """One frame as bytes; ``TimeoutError`` when none arrives within ``timeout``."""
    batch = await recv_batch_async(adapter, 1, timeout)
    if not len(batch):
        raise TimeoutError(f"no frame on {adapter.name} within {timeout} s")
    return bytes(batch[0])


async def _wait_for_room(adapter: Adapter, attempt: int) -> None:
    from ._core import Loopback

    if isinstance(adapter, Loopback):
        # A loopback queue has no "writable" signal: back off, 1 ms doubling to 20 ms.
        await asyncio.sleep(min(0.001 * 2**attempt, 0.02))
        return
    loop = asyncio.get_running_loop()
    fd = adapter.fileno()
    room: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _settle, room, None)
    try:
        await room
    finally:
        loop.remove_writer(fd)


async def send_batch_async(adapter: Adapter, frames: Batch | Iterable[Buffer]) -> int:
    """Send every frame; returns the count (like ``adapter.send_batch``).

    When the receiver has no room (``BlockingIOError``, e.g. ``QueueFullError`` from a
    loopback opened with ``overflow="error"``), the frames not yet sent wait for room
    (the descriptor's writer callback; a short back-off for a loopback) while the loop
    runs on. Cancelled while waiting, the frames before that point have been sent.
    """
    from ._core import Batch

    pending: Batch | list[Any] = frames if isinstance(frames, Batch) else list(frames)
    total = len(pending)
    sent = 0
    attempt = 0
    while True:
        try:
            return sent + adapter.send_batch(pending)
        except BlockingIOError as exc:
            done = int(getattr(exc, "sent", 0) or 0)
            sent += done
            pending = [pending[i] for i in range(done, len(pending))]
            attempt = 0 if done else attempt + 1
            if sent == total:
                return sent
            await _wait_for_room(adapter, attempt)


async def send_async(adapter: Adapter, frame: Buffer) -> None:
    await send_batch_async(adapter, [frame])


async def batches(adapter: Adapter, max_frames: int = 256) -> AsyncIterator[Batch]:
    """``async for batch in batches(adapter)``: every non-empty batch received, until the
    adapter is closed."""
    while True:
        try:
            batch = await recv_batch_async(adapter, max_frames)
        except AdapterClosedError:
            return
        if len(batch):
            yield batch


def _abort(adapter: Adapter) -> None:
    state = _STATES.pop(id(adapter), None)
    if state is not None:
        state.kept.clear()
        state.fail(AdapterClosedError(f"adapter {adapter.name} was closed"))


async def aclose(adapter: Adapter) -> None:
    """Close ``adapter``; tasks waiting on it get ``AdapterClosedError`` at once."""
    _abort(adapter)
    adapter.close()


async def aenter(adapter: Adapter) -> Adapter:
    """``Adapter.__aenter__``: the adapter itself."""
    return adapter


async def aexit(adapter: Adapter, *exc_info: object) -> None:
    """``Adapter.__aexit__``: :func:`aclose`."""
    await aclose(adapter)


class AsyncAdapter:
    """An adapter with coroutine methods: ``async with vnetio.aio.open(adapter) as a``.

    ``recv_batch``, ``recv``, ``send_batch``, ``send`` are coroutines; ``batches()`` and
    ``async for batch in a`` iterate; everything else (``name``, ``stats()``, ``mtu``, …)
    is the adapter's. Leaving the ``async with`` closes the adapter (``close=False`` to keep
    it open) and wakes any task still waiting on it with ``AdapterClosedError``.
    """

    def __init__(self, adapter: Adapter, *, close: bool = True) -> None:
        self.adapter = adapter
        self._close = close

    async def recv_batch(self, max_frames: int = 256, timeout: float | None = None) -> Batch:
        return await recv_batch_async(self.adapter, max_frames, timeout)

    async def recv(self, timeout: float | None = None) -> bytes:
        return await recv_async(self.adapter, timeout)

    async def send_batch(self, frames: Batch | Iterable[Buffer]) -> int:
        return await send_batch_async(self.adapter, frames)

    async def send(self, frame: Buffer) -> None:
        await send_async(self.adapter, frame)

    def batches(self, max_frames: int = 256) -> AsyncIterator[Batch]:
        return batches(self.adapter, max_frames)

    def __aiter__(self) -> AsyncIterator[Batch]:
        return batches(self.adapter)

    def stats(self) -> Stats:
        return self.adapter.stats()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    async def aclose(self) -> None:
        await aclose(self.adapter)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._close:
            await aclose(self.adapter)
        else:
            _abort(self.adapter)

    def __repr__(self) -> str:
        return f"<AsyncAdapter {self.adapter!r}>"


def open(adapter: Adapter, *, close: bool = True) -> AsyncAdapter:
    """Wrap ``adapter`` for asyncio (see :class:`AsyncAdapter`)."""
    return AsyncAdapter(adapter, close=close)
