"""Self-tests of the guest rig (tests/vm/rig.py): the command protocol, timeouts, hung and
never-booting guests being killed, module and initramfs handling, and the vhost-user
attachment against a stub backend (tests/vm/vhost_user_stub.py).

Two boots: one guest shared by the module (its NIC is the vhost-user one), and one
dedicated guest that the hang test stops answering.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm import rig
from tests.vm import vhost_user_stub as vu

pytestmark = pytest.mark.vm

VU_MAC = "52:54:00:76:6e:10"


@pytest.fixture(scope="module")
def stub() -> Iterator[vu.VhostUserStub]:
    with tempfile.TemporaryDirectory(prefix="vnvm-vu-") as tmp:
        backend = vu.VhostUserStub(os.path.join(tmp, "vu.sock"))
        try:
            yield backend
        finally:
            backend.close()


@pytest.fixture(scope="module")
def guest(stub: vu.VhostUserStub) -> Iterator[rig.Guest]:
    with rig.Guest(nics=[rig.VhostUserNic(stub.path, VU_MAC)], name="rig") as g:
        yield g


def test_exit_status_and_output(guest: rig.Guest) -> None:
    result = guest.run("echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert not result.ok
    with pytest.raises(rig.CommandFailed, match="exited 7") as failed:
        guest.run("false || exit 7", check=True)
    assert failed.value.result.returncode == 7
    assert guest.run("true").ok


def test_stdin_and_put_file(guest: rig.Guest) -> None:
    data = os.urandom(100_000)  # several acknowledged chunks
    assert guest.run("wc -c", input=data[:5000]).stdout.strip() == "5000"
    guest.put_file("/tmp/put", data, mode=0o600)
    out = guest.run("stat -c %a /tmp/put; sha256sum /tmp/put", check=True).stdout.split()
    assert out[:2] == ["600", hashlib.sha256(data).hexdigest()]


def test_command_timeout_kills_only_the_command(guest: rig.Guest) -> None:
    started = time.monotonic()
    with pytest.raises(rig.CommandTimeout, match="timed out after 1") as timed_out:
        guest.run("echo started; sleep 60 & wait", timeout=1)
    assert time.monotonic() - started < 5
    assert timed_out.value.result.stdout == "started\n"
    # The whole process group died (the backgrounded sleep too); the guest still answers.
    assert "sleep 60" not in guest.run("ps -o args", check=True).stdout
    assert guest.alive


def test_background_process(guest: rig.Guest) -> None:
    proc = guest.run_bg("echo hello; exec sleep 600")
    assert proc.alive()
    assert "hello" in proc.output()
    proc.kill()
    proc.wait(timeout=5)
    assert not proc.alive()


def test_modules_loaded_in_dependency_order(guest: rig.Guest) -> None:
    order = [p.name.removesuffix(".ko") for p in guest.spec.modules]
    for before, after in [
        ("virtio_ring", "virtio"),
        ("virtio", "virtio_pci"),
        ("virtio_pci_modern_dev", "virtio_pci"),
        ("virtio_pci_legacy_dev", "virtio_pci"),
        ("failover", "net_failover"),
        ("net_failover", "virtio_net"),
        ("virtio", "virtio_net"),
    ]:
        assert order.index(before) < order.index(after), order
    loaded = {line.split()[0] for line in guest.run("cat /proc/modules").stdout.splitlines()}
    assert set(order) <= loaded
    assert "insmod" not in guest.console_log  # no "vnvm: insmod X failed"


def test_initramfs_cached_and_programs_bring_libraries() -> None:
    kernel = rig.find_kernel()
    spec = rig.initramfs_spec(kernel, programs=["iperf3"])
    assert any(lib.name.startswith("libiperf") for lib in spec.libraries)
    first = rig.build_initramfs(spec)
    inode = first.stat().st_ino
    assert rig.build_initramfs(spec) == first
    assert first.stat().st_ino == inode  # not rebuilt (a build renames a new file into place)
    assert first.parent == rig.cache_dir()
    other = rig.initramfs_spec(kernel, programs=["iperf3", "ip"])
    assert other.key() != spec.key()
    with pytest.raises(rig.VmError, match="not found"):
        rig.resolve_modules(kernel, ["no_such_module_vnvm"])


def test_vhost_user_attachment(guest: rig.Guest, stub: vu.VhostUserStub) -> None:
    """QEMU took the command line, shared the guest RAM as a memfd, and started the device
    once the guest driver loaded: the queue setup reached the backend."""
    argv = " ".join(guest.qemu_argv())
    assert "memory-backend-memfd,id=mem,size=256M,share=on" in argv
    assert "-netdev vhost-user,id=n0,chardev=vu0" in argv
    ifname = guest.ifname(VU_MAC)
    driver = guest.run(f"basename $(readlink /sys/class/net/{ifname}/device/driver)").stdout
    assert driver.strip() == "virtio_net"
    (mem_table,) = stub.requests(vu.SET_MEM_TABLE)
    assert len(mem_table.fds) == 1 and mem_table.fds[0].startswith("/memfd:mem")
    nregions, _ = struct.unpack_from("<II", mem_table.payload)
    sizes = [struct.unpack_from("<QQQQ", mem_table.payload, 8 + 32 * i)[1] for i in range(nregions)]
    assert 0 < sum(sizes) <= guest.memory_mb << 20
    assert len(stub.requests(vu.SET_VRING_KICK)) == 2  # receive and transmit queue
    assert all(m.fds for m in stub.requests(vu.SET_VRING_KICK))
    assert stub.requests(vu.SET_FEATURES)


def test_hung_guest_is_killed_with_console_tail() -> None:
    g = rig.Guest(modules=(), hang_grace=1.0, name="hang")
    with g:
        pid = g.pid
        assert pid is not None
        # Stop the command server: this command completes, but no answer ever comes.
        with pytest.raises(rig.GuestHung) as hung:
            g.run("kill -STOP $(cat /run/vnvm/server.pid)", timeout=1)
        message = str(hung.value)
        assert "no answer in time; guest killed" in message
        assert "--- console tail ---" in message
        assert "vnvm: starting command server" in message
        assert not g.alive
        assert not Path(f"/proc/{pid}").exists()
        with pytest.raises(rig.GuestDied):
            g.run("true")
    assert pid not in rig.live_guests()


def test_boot_timeout_kills_qemu() -> None:
    g = rig.Guest(modules=(), boot_timeout=0.5, name="slow")
    started = time.monotonic()
    with pytest.raises(rig.GuestBootError, match=r"within 0.5 s; guest killed") as err:
        g.start()
    assert time.monotonic() - started < 5
    assert "--- console tail ---" in str(err.value)
    assert not g.alive
    assert g.pid is not None and not Path(f"/proc/{g.pid}").exists()
    assert re.search(r"guest vnvm-slow \(pid \d+", str(err.value))
