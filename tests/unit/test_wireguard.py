"""WireGuard without root: keys, the wg-quick format, and two in-process interfaces over UDP
on the loopback address (vnetio to vnetio, in-process mode)."""

from __future__ import annotations

import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw
from vnetio import wireguard
from vnetio.wireguard import Config, Interface

from tests.netutil import need
from tests.waiting import settle

CONF = """
# written by hand, as users do
[Interface]
PrivateKey = {key}
Address = 10.9.0.1/24, fd09::1/64
ListenPort = 0
MTU = 1380
DNS = 10.9.0.53
PostUp = iptables -A FORWARD -i %i -j ACCEPT

[Peer]
PublicKey = {peer}
PresharedKey = {psk}
AllowedIPs = 10.9.0.2/32
AllowedIPs = fd09::2/128
Endpoint = 127.0.0.1:51999
PersistentKeepalive = 25
"""


def test_keys_round_trip_and_match_wireguard_tools() -> None:
    key = wireguard.genkey()
    assert len(key) == 44 and key.endswith("=")
    assert wireguard.pubkey(key) == wireguard.pubkey(key)
    wg = need("wg", "wireguard-tools")
    theirs = subprocess.run([wg, "pubkey"], input=key, capture_output=True, text=True, check=True)
    assert theirs.stdout.strip() == wireguard.pubkey(key)
    their_key = subprocess.run([wg, "genkey"], capture_output=True, text=True, check=True)
    ours = wireguard.pubkey(their_key.stdout.strip())
    again = subprocess.run(
        [wg, "pubkey"], input=their_key.stdout, capture_output=True, text=True, check=True
    )
    assert ours == again.stdout.strip()


@pytest.mark.parametrize(
    ("bad", "words"),
    [("not base64!", "not base64"), ("AAAA", "3 bytes long"), ("", "0 bytes long")],
)
def test_bad_keys_name_the_problem(bad: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        wireguard.pubkey(bad)
    assert "wg genkey" in str(info.value)


def test_the_wg_quick_format() -> None:
    key, peer, psk = wireguard.genkey(), wireguard.pubkey(wireguard.genkey()), wireguard.genkey()
    config = Config.parse(CONF.format(key=key, peer=peer, psk=psk))
    assert config.private_key == key
    assert config.addresses == ("10.9.0.1/24", "fd09::1/64")
    assert (config.listen_port, config.mtu) == (0, 1380)
    (p,) = config.peers
    assert p.public_key == peer and p.preshared_key == psk
    assert p.allowed_ips == ("10.9.0.2/32", "fd09::2/128")
    assert (p.endpoint, p.persistent_keepalive) == ("127.0.0.1:51999", 25)
    assert config.ignored == (("Interface", "DNS"), ("Interface", "PostUp"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[Interface]\nAddress = 10.0.0.1/24\n", "no PrivateKey"),
        ("PrivateKey = x\n", "before any"),
        ("[Interface]\nPrivateKey = x\n[Wat]\n", "unknown section"),
        ("[Interface]\nPrivateKey = x\n[Peer]\nAllowedIPs = 10.0.0.0/8\n", "no PublicKey"),
        ("[Interface]\nPrivateKey = x\nListenPort = many\n", "not a number"),
        ("[Interface]\nPrivateKey\n", "not KEY = VALUE"),
    ],
)
def test_bad_configurations_name_the_line(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Config.parse(text)


def test_from_config_reports_what_it_does_not_use(tmp_path: Path) -> None:
    key, peer, psk = wireguard.genkey(), wireguard.pubkey(wireguard.genkey()), wireguard.genkey()
    path = tmp_path / "wg0.conf"
    path.write_text(CONF.format(key=key, peer=peer, psk=psk))
    with pytest.warns(UserWarning, match=r"Interface\.DNS, Interface\.PostUp"):
        iface = Interface.from_config(path)
    with iface:
        assert iface.public_key == wireguard.pubkey(key)
        (p,) = iface.peers()
        assert p.public_key == peer and p.preshared_key and p.persistent_keepalive == 25
        assert p.allowed_ips == ("10.9.0.2/32", "fd09::2/128")
        assert p.latest_handshake is None
        assert iface.mtu == 1380


def test_bad_peer_arguments_are_refused_before_anything_changes() -> None:
    with Interface(wireguard.genkey()) as iface:
        peer = wireguard.pubkey(wireguard.genkey())
        with pytest.raises(ValueError, match="allowed IP"):
            iface.add_peer(peer, allowed_ips=["10.0.0.0/33"])
        with pytest.raises(ValueError, match="endpoint"):
            iface.add_peer(peer, endpoint="no port here")
        with pytest.raises(ValueError, match="own public key"):
            iface.add_peer(iface.public_key)
        assert iface.peers() == []


def pair(**peer_options: object) -> tuple[Interface, Interface]:
    a, b = Interface(wireguard.genkey()), Interface(wireguard.genkey())
    a.add_peer(
        b.public_key,
        endpoint=f"127.0.0.1:{b.listen_port}",
        allowed_ips=["10.9.0.2/32", "fd09::2/128"],
        **peer_options,  # type: ignore[arg-type]
    )
    b.add_peer(a.public_key, allowed_ips=["10.9.0.1/32", "fd09::1/128"])
    return a, b


def test_in_process_pair_carries_ipv4_and_ipv6_both_ways() -> None:
    a, b = pair()
    with a, b:
        packets = [
            bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1000 + i) / Raw(b"x" * i))
            for i in range(50)
        ] + [bytes(IPv6(src="fd09::1", dst="fd09::2") / ICMP() / Raw(b"six"))]
        assert a.send_batch(packets) == len(packets)
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(packets) and time.monotonic() < deadline:
            got += [bytes(f) for f in b.recv_batch(256, timeout=0.5)]
        assert got == packets
        reply = bytes(IP(src="10.9.0.2", dst="10.9.0.1") / UDP() / Raw(b"back"))
        b.send(reply)
        assert a.recv(timeout=5) == reply
        # The sender counts a batch once sendmmsg returns, which may be after the receiver
        # has it: the counters are read until they agree, within a deadline.
        deadline = time.monotonic() + 5
        while True:
            sa, sb = a.stats(), b.stats()
            counted = sa["tx_packets"] + sa["queued"] >= len(packets)
            if (counted and sb["rx_packets"] == len(packets)) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert counted and sb["rx_packets"] == len(packets), (sa, sb)
        assert sum(sa["drops"].values()) == sum(sb["drops"].values()) == 0, (sa, sb)
        (peer,) = b.peers()
        assert peer.endpoint == f"127.0.0.1:{a.listen_port}"  # learned from the handshake


