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
import subprocess
import tempfile
from collections.abc import Iterator
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


# Every pwrite64 of the child (the writer thread starts after the filter, so it inherits
# it) is shown to a supervisor that notes (descriptor, length) and lets it run.
DIRECT_EVIDENCE = """
import subprocess
from tests.syscall_faults import USER_NOTIF, Rule, Supervisor

writes = []
supervisor = Supervisor(lambda nr, args: writes.append((args[0] & 0xFFFFFFFF, args[2])) or 0)
supervisor.install([Rule("pwrite64", USER_NOTIF)])
path = PARAMS["path"]
w = Writer(path, format="pcapng", linktype="ethernet")
out = {"direct_io": w.direct_io, "fds": {}}
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink(f"/proc/self/fd/{fd}") == path:
            flags = open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0]
            out["fds"][fd] = bool(int(flags, 8) & os.O_DIRECT)
    except OSError:
        continue
write_all(w)
out["direct_io_after"] = w.direct_io
w.close()
out["size"] = os.path.getsize(path)
direct = [int(fd) for fd, flag in out["fds"].items() if flag]
out["direct_bytes"] = sum(n for fd, n in writes if fd in direct)
out["other_bytes"] = sum(n for fd, n in writes if fd not in direct)
# What of the file is in the page cache now (O_DIRECT writes put nothing there).
out["resident"] = int(subprocess.run(
    ["fincore", "--bytes", "--noheadings", "--output", "RES", path],
    capture_output=True, text=True, check=True).stdout.split()[0])
out["supervisor_errors"] = supervisor.errors
report(out)
"""


def filesystem_type(directory: Path) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%T", str(directory)], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(params=["tmp_path", "dev-shm"])
def capture_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A directory on the disk's filesystem (tmp_path; ext4 here) and one on tmpfs."""
    if request.param == "tmp_path":
        yield tmp_path
        return
    assert Path("/dev/shm").is_dir(), "no /dev/shm (tmpfs) on this machine"
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="vnetio-t-") as d:
        yield Path(d)


def test_direct_io_is_really_used_where_the_filesystem_takes_it(capture_dir: Path) -> None:
    """README: capture files are written with O_DIRECT; "filesystems that refuse O_DIRECT
    get ordinary writes (Writer.direct_io says which)". Where a plain os.open(O_DIRECT)
    works, the writer must say direct_io and the kernel must show it: the writer holds a
    descriptor of the file with O_DIRECT in /proc/self/fdinfo, nearly every byte of the
    file went through that descriptor (pwrite64 calls seen by seccomp), and on a disk
    filesystem those pages did not go through the page cache (fincore). Where the open is
    refused, direct_io must say False."""
    path = capture_dir / "direct.pcapng"
    result = run_child(COMMON, DIRECT_EVIDENCE, path=str(path))
    assert result["supervisor_errors"] == [], result
    if not direct_io_works_in(capture_dir):  # the honest fallback, reported as such
        assert result["direct_io"] is False and not any(result["fds"].values()), result
        return
    assert result["direct_io"] is True and result["direct_io_after"] is True, result
    assert sorted(result["fds"].values()) == [False, True], result  # cached + O_DIRECT
    size = result["size"]
    assert size > 4 << 20, result
    assert result["direct_bytes"] >= 0.95 * size, result
    assert result["direct_bytes"] + result["other_bytes"] >= size, result
    if filesystem_type(capture_dir) != "tmpfs":  # tmpfs files live in the page cache
        assert result["resident"] <= 0.05 * size, result
