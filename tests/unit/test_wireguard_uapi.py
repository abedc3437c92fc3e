"""WireGuard's userspace API without root: the ``set=1`` parser, and a :class:`uapi.Server`
for an in-process interface in a temporary run directory, spoken to in the protocol's own text
(``wg`` itself is driven in tests/privileged/test_wireguard_uapi_set.py)."""

from __future__ import annotations

import base64
import errno
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from vnetio import wireguard
from vnetio.wireguard import Interface, uapi
from vnetio.wireguard.uapi import PeerChange, SetRequest, UapiError, parse_set


def hexkey(b64: str) -> str:
    return base64.b64decode(b64).hex()


PEER = wireguard.pubkey(wireguard.genkey())
PSK = wireguard.genkey()


def test_a_full_request_as_wg_sends_it() -> None:
    private = wireguard.genkey()
    text = (
        "set=1\n"
        f"private_key={hexkey(private)}\n"
        "listen_port=51820\n"
        "fwmark=66\n"
        "replace_peers=true\n"
        f"public_key={hexkey(PEER)}\n"
        f"preshared_key={hexkey(PSK)}\n"
        "endpoint=[2001:db8::1]:51820\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.0.0.7/24\n"
        "allowed_ip=fd00::1/64\n"
        "protocol_version=1\n"
        "\n"
    )
    assert parse_set(text) == SetRequest(
        private_key=private,
        listen_port=51820,
        fwmark=66,
        replace_peers=True,
        peers=[
            PeerChange(
                PEER,
                preshared_key=PSK,
                endpoint="[2001:db8::1]:51820",
                persistent_keepalive=25,
                replace_allowed_ips=True,
                allowed_ips=["10.0.0.0/24", "fd00::/64"],  # host bits cleared, as wg does
            )
        ],
    )


def test_remove_update_only_and_the_order_of_replace_allowed_ips() -> None:
    other = wireguard.pubkey(wireguard.genkey())
    text = (
        f"public_key={hexkey(PEER)}\nremove=true\n"
        f"public_key={hexkey(other)}\nupdate_only=true\n"
        "allowed_ip=10.1.0.0/16\nreplace_allowed_ips=true\nallowed_ip=10.2.0.0/16\n"
    )
    request = parse_set(text)
    assert request.peers == [
        PeerChange(PEER, remove=True),
        # As wireguard-go applies it: what came before replace_allowed_ips is replaced too.
        PeerChange(other, update_only=True, replace_allowed_ips=True, allowed_ips=["10.2.0.0/16"]),
    ]


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        ("no equals sign", errno.EPROTO, "not key=value"),
        ("bogus=1", errno.EINVAL, "not a key"),
        ("private_key=abc", errno.EINVAL, "not 64 hex"),
        ("private_key=" + "zz" * 32, errno.EINVAL, "not hex"),
        ("listen_port=65536", errno.EINVAL, "more than 65535"),
        ("listen_port=-1", errno.EINVAL, "not a decimal"),
        ("fwmark=0x10", errno.EINVAL, "not a decimal"),
        ("replace_peers=false", errno.EINVAL, "only value"),
        ("allowed_ip=10.0.0.0/8", errno.EINVAL, "before any public_key"),
        (f"public_key={hexkey(PEER)}\nallowed_ip=10.0.0.0/33", errno.EINVAL, "more than 32"),
        (f"public_key={hexkey(PEER)}\nallowed_ip=10.0.0.1", errno.EINVAL, "prefix length"),
        (f"public_key={hexkey(PEER)}\nallowed_ip=fd00::/129", errno.EINVAL, "128"),
        (f"public_key={hexkey(PEER)}\nendpoint=10.0.0.1", errno.EINVAL, "port"),
        (f"public_key={hexkey(PEER)}\nendpoint=2001:db8::1:51820", errno.EINVAL, r"\[ADDRESS\]"),
        (f"public_key={hexkey(PEER)}\nendpoint=host.example:1", errno.EINVAL, "IP:PORT"),
        (f"public_key={hexkey(PEER)}\nendpoint=10.0.0.1:0", errno.EINVAL, "port"),
        (f"public_key={hexkey(PEER)}\npersistent_keepalive_interval=70000", errno.EINVAL, "65535"),
        (f"public_key={hexkey(PEER)}\nprotocol_version=2", errno.EINVAL, "version 1"),
        (f"public_key={hexkey(PEER)}\nremove=yes", errno.EINVAL, "only value"),
        (f"public_key={hexkey(PEER)}\nlisten_port=1", errno.EINVAL, "interface key after"),
        (f"public_key={hexkey(PEER)}\npublic_key={hexkey(PEER)}", errno.EINVAL, "twice"),
    ],
)
def test_malformed_requests_get_their_errno(line: str, code: int, words: str) -> None:
    with pytest.raises(UapiError, match=words) as caught:
        parse_set(f"set=1\n{line}\n\n")
    assert caught.value.errno == code


