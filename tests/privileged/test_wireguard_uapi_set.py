"""``wg set``/``wg setconf``/``wg addconf`` (wireguard-tools' own ``wg``) on a vnetio interface
served with ``uapi=True``, against wireguard-go: namespace A holds vnetio's TUN, namespace B
wireguard-go (the rig of test_wireguard_go.py); ``wg show NAME dump`` checks the state, and
pings through the tunnel check that a peer added by ``wg set`` carries traffic."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vnetio import wireguard
from vnetio.wireguard import uapi

from tests.netutil import need, random_suffix
from tests.privileged.test_wireguard_go import PORT_A, PORT_B, Rig, go_rig, ping

pytestmark = pytest.mark.privileged


def wg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [need("wg", "wireguard-tools"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check:
        assert result.returncode == 0, (args, result.stderr)
    return result


def dump(name: str) -> tuple[list[str], dict[str, list[str]]]:
    """``wg show NAME dump``: the interface's fields, and each peer's by public key."""
    lines = [line.split("\t") for line in wg("show", name, "dump").stdout.splitlines()]
    return lines[0], {fields[0]: fields[1:] for fields in lines[1:]}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with go_rig(tmp_path) as made:
        yield made


@pytest.fixture
def served(rig: Rig) -> Iterator[tuple[Rig, wireguard.Interface]]:
    """vnetio's interface in A with no peer, served at /var/run/wireguard/NAME.sock."""
    iface = wireguard.Interface(
        rig.key_a, tun=f"vnwgs{random_suffix(2)}", netns=rig.a.name, listen_port=PORT_A,
        addresses=["10.9.0.1/24", "fd09::1/64"], uapi=True,
    )  # fmt: skip
    try:
        yield rig, iface
    finally:
        iface.close()


def name_of(iface: wireguard.Interface) -> str:
    assert iface.tun is not None
    return iface.tun.name


def go_public(rig: Rig) -> str:
    return wireguard.pubkey(rig.key_b)


def add_go_with_wg_set(rig: Rig, name: str) -> None:
    wg("set", name, "peer", go_public(rig), "allowed-ips", "10.9.0.2/32,fd09::2/128",
       "endpoint", f"192.0.2.2:{PORT_B}", "persistent-keepalive", "25")  # fmt: skip


def test_wg_set_adds_a_peer_that_carries_traffic_and_remove_takes_it_away(
    served: tuple[Rig, wireguard.Interface],
) -> None:
    rig, iface = served
    name = name_of(iface)
    assert not ping(rig.a, "10.9.0.2", count=1), "a peer before wg set added one"
    add_go_with_wg_set(rig, name)
    device, peers = dump(name)
    assert device[1:4] == [iface.public_key, str(PORT_A), "off"], device
    psk, endpoint, allowed, _, _, _, keepalive = peers[go_public(rig)]
    assert (psk, endpoint, keepalive) == ("(none)", f"192.0.2.2:{PORT_B}", "25")
    assert allowed == "10.9.0.2/32,fd09::2/128"
    assert ping(rig.a, "10.9.0.2"), "vnetio → wireguard-go, IPv4"
    assert ping(rig.b, "10.9.0.1"), "wireguard-go → vnetio, IPv4"
    assert ping(rig.a, "fd09::2"), "vnetio → wireguard-go, IPv6"
    _, peers = dump(name)
    handshake, rx, tx = (int(x) for x in peers[go_public(rig)][3:6])
    assert handshake > 0 and rx > 0 and tx > 0, peers
    # Allowed IPs added with a second `wg set` (replacing, as wg always sends them).
    wg("set", name, "peer", go_public(rig), "allowed-ips", "10.9.0.2/32,10.9.8.0/24")
    _, peers = dump(name)
    assert peers[go_public(rig)][2] == "10.9.0.2/32,10.9.8.0/24"
    assert int(peers[go_public(rig)][3]) == handshake, "the session was restarted"
    wg("set", name, "peer", go_public(rig), "remove")
    assert dump(name)[1] == {}
    no_route = iface.stats()["drops"]["no_route"]
    assert not ping(rig.a, "10.9.0.2", count=1)
    assert iface.stats()["drops"]["no_route"] > no_route


def test_wg_setconf_and_addconf(served: tuple[Rig, wireguard.Interface], tmp_path: Path) -> None:
    rig, iface = served
    name = name_of(iface)
    other = wireguard.pubkey(wireguard.genkey())
    psk = wireguard.genkey()
    conf = tmp_path / "set.conf"
    conf.write_text(
        f"[Interface]\nPrivateKey = {rig.key_a}\nListenPort = {PORT_A}\n\n"
        f"[Peer]\nPublicKey = {go_public(rig)}\nAllowedIPs = 10.9.0.2/32\n"
        f"Endpoint = 192.0.2.2:{PORT_B}\n"
    )
    wg("setconf", name, str(conf))
    assert ping(rig.a, "10.9.0.2")
    more = tmp_path / "more.conf"
    more.write_text(
        f"[Peer]\nPublicKey = {other}\nPresharedKey = {psk}\nAllowedIPs = 10.9.5.0/24\n"
    )
    wg("addconf", name, str(more))
    _, peers = dump(name)
    assert set(peers) == {go_public(rig), other}
    assert peers[other][0] == psk and peers[other][2] == "10.9.5.0/24"
    assert iface.preshared_key_of(other) == psk
    assert ping(rig.a, "10.9.0.2"), "addconf disturbed the first peer"
    # setconf replaces every peer: only `other` remains.
    only_other = tmp_path / "only.conf"
    only_other.write_text(f"[Interface]\nPrivateKey = {rig.key_a}\n\n" + more.read_text())
    wg("setconf", name, str(only_other))
    assert set(dump(name)[1]) == {other}
    assert not ping(rig.a, "10.9.0.2", count=1)


