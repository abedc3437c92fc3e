"""The capture writer when the system really refuses: seccomp filters (tests/syscall_faults.py)
installed in a child process make the writer's own system calls fail, vnetio's code is not
mocked. Checked: a filesystem that takes O_DIRECT opens but refuses the writes (EINVAL), a
writer thread that cannot start (EAGAIN from clone3/clone), and one that dies in the middle
of a write (seccomp kills that thread alone).

No privilege is needed: an unprivileged process may install a seccomp filter on itself
after PR_SET_NO_NEW_PRIVS.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from vnetio.capture import Reader, Writer

from tests.syscall_faults import run_child
from tests.unit.test_capture import direct_io_works_in, frames_and_times, tool

# The child's helpers: the frames every test writes, and the O_DIRECT descriptor of a file.
COMMON = """
import errno, os
from tests.syscall_faults import Arg, Rule, KILL_THREAD, errno_action, install
from tests.unit.test_capture import frames_and_times
from vnetio.capture import Writer

FRAMES, TIMES = frames_and_times(997)

def direct_fd(path):
    '''The descriptor of `path` opened with O_DIRECT (the writer's second descriptor).'''
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != path:
                continue
            flags = open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0]
        except OSError:
            continue
        if int(flags, 8) & os.O_DIRECT:
            found.append(int(fd))
    assert len(found) == 1, found
    return found[0]

def write_all(w, rounds=8):
    for i in range(rounds):
        for frame, ts in zip(FRAMES, TIMES):
            w.write(frame, timestamp_ns=ts + i)
        if i % 3 == 1:
            w.flush()
"""


def tshark_frames(path: Path) -> int:
    return len(tool("tshark", "-r", str(path), "-T", "fields", "-e", "frame.number").split())


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_o_direct_refused_at_write_time_falls_back_to_the_page_cache(
    tmp_path: Path, fmt: str
) -> None:
    """Every write on the O_DIRECT descriptor fails with EINVAL (as on a filesystem that
    takes the open but not the I/O): the capture goes on through the page cache, and the
    file is byte for byte what a writer without direct I/O makes."""
    if not direct_io_works_in(tmp_path):  # with CI set, a failure (tests/conftest.py)
        pytest.skip(f"{tmp_path} refuses O_DIRECT opens: this test needs a filesystem that does")
    path = tmp_path / f"faulty.{fmt}"
    result = run_child(
        COMMON,
        """
        w = Writer(PARAMS["path"], format=PARAMS["fmt"], linktype="ethernet")
        before = w.direct_io
        fd = direct_fd(PARAMS["path"])
        # Every thread (the writer thread runs already): pwrite64 on that descriptor fails.
        install([Rule("pwrite64", errno_action(errno.EINVAL), [Arg(0, "eq", fd)])],
                all_threads=True)
        write_all(w)
        after = w.direct_io
        w.close()
        report({"before": before, "after": after, "frames": w.frames})
        """,
        path=str(path),
        fmt=fmt,
    )
    assert result["before"] is True, "the writer did not use O_DIRECT to begin with"
    assert result["after"] is False, "the EINVAL from the O_DIRECT write was not seen"
    assert result["frames"] == 8 * 997
    normal = tmp_path / f"normal.{fmt}"
    frames, times = frames_and_times(997)
    with Writer(normal, format=fmt, linktype="ethernet", direct_io=False) as w:  # type: ignore[arg-type]
        for i in range(8):
            for frame, ts in zip(frames, times, strict=True):
                w.write(frame, timestamp_ns=ts + i)
    assert path.read_bytes() == normal.read_bytes()
    assert tshark_frames(path) == 8 * 997


def test_writer_thread_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    """clone3 (and clone for a thread) fail with EAGAIN, as when RLIMIT_NPROC is reached:
    the Writer, and capture_to, say which step failed; no half-made file is left."""
    result = run_child(
        """
        import errno, os, vnetio
        from tests.syscall_faults import Arg, Rule, errno_action, install
        from vnetio.capture import Writer, capture_to
        from tests.unit.test_capture import udp_frame

        a, b = vnetio.loopback_pair(kind="tap")
        a.send_batch([udp_frame(i) for i in range(3)])
        install([
            Rule("clone3", errno_action(errno.EAGAIN)),
            Rule("clone", errno_action(errno.EAGAIN), [Arg(0, "bits", 0x10000)]),  # CLONE_THREAD
        ])
        out = {}
        for how in ("writer", "capture_to"):
            path = PARAMS[how]
            try:
                if how == "writer":
                    Writer(path, linktype="ethernet")
                else:
                    capture_to(b, path, count=3)
            except OSError as exc:
                out[how] = {"errno": exc.errno, "text": str(exc), "filename": exc.filename,
                            "exists": os.path.exists(path)}
        out["still_queued"] = len(b.recv_batch(timeout=0))
        report(out)
        """,
        writer=str(tmp_path / "w.pcapng"),
        capture_to=str(tmp_path / "c.pcapng"),
    )
    for how in ("writer", "capture_to"):
        got = result.get(how)
        assert got is not None, f"{how}: no error raised\n{result}"
        assert got["errno"] == errno.EAGAIN, got
        assert "cannot start the capture writer thread" in got["text"], got
        assert got["filename"] == str(tmp_path / f"{how[0]}.pcapng")
        assert not got["exists"], f"{how} left a file that is not a capture file behind"
    assert result["still_queued"] == 3  # the failed capture took no frame


@pytest.mark.parametrize("fmt", ["pcapng", "pcap"])
def test_writer_thread_killed_mid_write_is_a_clear_error_and_the_file_stays_readable(
    tmp_path: Path, fmt: str
) -> None:
    """seccomp kills the writer thread (alone) at its first whole-page write, after the
    first buffers reached the file: the capture must not hang; it says the writer thread
    ended, and the file ends at its last complete frame."""
    path = tmp_path / f"killed.{fmt}"
    result = run_child(
        COMMON,
        """
        w = Writer(PARAMS["path"], format=PARAMS["fmt"], linktype="ethernet")
        write_all(w, rounds=2)
        w.flush()
        first = w.frames
        # Whole pages (a multiple of 4096 bytes) only ever come from the writer thread: the
        # capture loop writes the unaligned tail, always shorter than a page.
        install([Rule("pwrite64", KILL_THREAD,
                      [Arg(2, "mask0", 0xFFF), Arg(2, "ge", 4096)])], all_threads=True)
        error = None
        try:
            write_all(w, rounds=8)
            w.flush()
        except OSError as exc:
            error = {"errno": exc.errno, "text": str(exc), "frames": getattr(exc, "frames", None)}
        try:
            w.close()
        except OSError:
            pass
        report({"first": first, "error": error, "frames": w.frames})
        """,
        timeout=30,
        path=str(path),
        fmt=fmt,
    )
    error = result["error"]
    assert error is not None, f"no error after the writer thread died: {result}"
    assert "capture writer thread" in error["text"], error
    assert error["frames"] is not None and error["frames"] >= result["first"], error
    assert tshark_frames(path) == error["frames"]
    with Reader(path) as r:
        assert sum(len(b) for b in r) == error["frames"]