def test_the_request_ends_at_the_blank_line() -> None:
    assert parse_set("set=1\nlisten_port=1\n\nbogus=1\n").listen_port == 1


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Interface, Path]]:
    monkeypatch.setattr(uapi, "RUN_DIR", tmp_path)
    iface = Interface(wireguard.genkey())
    server = uapi.Server(iface, "vnwgunit")
    try:
        yield iface, server.path
    finally:
        server.close()
        iface.close()


def talk(path: Path, text: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(text.encode())
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


def state(iface: Interface) -> tuple[object, ...]:
    return (iface.private_key, iface.listen_port, iface.fwmark, iface.peers())


def test_set_then_get_through_the_socket(served: tuple[Interface, Path]) -> None:
    iface, path = served
    answer = talk(
        path,
        f"set=1\npublic_key={hexkey(PEER)}\npreshared_key={hexkey(PSK)}\n"
        "endpoint=127.0.0.1:51999\npersistent_keepalive_interval=7\n"
        "allowed_ip=10.3.0.0/16\nallowed_ip=fd03::/64\n\n",
    )
    assert answer == "errno=0\n\n"
    (peer,) = iface.peers()
    assert peer.public_key == PEER and peer.endpoint == "127.0.0.1:51999"
    assert peer.allowed_ips == ("10.3.0.0/16", "fd03::/64") and peer.persistent_keepalive == 7
    assert iface.preshared_key_of(PEER) == PSK
    dump = talk(path, "get=1\n\n")
    assert f"public_key={hexkey(PEER)}\npreshared_key={hexkey(PSK)}\n" in dump
    assert "allowed_ip=10.3.0.0/16\nallowed_ip=fd03::/64\nerrno=0\n\n" in dump
    # Only what the request names changes: the endpoint stays, the keepalive goes off,
    # the preshared key is removed (all zeros), AllowedIPs are added to.
    zero = "0" * 64
    update = f"set=1\npublic_key={hexkey(PEER)}\npersistent_keepalive_interval=0\n"
    update += f"preshared_key={zero}\nallowed_ip=10.4.0.1/32\n\n"
    assert talk(path, update) == "errno=0\n\n"
    (peer,) = iface.peers()
    assert peer.endpoint == "127.0.0.1:51999" and peer.persistent_keepalive is None
    assert peer.allowed_ips == ("10.3.0.0/16", "fd03::/64", "10.4.0.1/32")
    assert iface.preshared_key_of(PEER) is None and not peer.preshared_key
    assert talk(path, f"set=1\npublic_key={hexkey(PEER)}\nremove=true\n\n") == "errno=0\n\n"
    assert iface.peers() == []


def test_a_refused_request_changes_nothing(served: tuple[Interface, Path]) -> None:
    iface, path = served
    iface.add_peer(PEER, allowed_ips=["10.3.0.0/16"])
    before = state(iface)
    other = wireguard.pubkey(wireguard.genkey())
    good_then_bad = (
        f"set=1\nlisten_port=0\nreplace_peers=true\npublic_key={hexkey(other)}\n"
        "allowed_ip=10.5.0.0/16\nallowed_ip=10.6.0.0/99\n\n"
    )
    assert talk(path, good_then_bad) == f"errno={-errno.EINVAL}\n\n"
    assert talk(path, "set=1\nlisten_port\n\n") == f"errno={-errno.EPROTO}\n\n"
    no_key = f"set=1\nprivate_key={'0' * 64}\n\n"
    assert talk(path, no_key) == f"errno={-errno.EOPNOTSUPP}\n\n"
    # A port in use: found while binding, before the peers would have changed.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        busy = taken.getsockname()[1]
        port_in_use = f"set=1\nlisten_port={busy}\nreplace_peers=true\n\n"
        assert talk(path, port_in_use) == f"errno={-errno.EADDRINUSE}\n\n"
    assert talk(path, "nonsense=1\n\n") == f"errno={-errno.EINVAL}\n\n"
    assert state(iface) == before


def test_a_new_listen_port_and_key_through_the_socket(served: tuple[Interface, Path]) -> None:
    """The far end b talks to a through the socket-changed port and key."""
    a, path = served
    with Interface(wireguard.genkey()) as b:
        old_port = a.listen_port
        new_key = wireguard.genkey()
        set_key_and_port = f"set=1\nprivate_key={hexkey(new_key)}\nlisten_port=0\n"
        set_key_and_port += f"public_key={hexkey(b.public_key)}\n"
        set_key_and_port += f"endpoint=127.0.0.1:{b.listen_port}\nallowed_ip=10.9.0.2/32\n\n"
        assert talk(path, set_key_and_port) == "errno=0\n\n"
        assert a.listen_port != old_port and a.public_key == wireguard.pubkey(new_key)
        assert a.private_key == new_key
        dump = talk(path, "get=1\n\n")
        assert f"private_key={hexkey(new_key)}\nlisten_port={a.listen_port}\n" in dump
        b.add_peer(a.public_key, allowed_ips=["10.9.0.1/32"])
        packet = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP() / Raw(b"after set"))
        a.send(packet)
        assert b.recv(timeout=5) == packet
        (seen,) = b.peers()
        assert seen.endpoint == f"127.0.0.1:{a.listen_port}"