def test_in_process_datagram_faults_are_counted_and_nothing_leaks() -> None:
    a, b = pair()
    with a, b:
        first = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP() / Raw(b"ok"))
        a.send(first)
        assert b.recv(timeout=5) == first
        spoofed = bytes(IP(src="10.9.0.99", dst="10.9.0.2") / UDP() / Raw(b"spoof"))
        a.send(spoofed)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for junk in (b"\x01", b"\x04\x00\x00\x00" + bytes(10), bytes([0x7F]) * 100):
                probe.sendto(junk, ("127.0.0.1", b.listen_port))
        finally:
            probe.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            drops = b.stats()["drops"]
            if drops["disallowed_source"] == 1 and drops["malformed"] == 3:
                break
            time.sleep(0.02)
        drops = b.stats()["drops"]
        assert (drops["disallowed_source"], drops["malformed"]) == (1, 3), drops
        with pytest.raises(TimeoutError):
            b.recv(timeout=0.3)


def test_the_plaintext_side_takes_filters() -> None:
    a, b = pair()
    with a, b:
        b.set_filter("udp dst port 53")  # (scapy's UDP source port is 53 by default)
        other = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(dport=9) / Raw(b"no"))
        dns = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(dport=53) / Raw(b"yes"))
        a.send_batch([other, dns])
        assert b.recv(timeout=5) == dns
        assert b.adapter.stats().rx_filtered == 1


def test_close_is_prompt_and_frees_the_port() -> None:
    iface = Interface(wireguard.genkey())
    port = iface.listen_port
    start = time.monotonic()
    iface.close()
    assert time.monotonic() - start < 1.0
    assert iface.closed
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.bind(("::", port))
    finally:
        s.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iface.close()  # again: nothing happens


def test_in_process_capture_and_asyncio(tmp_path: Path) -> None:
    """The plaintext side is an ordinary adapter: capture_to writes what the tunnel
    delivered (raw IP, linktype 101) and asyncio receives from it."""
    import asyncio
    import threading

    from vnetio import capture

    a, b = pair()
    with a, b:
        packets = [
            bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(dport=9) / Raw(bytes([i]) * 10))
            for i in range(5)
        ]
        sender = threading.Timer(0.3, lambda: a.send_batch(packets))
        sender.start()
        path = tmp_path / "tunnel.pcapng"
        stats = capture.capture_to(b.adapter, path, count=5, duration=10)
        sender.join()
        assert stats.captured == 5, stats
        with capture.Reader(path) as reader:
            assert reader.linktype == 101  # LINKTYPE_RAW: IP packets, as a TUN carries
            frames = [bytes(frame) for batch in reader for frame in batch]
        assert frames == packets

        async def receive() -> bytes:
            a.send(bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(dport=9) / Raw(b"async")))
            batch = await b.adapter.recv_batch_async(16, timeout=5)
            return bytes(batch[0])

        assert asyncio.run(receive()).endswith(b"async")


