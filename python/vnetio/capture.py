"""Packet capture to pcapng/pcap files, and reading them back.

>>> import os, tempfile, vnetio
>>> from vnetio.capture import Reader, Writer
>>> path = os.path.join(tempfile.mkdtemp(), "x.pcapng")
>>> with Writer(path, linktype="ethernet", interface="vn0") as w:
...     w.write(b"\\x02" * 12 + b"\\x88\\xb5" + bytes(46), timestamp_ns=1_700_000_000_000_000_001)
>>> with Reader(path) as r:
...     batch = r.read_batch()
...     (len(batch), batch.timestamps_ns[0], r.interfaces[0]["name"])
(1, 1700000000000000001, 'vn0')

The writer and reader are in Rust (``vnetio._core``): the file formats, the buffered writes
(a failed write leaves the file ending at its last complete record) and the capture loop
(:meth:`Writer.capture`: adapter → filter → file with the GIL released).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._core import Reader, Writer, summarize
from .hygiene.queues import forget_raise, record_raise

if TYPE_CHECKING:
    from ._core import Adapter

__all__ = [
    "CAPTURE_QUEUE_LENGTH",
    "DEFAULT_SNAPLEN",
    "CaptureStats",
    "Reader",
    "Writer",
    "capture_to",
    "raised_queue",
    "summarize",
]

#: tcpdump's default snaplen: whole frames.
DEFAULT_SNAPLEN = 262144

#: Frames the adapter's kernel queue holds (at least) while a capture runs. A TUN/TAP's
#: queue (txqueuelen) is 500-1000 frames by default: 1-2 ms of a flood, so any moment the
#: capture loop spends elsewhere (a file rotation, the scheduler) loses frames. libpcap
#: gives every capture a 2 MiB kernel buffer for the same reason (tcpdump -B); 8192 frames
#: is ~16 ms at 500 k frames/s. Measured: BENCHMARKS.md, "Capture to a file".
CAPTURE_QUEUE_LENGTH = 8192


@dataclass(frozen=True)
class CaptureStats:
    """What a capture did. Every frame the adapter received while capturing is in exactly
    one of ``captured``, ``filtered`` and ``lost_elsewhere``; ``dropped_kernel`` counts the
    frames that never reached the reader because the adapter's queue was full."""

    #: Frames written to the file(s).
    captured: int
    #: Frames read and rejected by the filter.
    filtered: int
    #: Frames the kernel dropped (the adapter's queue was full): ``Stats.rx_dropped``.
    dropped_kernel: int
    #: Frames read by this adapter but neither written nor filtered (0 unless another
    #: reader shares the adapter).
    lost_elsewhere: int
    #: Frame bytes written.
    bytes: int
    #: Seconds the capture ran.
    seconds: float
    #: The file(s) written.
    files: list[str] = field(default_factory=list)
    #: Why it stopped: "count", "duration" or "interrupted".
    reason: str = "duration"
    #: The adapter's kernel queue length during the capture (None: not a TUN/TAP).
    queue_length: int | None = None


def _check_queue_length(queue_length: object) -> None:
    if (
        queue_length is not None
        and queue_length != "auto"
        and (
            isinstance(queue_length, bool) or not isinstance(queue_length, int) or queue_length < 1
        )
    ):
        raise ValueError(
            f'queue_length must be a positive number of frames, "auto" or None, not {queue_length!r}'
        )


@contextmanager
def raised_queue(
    adapter: Adapter, queue_length: int | Literal["auto"] | None
) -> Iterator[int | None]:
    """Raise ``adapter``'s kernel queue to at least ``queue_length`` frames for the ``with``
    block and put it back afterwards; yields the length in use (None for adapters without a
    kernel queue). ``"auto"`` asks for :data:`CAPTURE_QUEUE_LENGTH` and keeps the current
    queue when the process may not change it (no CAP_NET_ADMIN); a number must be honoured
    (PermissionError otherwise); None leaves the queue alone."""
    _check_queue_length(queue_length)
    if not hasattr(adapter, "queue_length"):  # loopback adapters and single queues
        yield None
        return
    before: int = adapter.queue_length
    want = CAPTURE_QUEUE_LENGTH if queue_length == "auto" else queue_length
    if want is None or before >= want:
        yield before
        return
    # Recorded first: if this process is killed before it puts the queue back, `vnetio
    # doctor` names the raised queue and `vnetio cleanup` restores it (hygiene.queues).
    record = _record_raise(adapter, before, want)
    try:
        adapter.queue_length = want
    except PermissionError:
        forget_raise(record)
        if queue_length != "auto":
            raise
        yield before
        return
    except BaseException:
        forget_raise(record)
        raise
    try:
        yield want
    finally:
        if not adapter.closed:
            with suppress(OSError):  # gone, or no longer ours: the record stays for cleanup
                adapter.queue_length = before
                forget_raise(record)