def test_wg_set_listen_port_rebinds_and_the_peer_follows(
    served: tuple[Rig, wireguard.Interface],
) -> None:
    rig, iface = served
    name = name_of(iface)
    add_go_with_wg_set(rig, name)
    assert ping(rig.a, "10.9.0.2")
    new_port = PORT_A + 17
    wg("set", name, "listen-port", str(new_port))
    assert dump(name)[0][2] == str(new_port) and iface.listen_port == new_port
    bound = rig.a.exec("ss", "-Hulnp")
    assert f":{new_port} " in bound and f":{PORT_A} " not in bound, bound
    # vnetio's next datagram comes from the new port: wireguard-go roams to it.
    assert ping(rig.a, "10.9.0.2"), "vnetio → wireguard-go after the port changed"
    assert ping(rig.b, "10.9.0.1"), "wireguard-go → vnetio after the port changed"
    endpoints = rig.go.wg("show", rig.go.name, "endpoints").split()
    assert endpoints[1] == f"192.0.2.1:{new_port}", endpoints


HOLD_PORT = (
    "import socket, sys; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
    "s.bind(('::', 51999)); print('bound', flush=True); sys.stdin.read()"
)


def raw_set(name: str, text: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(uapi.socket_path(name)))
        conn.sendall(text.encode())
        return conn.recv(4096).decode()


def test_refused_requests_leave_the_interface_as_it_was(
    served: tuple[Rig, wireguard.Interface],
) -> None:
    rig, iface = served
    name = name_of(iface)
    add_go_with_wg_set(rig, name)
    assert ping(rig.a, "10.9.0.2")

    def configured() -> tuple[list[str], dict[str, tuple[str, ...]]]:
        device, peers = dump(name)
        return device, {k: (v[0], v[1], v[2], v[6]) for k, v in peers.items()}  # not counters

    before = configured()
    stranger = wireguard.pubkey(wireguard.genkey())
    # A port some other socket in namespace A holds: refused while binding, so neither the
    # port nor the peer the same command adds changes.
    holder = subprocess.Popen(
        ["ip", "netns", "exec", rig.a.name, sys.executable, "-c",
         HOLD_PORT],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
        busy = wg("set", name, "listen-port", "51999", "peer", stranger, "allowed-ips",
                  "10.9.6.0/24", check=False)  # fmt: skip
        assert busy.returncode != 0 and "Address already in use" in busy.stderr, busy
    finally:
        holder.communicate(input="", timeout=10)
    assert configured() == before
    # Removing the private key: a vnetio interface always has one.
    nokey = wg("set", name, "private-key", "/dev/null", check=False)
    assert nokey.returncode != 0 and "Operation not supported" in nokey.stderr, nokey
    # Malformed requests (wg itself never sends these): a good line, then a bad one.
    bad = f"set=1\nreplace_peers=true\npublic_key={'ab' * 32}\nallowed_ip=10.0.0.0/40\n\n"
    assert raw_set(name, bad) == f"errno={-errno.EINVAL}\n\n"
    assert raw_set(name, "set=1\nlisten_port\n\n") == f"errno={-errno.EPROTO}\n\n"
    assert configured() == before
    assert ping(rig.a, "10.9.0.2"), "the tunnel stopped after refused requests"


def test_wg_set_fwmark_marks_the_tunnel_datagrams(
    served: tuple[Rig, wireguard.Interface],
) -> None:
    rig, iface = served
    name = name_of(iface)
    add_go_with_wg_set(rig, name)
    assert ping(rig.a, "10.9.0.2")
    # Marked datagrams are refused by a policy rule in A: the mark is on the socket.
    rig.a.ip("rule", "add", "fwmark", "0x77", "prohibit")
    wg("set", name, "fwmark", "0x77")
    assert dump(name)[0][3] == "0x77" and iface.fwmark == 0x77
    send_errors = iface.stats()["drops"]["send_error"]
    assert not ping(rig.a, "10.9.0.2", count=2)
    assert iface.stats()["drops"]["send_error"] > send_errors
    wg("set", name, "fwmark", "off")
    assert dump(name)[0][3] == "off" and iface.fwmark == 0
    assert ping(rig.a, "10.9.0.2")
