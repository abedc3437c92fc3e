"""``vnetio.VhostUserNet`` without a guest: construction, errors before anything is
created, the adapter interface (filters, asyncio, close), and what a send does while no
guest is connected. (tests/vm/test_vhost_user.py runs it against a real guest.)"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from pathlib import Path

import pytest
import vnetio

FRAME = bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + bytes(46)


def test_a_backend_listens_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "vm.sock"
    with vnetio.VhostUserNet(path, mac="02:00:00:00:00:07", queues=2) as vm:
        assert path.is_socket()
        assert (vm.connected, vm.features, vm.mac) == (False, frozenset(), "02:00:00:00:00:07")
        assert {"version_1", "mrg_rxbuf", "event_idx", "mq", "guest_tso4"} <= vm.offered_features
        assert [q.index for q in vm.queues] == [0, 1]
        assert str(vm.socket_path) == str(path) and vm.kind == "tap"
        assert vm.wait_connected(timeout=0.1) is False
        # A frontend may connect at once (a plain socket client here: no protocol spoken).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
    assert not path.exists(), "close() removes the socket"
    assert vm.closed


def test_offload_off_offers_no_offload(tmp_path: Path) -> None:
    with vnetio.VhostUserNet(tmp_path / "s", offload=False) as vm:
        assert not {"csum", "guest_csum", "host_tso4", "guest_tso4"} & vm.offered_features


def test_bad_arguments_are_clear_errors_before_anything_is_created(tmp_path: Path) -> None:
    path = tmp_path / "vm.sock"
    for kwargs, message in [
        ({"queues": 0}, "queues must be between 1 and 16"),
        ({"mtu": 20}, "mtu must be between 68 and 65535"),
        ({"mac": "nope"}, "MAC"),
        ({"rx_mode": "bulk"}, "rx_mode must be"),
        ({"offload": False, "rx_mode": "superframes"}, "needs offload=True"),
        ({"overflow": "block"}, "overflow must be"),
        ({"send_timeout": -1.0}, "send_timeout"),
    ]:
        with pytest.raises(ValueError, match=message):
            vnetio.VhostUserNet(path, **kwargs)  # type: ignore[arg-type]
        assert not path.exists()


def test_a_socket_in_use_is_refused_and_a_stale_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "vm.sock"
    with vnetio.VhostUserNet(path), pytest.raises(OSError, match="vm.sock"):
        vnetio.VhostUserNet(path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # left behind, nobody listening
    with vnetio.VhostUserNet(path) as vm:
        assert not vm.connected


def test_sends_without_a_guest_are_dropped_and_counted_or_refused(tmp_path: Path) -> None:
    with vnetio.VhostUserNet(tmp_path / "a", send_timeout=0.0) as vm:
        vm.send_batch([FRAME] * 3)
        stats, vstats = vm.stats(), vm.vhost_stats()
        assert (stats.tx_frames, stats.tx_dropped) == (0, 3)
        assert vstats.dropped_no_guest == 3 and vstats.as_dict()["dropped_no_guest"] == 3
    with vnetio.VhostUserNet(tmp_path / "b", send_timeout=0.0, overflow="error") as vm:
        with pytest.raises(OSError, match="no guest driver is running; wait_connected") as e:
            vm.send_batch([FRAME] * 2)
        assert e.value.errno == errno.ENOTCONN
        assert vm.stats().tx_frames == 0


def test_adapter_interface_filters_and_close_wakes_a_reader(tmp_path: Path) -> None:
    with vnetio.VhostUserNet(tmp_path / "s") as vm:
        assert vm.set_filter("udp") == "userspace"
        assert vm.filter == "udp"
        with pytest.raises(ValueError, match="no kernel side"):
            vm.set_filter("udp", placement="kernel")
        assert vm.set_filter(None) is None
        errors: list[Exception] = []

        def reader() -> None:
            try:
                vm.recv_batch(timeout=30)
            except Exception as exc:  # noqa: BLE001 (the test asserts which one)
                errors.append(exc)

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.2)
        started = time.monotonic()
        vm.close()
        t.join(timeout=5)
        assert not t.is_alive() and time.monotonic() - started < 2
        assert errors and isinstance(errors[0], vnetio.AdapterClosedError)


def test_asyncio_receive_times_out_without_a_guest(tmp_path: Path) -> None:
    async def main() -> int:
        with vnetio.VhostUserNet(tmp_path / "s") as vm:
            batch = await vm.recv_batch_async(timeout=0.1)
            return len(batch)

    assert asyncio.run(main()) == 0
