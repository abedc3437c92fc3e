"""KernelLoop without privileges: argument checks before any side effect, the error that
says what is needed, and the frame helpers (the bridge-learning guard)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import vnetio
from vnetio import _topology
from vnetio.kernel_loop import KernelLoop


def namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rx_mode": "frames"}, "rx_mode must be"),
        ({"rx_mode": "superframes"}, "needs offload=True"),
        ({"queues": 0}, "queues must be"),
        ({"mtu": 20}, "mtu must be"),
        ({"timeout": 0}, "timeout must be"),
    ],
)
def test_bad_arguments_fail_before_anything_is_built(
    kwargs: dict[str, object], message: str
) -> None:
    before = namespaces()
    with pytest.raises(ValueError, match=message):
        KernelLoop(**kwargs)  # type: ignore[arg-type]
    assert namespaces() == before


def test_without_privileges_the_error_says_what_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        _topology, "have_privileges", lambda: (False, "this process lacks CAP_NET_ADMIN")
    )
    before = namespaces()
    with pytest.raises(PermissionError, match="CAP_NET_ADMIN") as info, KernelLoop():
        pass
    assert info.value.errno == errno.EPERM
    assert "loopback_pair()" in str(info.value)
    assert namespaces() == before


def test_without_net_admin_for_real() -> None:
    """A child without CAP_NET_ADMIN (dropped with setpriv, from util-linux: `make
    system-deps` installs it) gets the PermissionError that names the capability."""
    code = (
        "import vnetio\n"
        "try:\n"
        "    vnetio.KernelLoop().open()\n"
        "except PermissionError as e:\n"
        "    print('PermissionError', e.errno, e)\n"
    )
    out = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
         sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.stdout.startswith(f"PermissionError {errno.EPERM} "), out.stdout + out.stderr
    assert "CAP_NET_ADMIN" in out.stdout


def test_closed_loop_says_how_to_open_it() -> None:
    loop = KernelLoop()
    assert loop.closed
    with pytest.raises(RuntimeError, match="with KernelLoop"):
        _ = loop.a
    loop.close()  # idempotent, nothing to do
    assert repr(loop) == "<KernelLoop closed>"


def test_frames_cross_without_learning_traps() -> None:
    loop = KernelLoop()
    assert (loop.src_mac, loop.dst_mac, loop.ethertype) == (
        _topology.SRC_MAC,
        _topology.DST_MAC,
        _topology.ETHERTYPE,
    )
    frame = loop.frame(64, seq=5)
    assert len(frame) == 64
    assert frame[:6] == _topology.mac_bytes(loop.dst_mac)
    assert frame[6:12] == _topology.mac_bytes(loop.src_mac)
    assert int.from_bytes(frame[14:22], "big") == 5
    with pytest.raises(ValueError, match="bridge would learn it"):
        loop.frame(64, src=loop.dst_mac.upper())
    batch = loop.batch(10, 100)
    assert len(batch) == 10 and set(batch.lengths) == {100}
    mixed = vnetio.Batch.from_frames([*batch, loop.frame(100, src="02:00:00:00:00:99"), b"x" * 100])
    assert loop.own_frames(mixed, 100) == 10
    assert loop.own_frames(batch, 64) == 0


def test_import_vnetio_stays_light() -> None:
    """The namespace helpers (iproute2 wrappers) load only when a KernelLoop opens."""
    code = "import sys, vnetio; print(sorted(m for m in sys.modules if m == 'vnetio._topology'))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
    assert vnetio.KernelLoop is KernelLoop


@pytest.mark.parametrize("size", [64, 1514, 61, 1513])  # even: two-byte columns; odd: bytes
def test_counting_own_frames_checks_every_signature_byte(size: int) -> None:
    """The column check must see a wrong byte anywhere in any frame's signature, at either
    column width, and then count frame by frame."""
    frame = _topology.build_frame(size)
    assert _topology.count_own_frames(vnetio.Batch.from_frames([frame] * 300), size) == 300
    for pos in range(6, 14):
        for victim in (0, 137, 299):
            bad = bytearray(frame)
            bad[pos] ^= 0x40
            frames = [frame] * 300
            frames[victim] = bytes(bad)
            batch = vnetio.Batch.from_frames(frames)
            assert _topology.count_own_frames(batch, size) == 299, (pos, victim)


def test_counting_own_frames_with_foreign_sizes_mixed_in() -> None:
    own, other = _topology.build_frame(1514), _topology.build_frame(1513)
    batch = vnetio.Batch.from_frames([own, other, own, other[:-1] + b"\0"])
    assert _topology.count_own_frames(batch, 1514) == 2
    assert _topology.count_own_frames(vnetio.Batch.from_frames([]), 1514) == 0
    stranger = _topology.build_frame(64, src="02:76:6e:10:00:09")  # not our source MAC
    assert _topology.count_own_frames(vnetio.Batch.from_frames([stranger] * 5), 64) == 0