def test_an_endpoint_change_keeps_the_session() -> None:
    a, b = Interface(wireguard.genkey()), Interface(wireguard.genkey())
    with a, b:
        a.add_peer(b.public_key, endpoint=f"127.0.0.1:{b.listen_port}", allowed_ips=["10.9.0.2/32"])
        b.add_peer(a.public_key, allowed_ips=["10.9.0.1/32"])
        a.send(bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP() / Raw(b"one")))
        assert b.recv(timeout=5)
        handshakes = a.stats()["handshakes"] + b.stats()["handshakes"]
        a.apply(SetRequest(peers=[PeerChange(b.public_key, endpoint=f"127.0.0.1:{b.listen_port}")]))
        a.apply(SetRequest(peers=[PeerChange(b.public_key, allowed_ips=["10.9.7.0/24"])]))
        a.send(bytes(IP(src="10.9.0.1", dst="10.9.7.7") / UDP() / Raw(b"two")))
        assert IP(b.recv(timeout=5)).dst == "10.9.7.7"
        time.sleep(0.2)
        assert a.stats()["handshakes"] + b.stats()["handshakes"] == handshakes
        # A bad value is refused by the core too, before anything changes.
        with pytest.raises(ValueError, match="allowed IP"):
            a.apply(
                SetRequest(
                    listen_port=0,
                    peers=[PeerChange(b.public_key, allowed_ips=["10.0.0.0/40"])],
                )
            )
        assert a.peers()[0].allowed_ips == ("10.9.0.2/32", "10.9.7.0/24")
