"""Creating, attaching and configuring real TUN/TAP adapters; `ip` is the witness."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import vnetio

from tests.netutil import Netns
from tests.packets import make_frame

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]
TUNGETFEATURES = 0x800454CF
ADAPTERS = [pytest.param(vnetio.Tap, id="tap"), pytest.param(vnetio.Tun, id="tun")]
AdapterClass = type[vnetio.Tap] | type[vnetio.Tun]


def kind_of(cls: AdapterClass) -> str:
    return "tap" if cls is vnetio.Tap else "tun"


def tun_info(ns: Netns, dev: str) -> dict[str, object]:
    info: dict[str, object] = ns.link(dev)["linkinfo"]["info_data"]
    return info


@pytest.mark.parametrize("cls", ADAPTERS)
def test_name_pattern_gives_a_real_name(netns: Netns, cls: AdapterClass) -> None:
    with cls("vn%d", netns=netns.name) as adapter:
        assert re.fullmatch(r"vn\d+", adapter.name), adapter.name
        assert netns.has_link(adapter.name)
        assert adapter.created
        assert adapter.kind == kind_of(cls)
        assert tun_info(netns, adapter.name)["type"] == kind_of(cls)
        assert adapter.netns == netns.name
        assert not adapter.closed


def test_two_pattern_adapters_get_different_names(netns: Netns) -> None:
    with vnetio.Tap("vn%d", netns=netns.name) as one, vnetio.Tap("vn%d", netns=netns.name) as two:
        assert one.name != two.name
        assert {one.name, two.name} <= netns.links()


@pytest.mark.parametrize("cls", ADAPTERS)
def test_non_persistent_adapter_disappears_on_close(netns: Netns, cls: AdapterClass) -> None:
    adapter = cls("vnx0", netns=netns.name)
    assert netns.has_link("vnx0")
    assert not adapter.persistent
    assert tun_info(netns, "vnx0")["persist"] is False
    adapter.close()
    assert adapter.closed
    assert not netns.has_link("vnx0")
    adapter.close()  # idempotent


@pytest.mark.parametrize("cls", ADAPTERS)
def test_persistent_adapter_survives_close(netns: Netns, cls: AdapterClass) -> None:
    try:
        with cls("vnp0", persist=True, netns=netns.name) as adapter:
            assert adapter.persistent
            assert adapter.created
        assert netns.has_link("vnp0")
        assert tun_info(netns, "vnp0")["persist"] is True
        assert tun_info(netns, "vnp0")["type"] == kind_of(cls)
    finally:
        netns.ip("link", "del", "dev", "vnp0", check=False)


def test_set_persistent_toggles_the_kernel_flag(netns: Netns) -> None:
    try:
        with vnetio.Tap("vnp0", netns=netns.name) as adapter:
            adapter.set_persistent(True)
            assert adapter.persistent
            assert tun_info(netns, "vnp0")["persist"] is True
        assert netns.has_link("vnp0")
        with vnetio.Tap("vnp0", netns=netns.name) as again:
            assert not again.created
            assert again.persistent
            again.set_persistent(False)
            assert not again.persistent
            assert tun_info(netns, "vnp0")["persist"] is False
        assert not netns.has_link("vnp0")
    finally:
        netns.ip("link", "del", "dev", "vnp0", check=False)


@pytest.mark.parametrize("cls", ADAPTERS)
def test_attach_to_existing_adapter(netns: Netns, cls: AdapterClass) -> None:
    netns.ip("tuntap", "add", "dev", "vnold0", "mode", kind_of(cls))
    ifindex = netns.link("vnold0")["ifindex"]
    with cls("vnold0", netns=netns.name) as adapter:
        assert not adapter.created
        assert adapter.persistent
        assert adapter.name == "vnold0"
        assert adapter.ifindex == ifindex
    assert netns.has_link("vnold0")  # attaching never deletes what it did not create


@pytest.mark.parametrize(("exists", "opened_as"), [("tap", vnetio.Tun), ("tun", vnetio.Tap)])
def test_attach_with_the_wrong_kind_fails_and_says_so(
    netns: Netns, exists: str, opened_as: AdapterClass
) -> None:
    """README, "Errors": an adapter that exists as TUN vs TAP is EINVAL, saying so."""
    netns.ip("tuntap", "add", "dev", "vnold0", "mode", exists)
    with pytest.raises(OSError) as info:
        opened_as("vnold0", netns=netns.name)
    assert info.value.errno == errno.EINVAL
    message = str(info.value)
    wanted = kind_of(opened_as).upper()
    assert f"vnold0 exists as a {exists.upper()} adapter, not a {wanted}" in message, message
    assert f"open it with vnetio.{exists.capitalize()}" in message, message
    assert netns.has_link("vnold0")
    with {"tap": vnetio.Tap, "tun": vnetio.Tun}[exists]("vnold0", netns=netns.name) as right:
        assert not right.created  # the advice works


def test_second_open_of_a_single_queue_adapter_is_busy(netns: Netns) -> None:
    with vnetio.Tap("vnbusy0", netns=netns.name):
        with pytest.raises(OSError) as info:
            vnetio.Tap("vnbusy0", netns=netns.name)
        assert info.value.errno == errno.EBUSY
        # the message does not blame another process: the holder may be this one
        message = str(info.value)
        assert "vnbusy0 is already attached to another open descriptor" in message, message
        assert "in another process or in this one" in message, message


# Another process: opens (creates) the TAP, says so, and holds it until told to go on;
# then sends frames, to show the failed attach took nothing from it.
HOLDER = textwrap.dedent(
    """
    import json, sys, vnetio
    from tests.packets import make_frame
    with vnetio.Tap(sys.argv[1], netns=sys.argv[2]) as tap:
        tap.up()
        print("holding", flush=True)
        sys.stdin.readline()
        sent = tap.send_batch([make_frame(i, 60) for i in range(3)])
        print(json.dumps({"sent": sent, "tx_frames": tap.stats().tx_frames}), flush=True)
    """
)


def test_adapter_held_by_another_process_is_ebusy(netns: Netns) -> None:
    """README, "Errors": an adapter held by another process is EBUSY (saying so); the
    holder keeps its adapter."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "vnbusy1", netns.name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding", holder.stderr
        with pytest.raises(OSError) as info:
            vnetio.Tap("vnbusy1", netns=netns.name)
        assert info.value.errno == errno.EBUSY
        message = str(info.value)
        assert "vnbusy1 is already attached to another open descriptor" in message, message
        # the advice works: the command it names shows who holds the adapter
        hint = f"vnetio list --netns {netns.name}"
        assert hint in message, message
        listing = subprocess.run(
            [sys.executable, "-m", "vnetio.cli", "list", "--netns", netns.name],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        row = next(line for line in listing.stdout.splitlines() if line.startswith("vnbusy1 "))
        assert f"{holder.pid}/" in row, listing.stdout
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out, err = holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 0, err
    assert json.loads(out) == {"sent": 3, "tx_frames": 3}
    assert not netns.has_link("vnbusy1")  # the holder made it, and its close removed it


@pytest.mark.parametrize("cls", ADAPTERS)
def test_up_down_is_up(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnud0", netns=netns.name) as adapter:
        adapter.up()
        assert adapter.is_up
        assert "UP" in netns.link("vnud0")["flags"]
        adapter.down()
        assert not adapter.is_up
        assert "UP" not in netns.link("vnud0")["flags"]
        netns.ip("link", "set", "dev", "vnud0", "up")  # changed behind vnetio's back
        assert adapter.is_up


@pytest.mark.parametrize("cls", ADAPTERS)
def test_mtu_get_set(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnmtu0", netns=netns.name) as adapter:
        assert adapter.mtu == netns.link("vnmtu0")["mtu"] == 1500
        adapter.mtu = 1280
        assert adapter.mtu == 1280
        assert netns.link("vnmtu0")["mtu"] == 1280
        netns.ip("link", "set", "dev", "vnmtu0", "mtu", "9000")
        assert adapter.mtu == 9000


@pytest.mark.parametrize("cls", ADAPTERS)
def test_mtu_in_constructor(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnmtu0", mtu=4000, netns=netns.name) as adapter:
        assert adapter.mtu == 4000
        assert netns.link("vnmtu0")["mtu"] == 4000


@pytest.mark.parametrize("bad", [0, 10, 67])
def test_mtu_out_of_range_is_refused(netns: Netns, bad: int) -> None:
    with vnetio.Tap("vnmtu0", netns=netns.name) as adapter:
        with pytest.raises((ValueError, OSError)):
            adapter.mtu = bad
        assert netns.link("vnmtu0")["mtu"] == 1500


def test_frame_limit_follows_the_mtu(netns: Netns) -> None:
    with vnetio.Tap("vnmtu0", netns=netns.name) as adapter:
        adapter.up()
        adapter.mtu = 1000
        frame = b"\x02" + bytes(1000 + 14)  # fits 1500, not 1000 + 14
        with pytest.raises(ValueError):
            adapter.send(frame)
        adapter.mtu = 1500
        adapter.send(frame)


def test_frame_limit_follows_an_mtu_raised_outside_vnetio(netns: Netns) -> None:
    """`ip link set mtu 9000` behind vnetio's back: jumbo frames are then valid, on the
    adapter and on each of its queues."""
    with vnetio.Tap("vnmtu0", queues=2, netns=netns.name) as tap:
        tap.up()
        netns.ip("link", "set", "dev", "vnmtu0", "mtu", "9000")
        jumbo = make_frame(1, 9000 + 14)
        tap.queues[1].send(jumbo)
        tap.send(jumbo)
        tap.queues[0].send(jumbo)
        assert tap.stats().tx_frames == 3


def test_frame_limit_follows_an_mtu_lowered_outside_vnetio(netns: Netns) -> None:
    """`ip link set mtu 1000` behind vnetio's back: a 1200-byte frame is now too large."""
    with vnetio.Tap("vnmtu0", netns=netns.name) as tap:
        tap.up()
        netns.ip("link", "set", "dev", "vnmtu0", "mtu", "1000")
        before = netns.link("vnmtu0")["stats64"]["rx"]["packets"]
        with pytest.raises(ValueError):
            tap.send(make_frame(1, 1200))
        assert netns.link("vnmtu0")["stats64"]["rx"]["packets"] == before


def test_tap_mac_get_set(netns: Netns) -> None:
    with vnetio.Tap("vnmac0", netns=netns.name) as tap:
        assert tap.mac == netns.link("vnmac0")["address"]
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", tap.mac)
        tap.mac = "02:00:5e:10:00:99"
        assert tap.mac == "02:00:5e:10:00:99"
        assert netns.link("vnmac0")["address"] == "02:00:5e:10:00:99"
        tap.mac = "02:AB:CD:EF:01:23"
        assert netns.link("vnmac0")["address"] == "02:ab:cd:ef:01:23"


@pytest.mark.parametrize("bad", ["", "zz:00:00:00:00:00", "02:00:5e:10:00", "02:00:5e:10:00:99:01"])
def test_tap_mac_rejects_malformed(netns: Netns, bad: str) -> None:
    with vnetio.Tap("vnmac0", netns=netns.name) as tap:
        before = tap.mac
        with pytest.raises(ValueError):
            tap.mac = bad
        assert netns.link("vnmac0")["address"] == before


def test_tun_has_no_mac(netns: Netns) -> None:
    with vnetio.Tun("vntun0", netns=netns.name) as tun:
        assert not hasattr(tun, "mac")


@pytest.mark.parametrize("cls", ADAPTERS)
def test_ipv4_addresses(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnaddr0", netns=netns.name) as adapter:
        assert adapter.addresses() == []
        adapter.add_address("192.0.2.1/24")
        adapter.add_address("198.51.100.7/32")
        assert netns.addresses("vnaddr0") == {"192.0.2.1/24", "198.51.100.7/32"}
        assert set(adapter.addresses()) == {"192.0.2.1/24", "198.51.100.7/32"}
        adapter.del_address("192.0.2.1/24")
        assert netns.addresses("vnaddr0") == {"198.51.100.7/32"}
        assert adapter.addresses() == ["198.51.100.7/32"]


@pytest.mark.ipv6
@pytest.mark.parametrize("cls", ADAPTERS)
def test_ipv6_addresses(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnaddr0", netns=netns.name) as adapter:
        adapter.add_address("2001:db8::1/64")
        adapter.add_address("2001:db8:1::abcd/128")
        adapter.add_address("192.0.2.1/24")
        wanted = {"2001:db8::1/64", "2001:db8:1::abcd/128", "192.0.2.1/24"}
        assert wanted <= netns.addresses("vnaddr0")
        assert wanted <= set(adapter.addresses())
        adapter.del_address("2001:db8::1/64")
        assert "2001:db8::1/64" not in netns.addresses("vnaddr0")
        assert "2001:db8::1/64" not in adapter.addresses()
        assert "2001:db8:1::abcd/128" in adapter.addresses()


def test_duplicate_address_is_an_os_error(netns: Netns) -> None:
    with vnetio.Tap("vnaddr0", netns=netns.name) as tap:
        tap.add_address("192.0.2.1/24")
        with pytest.raises(OSError) as info:
            tap.add_address("192.0.2.1/24")
        assert info.value.errno == errno.EEXIST


@pytest.mark.parametrize("bad", ["banana", "192.0.2.1/33", "192.0.2.256/24", "2001:db8::1/129"])
def test_malformed_address_is_a_value_error(netns: Netns, bad: str) -> None:
    with vnetio.Tap("vnaddr0", netns=netns.name) as tap:
        with pytest.raises(ValueError):
            tap.add_address(bad)
        assert netns.addresses("vnaddr0") == set()


@pytest.mark.parametrize("cls", ADAPTERS)
def test_ifindex_matches_ip(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnidx0", netns=netns.name) as adapter:
        assert adapter.ifindex == netns.link("vnidx0")["ifindex"]


@pytest.mark.parametrize("cls", ADAPTERS)
def test_fileno_is_the_tun_device(netns: Netns, cls: AdapterClass) -> None:
    with cls("vnfd0", netns=netns.name) as adapter:
        st = os.fstat(adapter.fileno())
        assert stat.S_ISCHR(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (10, 200)
        assert len(adapter.queues) == 1


def test_tun_features_match_the_kernel() -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        raw = struct.unpack("I", fcntl.ioctl(fd, TUNGETFEATURES, b"\0" * 4))[0]
    finally:
        os.close(fd)
    assert vnetio.tun_features() == raw
    core = vnetio._core
    for flag in (core.IFF_TUN, core.IFF_TAP, core.IFF_NO_PI, core.IFF_MULTI_QUEUE):
        assert vnetio.tun_features() & flag
