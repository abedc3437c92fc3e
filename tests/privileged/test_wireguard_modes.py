"""vnetio to vnetio, one side on a TUN (the kernel's IP stack behind it) and the other
in-process (Python handles the plaintext): both in one namespace the test creates, over UDP
on its loopback address."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP
from scapy.packet import Raw
from vnetio import wireguard
from vnetio.capture import Reader

from tests.netutil import Netns


def test_tun_side_pings_and_exchanges_udp_with_an_in_process_side(
    netns: Netns, tmp_path: Path
) -> None:
    tun_key, app_key = wireguard.genkey(), wireguard.genkey()
    with (
        wireguard.Interface(
            tun_key, tun="vnwgm0", netns=netns.name, addresses=["10.9.0.1/24"]
        ) as kernel_side,
        wireguard.Interface(app_key, netns=netns.name) as app,
    ):
        kernel_side.add_peer(
            app.public_key,
            endpoint=f"127.0.0.1:{app.listen_port}",
            allowed_ips=["10.9.0.2/32"],
        )
        app.add_peer(kernel_side.public_key, allowed_ips=["10.9.0.0/24"])

        # The kernel pings the in-process side; Python answers each echo request. The TUN
        # side's tunnel captures the plaintext it carries (the tunnel reads the TUN itself).
        capture = tmp_path / "tunnel.pcapng"
        kernel_side.start_capture(capture)
        ping = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, "ping", "-c", "3", "-i", "0.3", "-W", "5",
             "10.9.0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        answered = 0
        while answered < 3:
            request = IP(app.recv(timeout=10))
            assert request.dst == "10.9.0.2" and request.haslayer(ICMP), request.summary()
            assert request[ICMP].type == 8
            reply = IP(src="10.9.0.2", dst=request.src) / ICMP(
                type=0, id=request[ICMP].id, seq=request[ICMP].seq
            ) / request[ICMP].payload  # fmt: skip
            app.send(bytes(reply))
            answered += 1
        out, _ = ping.communicate(timeout=30)
        assert ping.returncode == 0 and "3 received" in out, out
        assert kernel_side.stop_capture()["frames"] == 6
        with Reader(capture) as reader:
            assert reader.linktype == 101
            seen = [IP(bytes(p)) for batch in reader for p in batch]
        assert [(p[ICMP].type, p.dst) for p in seen] == [(8, "10.9.0.2"), (0, "10.9.0.1")] * 3

        # A UDP socket in the namespace hears what Python sends through the tunnel.
        script = (
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('10.9.0.1', 4000)); s.settimeout(10); print(s.recvfrom(100)[0].decode())"
        )
        listener = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, "python3", "-c", script],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        datagram = IP(src="10.9.0.2", dst="10.9.0.1") / UDP(sport=4001, dport=4000) / Raw(
            b"from python through wireguard"
        )  # fmt: skip
        out = ""
        for _ in range(20):  # until the listener has bound its socket
            app.send(bytes(datagram))
            try:
                out, _ = listener.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        assert out.strip() == "from python through wireguard"
        assert kernel_side.stats()["drops"]["disallowed_source"] == 0
        assert app.stats()["rx_packets"] >= 3 and kernel_side.stats()["rx_packets"] >= 4