def test_an_unpaced_sender_loses_nothing_uncounted() -> None:
    """Small queues on both sides and a burst far larger: every packet is delivered or
    counted in a drop reason on one of the two interfaces (the kernel's UDP socket buffer
    is large enough on loopback for this burst; see stats()["drops"])."""
    a = Interface(wireguard.genkey(), capacity=64)
    b = Interface(wireguard.genkey(), capacity=64)
    a.add_peer(b.public_key, endpoint=f"127.0.0.1:{b.listen_port}", allowed_ips=["10.9.0.2/32"])
    b.add_peer(a.public_key, allowed_ips=["10.9.0.1/32"])
    with a, b:
        first = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP() / Raw(b"hello"))
        a.send(first)
        assert b.recv(timeout=5) == first  # the handshake is done
        burst = [bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(dport=9) / Raw(b"x" * 200))] * 3000
        assert a.send_batch(burst) == len(burst)

        def drained(stats: tuple[dict[str, Any], dict[str, Any]]) -> bool:
            """A sent on or dropped all it took, and B delivered (to its reader queue, full
            or not) or dropped all A sent on: the tunnels' threads are done with the burst."""
            sa, sb = stats
            sent_on, delivered = sa["tx_packets"] - 1, sb["rx_packets"] - 1
            b_lost = sum(sb["drops"].values()) - sb["drops"]["reader_queue_full"]
            return sent_on + sum(sa["drops"].values()) == len(burst) and sent_on == (
                delivered + b_lost
            )

        # Let the tunnels drain what they took, B's reader queue unread (it overflows): not
        # a fixed wait, their threads take their time on a loaded machine; a packet lost
        # uncounted keeps this from settling, and the asserts below name it.
        settle(lambda: (a.stats(), b.stats()), drained, timeout=30)
        got = 0
        while batch := b.recv_batch(256, timeout=0.2):  # empty: nothing came for 0.2 s
            got += len(batch)
        sa, sb = a.stats(), b.stats()
        sent_on = sa["tx_packets"] - 1
        assert sa["drops"]["tunnel_queue_full"] + sent_on + sum(
            n for reason, n in sa["drops"].items() if reason != "tunnel_queue_full"
        ) == len(burst), sa
        delivered = sb["rx_packets"] - 1
        assert delivered == got + sb["drops"]["reader_queue_full"], sb
        lost_between = (
            sent_on
            - delivered
            - sum(n for reason, n in sb["drops"].items() if reason != "reader_queue_full")
        )
        assert lost_between == 0, (sa, sb)
        assert sa["drops"]["tunnel_queue_full"] > 0  # the burst really overflowed


def test_the_tunnel_captures_its_plaintext_both_ways(tmp_path: Path) -> None:
    """capture_to on the interface (the tunnel's own copy, the way to see a TUN-mode
    interface's traffic) records what it sent and what it delivered, in order of passage."""
    import threading

    from vnetio.capture import Reader

    a, b = pair()
    with a, b:
        out = [
            bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP() / Raw(bytes([i]))) for i in range(3)
        ]
        back = bytes(IP(src="10.9.0.2", dst="10.9.0.1") / UDP() / Raw(b"back"))

        def traffic() -> None:
            a.send_batch(out)
            for _ in out:
                b.recv(timeout=5)
            b.send(back)

        worker = threading.Timer(0.2, traffic)
        worker.start()
        path = tmp_path / "a.pcapng"
        result = a.capture_to(path, count=4, duration=10)
        worker.join()
        assert result["frames"] == 4, result
        with Reader(path) as reader:
            assert reader.linktype == 101
            assert [bytes(p) for batch in reader for p in batch] == [*out, back]
        with pytest.raises(ValueError, match="count= or duration="):
            a.capture_to(path)
        with pytest.raises(OSError, match="not capturing"):
            a.stop_capture()
        a.start_capture(tmp_path / "again.pcap", format="pcap")
        with pytest.raises(OSError, match="already capturing"):
            a.start_capture(tmp_path / "third.pcap")
        assert a.stop_capture() == {"frames": 0, "bytes": 0}
