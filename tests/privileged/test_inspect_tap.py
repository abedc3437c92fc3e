"""scapy through real adapters, the kernel as the peer (each test in its own namespace).

The adapter gets 192.0.2.1/24; our side (the scapy socket) plays 192.0.2.2. The kernel
answers our ARP requests and pings through ``sr1``/``srp1``, and our answering machine
answers the kernel's ``ping``.
"""

from __future__ import annotations

import os
import time

import pytest
import vnetio
from scapy.layers.inet import ICMP, IP, ICMPEcho_am
from scapy.layers.l2 import ARP, Ether
from scapy.sendrecv import sniff
from vnetio.inspect import VnetioSocket, send_packets, to_scapy

from tests.netutil import Netns

pytestmark = pytest.mark.privileged

KERNEL_IP = "192.0.2.1"
OUR_IP = "192.0.2.2"
OUR_MAC = "02:00:00:00:00:02"
IDENT = os.getpid() & 0xFFFF


def open_tap(netns: Netns, *, static_neighbour: bool = True) -> vnetio.Tap:
    tap = vnetio.Tap("vn%d", netns=netns.name)
    try:
        tap.add_address(f"{KERNEL_IP}/24")
        tap.up()
        if static_neighbour:  # the kernel replies without asking for our MAC first
            netns.ip(
                "neigh", "replace", OUR_IP, "lladdr", OUR_MAC, "dev", tap.name, "nud", "permanent"
            )
    except BaseException:
        tap.close()
        raise
    return tap


def test_srp1_arp_request_gets_the_kernels_reply(netns: Netns) -> None:
    with open_tap(netns, static_neighbour=False) as tap, VnetioSocket(tap) as sock:
        request = Ether(src=OUR_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
            hwsrc=OUR_MAC, psrc=OUR_IP, pdst=KERNEL_IP
        )
        reply = sock.srp1(request, timeout=5, verbose=0)
        kernel_mac = tap.mac
    assert reply is not None
    assert reply[ARP].op == 2  # is-at
    assert (reply[ARP].psrc, reply[ARP].hwsrc) == (KERNEL_IP, kernel_mac)
    assert (reply[ARP].pdst, reply[Ether].dst) == (OUR_IP, OUR_MAC)


def test_sr1_echo_request_on_tap(netns: Netns) -> None:
    with open_tap(netns) as tap, VnetioSocket(tap) as sock:
        request = (
            Ether(src=OUR_MAC, dst=tap.mac)
            / IP(src=OUR_IP, dst=KERNEL_IP)
            / ICMP(id=IDENT, seq=1)
            / b"vnetio"
        )
        reply = sock.sr1(request, timeout=5, verbose=0)
    assert reply is not None
    assert (reply[IP].src, reply[IP].dst) == (KERNEL_IP, OUR_IP)
    assert reply[ICMP].type == 0 and (reply[ICMP].id, reply[ICMP].seq) == (IDENT, 1)
    assert bytes(reply[ICMP].payload) == b"vnetio"


def test_sr1_echo_request_on_tun(netns: Netns) -> None:
    with vnetio.Tun("vn%d", netns=netns.name) as tun, VnetioSocket(tun) as sock:
        tun.add_address(f"{KERNEL_IP}/24")
        tun.up()
        request = IP(src=OUR_IP, dst=KERNEL_IP) / ICMP(id=IDENT, seq=2) / b"tun"
        reply = sock.sr1(request, timeout=5, verbose=0)
    assert reply is not None and type(reply) is IP
    assert reply[ICMP].type == 0 and reply[ICMP].seq == 2
    assert bytes(reply[ICMP].payload) == b"tun"


def test_send_packets_batch_and_to_scapy(netns: Netns) -> None:
    """Many pings in one batch; the replies read back as one lazily dissected batch."""
    with open_tap(netns) as tap:
        requests = [
            Ether(src=OUR_MAC, dst=tap.mac)
            / IP(src=OUR_IP, dst=KERNEL_IP)
            / ICMP(id=IDENT, seq=i)
            / (bytes([i]) * 16)
            for i in range(32)
        ]
        assert send_packets(tap, requests) == 32
        seqs: list[int] = []
        deadline = time.monotonic() + 5
        while len(seqs) < 32 and time.monotonic() < deadline:
            frames = to_scapy(tap.recv_batch(timeout=0.2), tap.kind)
            for packet in frames:
                if ICMP in packet and packet[ICMP].type == 0 and packet[ICMP].id == IDENT:
                    assert bytes(packet[ICMP].payload) == bytes([packet[ICMP].seq]) * 16
                    seqs.append(packet[ICMP].seq)
    assert sorted(seqs) == list(range(32))


def test_filter_on_kernel_traffic(netns: Netns) -> None:
    """Only the frames the predicate keeps reach sniff: pings and ARP mixed, ICMP kept."""
    with (
        open_tap(netns) as tap,
        VnetioSocket(tap, filter=lambda frame: frame[12:14] == b"\x08\x00") as sock,
    ):
        send_packets(
            tap,
            [
                Ether(src=OUR_MAC, dst="ff:ff:ff:ff:ff:ff")
                / ARP(hwsrc=OUR_MAC, psrc=OUR_IP, pdst=KERNEL_IP),
                Ether(src=OUR_MAC, dst=tap.mac)
                / IP(src=OUR_IP, dst=KERNEL_IP)
                / ICMP(id=IDENT, seq=5),
            ],
        )
        got = sniff(opened_socket=sock, timeout=1.0)
    assert len(got) >= 1 and all(IP in p for p in got)
    assert any(ICMP in p and p[ICMP].seq == 5 and p[ICMP].type == 0 for p in got)


def test_answering_machine_answers_the_kernels_ping(netns: Netns) -> None:
    with open_tap(netns) as tap, VnetioSocket(tap) as sock:
        am = sock.am(ICMPEcho_am, verbose=0)
        am(bg=True)
        try:
            time.sleep(0.1)
            out = netns.exec("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", OUR_IP, check=False)
        finally:
            am.sniffer.stop()
    assert "3 received" in out, out
