"""Records of raised kernel queues (vnetio.hygiene.queues), without privileges: records are
written and read in a private ledger directory, against this namespace's real interfaces
(``lo``) and real processes (this one, alive; a finished child, gone). Nothing here changes
a queue: restoring is checked as a dry run, and on adapters that do not exist."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import vnetio
from vnetio.capture import raised_queue
from vnetio.hygiene.queues import forget_raise, raised_queues, record_raise, restore_queues


@pytest.fixture(autouse=True)
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VNETIO_STATE_DIR", str(tmp_path))
    return tmp_path


def lo() -> tuple[int, int]:
    """(ifindex, txqueuelen) of this namespace's loopback interface."""
    (link,) = [link for link in vnetio._core.list_links(None) if link["name"] == "lo"]
    return int(link["ifindex"]), int(link["txqlen"])


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def as_if_from(path: Path, pid: int) -> None:
    """Rewrite a record as if process ``pid`` had written it."""
    data = json.loads(path.read_text())
    data["pid"] = pid
    path.write_text(json.dumps(data))


def test_a_record_lives_while_the_queue_is_raised(ledger: Path) -> None:
    ifindex, qlen = lo()
    path = record_raise("lo", None, ifindex, 500, qlen)
    assert path is not None and path.is_relative_to(ledger / "queues")
    (q,) = raised_queues()
    assert (q.name, q.ifindex, q.original, q.raised, q.current) == ("lo", ifindex, 500, qlen, qlen)
    assert q.pid == os.getpid() and q.owner_alive and not q.left_raised
    assert restore_queues() == []  # the raising process runs: not ours to undo
    forget_raise(path)
    assert raised_queues() == [] and not path.parent.exists()


def test_a_killed_capture_leaves_a_raised_queue_that_cleanup_would_restore() -> None:
    ifindex, qlen = lo()
    path = record_raise("lo", None, ifindex, 500, qlen)
    assert path is not None
    as_if_from(path, dead_pid())
    (q,) = raised_queues()
    assert not q.owner_alive and q.left_raised
    (plan,) = restore_queues(dry_run=True)
    assert plan.action == "restored" and f"queue {qlen} -> 500" in plan.reason
    assert path.exists()  # a dry run changes nothing
    assert json.loads(json.dumps(plan.as_dict()))["original"] == 500


def test_a_reused_pid_is_not_taken_for_the_capture() -> None:
    ifindex, qlen = lo()
    path = record_raise("lo", None, ifindex, 500, qlen)
    assert path is not None
    data = json.loads(path.read_text())
    data["start"] -= 1  # same PID (ours), another start time: another process
    path.write_text(json.dumps(data))
    (q,) = raised_queues()
    assert not q.owner_alive and q.left_raised


def test_records_with_nothing_left_to_restore_are_forgotten() -> None:
    ifindex, qlen = lo()
    gone = record_raise("vnnothere0", None, 999_999, 1000, 8192)
    changed = record_raise("lo", None, ifindex, 500, qlen + 1)  # lo's queue is not that now
    assert gone is not None and changed is not None
    for path in (gone, changed):
        as_if_from(path, dead_pid())
    assert not any(q.left_raised for q in raised_queues())
    done = {r.queue.name: r for r in restore_queues()}
    assert done["vnnothere0"].action == "forgotten" and "gone" in done["vnnothere0"].reason
    assert done["lo"].action == "forgotten" and "changed" in done["lo"].reason
    assert not gone.exists() and not changed.exists()


def test_no_ledger_directory_means_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VNETIO_STATE_DIR", "/proc/vnetio-cannot-exist")
    assert record_raise("lo", None, 1, 500, 1000) is None
    assert raised_queues() == []


class FakeQueueAdapter:
    """Stands in for a Tap in ``raised_queue``'s bookkeeping (its queue is a number here;
    the privileged tests raise real ones)."""

    def __init__(self, fail: type[BaseException] | None = None) -> None:
        self.name, self.netns, self.ifindex = "lo", None, lo()[0]
        self.closed = False
        self._len = 1000
        self.fail = fail

    @property
    def queue_length(self) -> int:
        return self._len

    @queue_length.setter
    def queue_length(self, value: int) -> None:
        if self.fail is not None and value > self._len:
            raise self.fail("no")
        self._len = value


def test_raised_queue_records_before_raising_and_forgets_after_restoring() -> None:
    adapter = FakeQueueAdapter()
    with raised_queue(adapter, "auto") as length:  # type: ignore[arg-type]
        assert length == 8192
        (q,) = raised_queues()
        assert (q.original, q.raised, q.owner_alive) == (1000, 8192, True)
    assert adapter.queue_length == 1000
    assert raised_queues() == []
    for fail in (PermissionError, OSError):
        with pytest.raises(fail), raised_queue(FakeQueueAdapter(fail), 9000):  # type: ignore[arg-type]
            pass
        assert raised_queues() == []  # a raise that did not happen leaves no record
    closed = FakeQueueAdapter()
    with raised_queue(closed, "auto"):  # type: ignore[arg-type]
        closed.closed = True  # cannot be put back through a closed adapter
    assert [q.raised for q in raised_queues()] == [8192]  # stays, for cleanup