def _record_raise(adapter: Adapter, before: int, want: int) -> Path | None:
    return record_raise(
        adapter.name,
        getattr(adapter, "netns", None),
        getattr(adapter, "ifindex", 0),
        before,
        want,
    )


def _check_limits(count: int | None, duration: float | None) -> None:
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a positive integer or None, not {count!r}")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or duration <= 0
    ):
        raise ValueError(f"duration must be a positive number of seconds or None, not {duration!r}")


def capture_to(
    adapter: Adapter,
    path: str | os.PathLike[str],
    *,
    filter: str | None = None,
    count: int | None = None,
    duration: float | None = None,
    format: Literal["pcapng", "pcap"] = "pcapng",
    snaplen: int = DEFAULT_SNAPLEN,
    queue_length: int | Literal["auto"] | None = "auto",
    direct_io: bool = True,
) -> CaptureStats:
    """Capture frames from ``adapter`` into ``path`` until ``count`` frames were written,
    ``duration`` seconds passed, or Ctrl-C (KeyboardInterrupt, after the file is closed
    complete). At least one of ``count``/``duration`` is needed, so a script cannot hang.

    ``filter`` is a tcpdump expression: only matching frames are written, the others are
    counted in ``filtered``; the pcapng file records it with the adapter's name, as tcpdump
    does. The link type follows the adapter (Ethernet for TAP, raw IP for TUN).

    ``queue_length``: the adapter's kernel queue is raised to at least this many frames
    while capturing (see :func:`raised_queue`; default :data:`CAPTURE_QUEUE_LENGTH` when
    permitted). ``direct_io``: see :class:`Writer` and the README.
    """
    _check_limits(count, duration)
    _check_queue_length(queue_length)
    if count is None and duration is None:
        raise ValueError(
            "give count= (frames) or duration= (seconds), or both: a capture with neither "
            "would never end"
        )
    # The filter goes on the adapter: in the kernel on a TAP (rejected frames never cross
    # into userspace), else vnetio's interpreter. The writer records it in the file (and
    # re-checks the few frames that pass, at no measurable cost). The adapter's previous
    # filter is put back afterwards.
    previous = (adapter.filter, adapter.filter_placement)
    writer = Writer(
        path,
        format=format,
        snaplen=snaplen,
        interface=adapter,
        filter=filter,
        direct_io=direct_io,
    )
    if filter is not None:
        try:
            adapter.set_filter(filter)
        except BaseException:
            writer.close()
            raise
    before = adapter.stats()
    start = _now()
    reason = "duration"
    with writer as w, raised_queue(adapter, queue_length) as qlen:
        try:
            _, _, why = w.capture(adapter, count=count, timeout=duration)
            reason = "count" if why == "count" else "duration"
        except KeyboardInterrupt:
            reason = "interrupted"
            raise
        finally:
            w.close()
            after = adapter.stats()
            if filter is not None:
                _restore_filter(adapter, *previous)
    received = after.rx_frames - before.rx_frames
    kernel_filtered = (after.rx_filtered or 0) - (before.rx_filtered or 0)
    return CaptureStats(
        captured=w.frames,
        filtered=w.filtered + kernel_filtered,
        dropped_kernel=after.rx_dropped - before.rx_dropped,
        lost_elsewhere=max(0, received - w.frames - w.filtered),
        bytes=w.bytes,
        seconds=_now() - start,
        files=[os.fspath(path)],
        reason=reason,
        queue_length=qlen,
    )


def _restore_filter(
    adapter: Adapter,
    expression: str | None,
    placement: Literal["kernel", "classic", "userspace"] | None,
) -> None:
    if adapter.closed:
        return
    if placement is not None and expression is not None:
        adapter.set_filter(expression, placement=placement)
    else:  # none before (or a raw program, which cannot be recovered by name: removed)
        adapter.set_filter(None)


def _now() -> float:
    import time

    return time.monotonic()
