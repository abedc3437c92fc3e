"""scapy inspection (vnetio.inspect) over in-memory loopback pairs.

Lazy dissection, batched sends of scapy packets, and VnetioSocket as a scapy SuperSocket:
sniff, AsyncSniffer, sr1/srp1 and an answering machine, with filter= honoured. Also: scapy
stays optional (`import vnetio` does not import it; without it a feature says how to
install it).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import vnetio
from scapy.layers.inet import ICMP, IP, UDP, ICMPEcho_am
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw, raw
from scapy.sendrecv import AsyncSniffer, sniff
from vnetio.inspect import ScapyFrames, VnetioSocket, frame_filter, send_packets, to_scapy

BCAST = "ff:ff:ff:ff:ff:ff"
MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


@pytest.fixture
def tap_pair() -> Iterator[tuple[vnetio.Loopback, vnetio.Loopback]]:
    a, b = vnetio.loopback_pair(kind="tap")
    with a, b:
        yield a, b


@pytest.fixture
def tun_pair() -> Iterator[tuple[vnetio.Loopback, vnetio.Loopback]]:
    a, b = vnetio.loopback_pair(kind="tun")
    with a, b:
        yield a, b


def arp_request(i: int) -> Packet:
    return Ether(src=MAC_A, dst=BCAST) / ARP(hwsrc=MAC_A, psrc="192.0.2.1", pdst=f"192.0.2.{i}")


# --- to_scapy: lazy dissection -------------------------------------------------------------


def test_to_scapy_dissects_only_what_is_asked_and_caches_it() -> None:
    batch = vnetio.Batch.from_frames([bytes(arp_request(i)) for i in range(2, 12)])
    frames = to_scapy(batch, "tap")
    assert isinstance(frames, ScapyFrames)
    assert len(frames) == 10 and frames.dissected == 0
    third = frames[3]
    assert frames.dissected == 1
    assert isinstance(third, Ether) and third[ARP].pdst == "192.0.2.5"
    assert frames[3] is third  # cached, not dissected again
    assert frames[-1][ARP].pdst == "192.0.2.11"
    assert [p[ARP].pdst for p in frames[0:2]] == ["192.0.2.2", "192.0.2.3"]
    assert frames.dissected == 4
    assert frames.raw(5) == bytes(batch[5])
    assert frames.dissected == 4  # raw() does not dissect
    assert [p[ARP].pdst for p in frames] == [f"192.0.2.{i}" for i in range(2, 12)]
    with pytest.raises(IndexError):
        frames[10]
    with pytest.raises(IndexError):
        frames[-11]


def test_tun_frames_are_ip_or_ipv6() -> None:
    v4 = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP())
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=53))
    frames = to_scapy(vnetio.Batch.from_frames([v4, v6, b"\x00\x01\x02"]), kind="tun")
    assert type(frames[0]) is IP and frames[0][ICMP].type == 8
    assert type(frames[1]) is IPv6 and frames[1][UDP].dport == 53
    assert type(frames[2]) is Raw


def test_to_scapy_takes_the_receive_time(tap_pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    a, b = tap_pair
    before = time.time()
    a.send(bytes(arp_request(2)))
    frames = to_scapy(b.recv_batch(timeout=1.0))
    assert before - 1 <= float(frames[0].time) <= time.time() + 1


def test_to_scapy_refuses_a_bad_kind() -> None:
    with pytest.raises(ValueError, match="'tap' or 'tun'"):
        to_scapy(vnetio.Batch.from_frames([]), kind="eth")  # type: ignore[arg-type]


# --- send_packets ---------------------------------------------------------------------------


def test_send_packets_is_one_batch(tap_pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    a, b = tap_pair
    packets = [arp_request(i) for i in range(2, 7)]
    assert send_packets(a, [*packets, bytes(arp_request(7))]) == 6
    got = b.recv_batch(timeout=1.0).to_list()
    assert got == [bytes(p) for p in packets] + [bytes(arp_request(7))]
    assert all(p.sent_time for p in packets)
    assert send_packets(a, arp_request(9)) == 1  # a single packet is fine too


def test_send_packets_refuses_the_wrong_layer_before_sending(
    tap_pair: tuple[vnetio.Loopback, vnetio.Loopback],
    tun_pair: tuple[vnetio.Loopback, vnetio.Loopback],
) -> None:
    with pytest.raises(TypeError, match=r"packet 1 is a IP packet, but a TAP .*Ether"):
        send_packets(tap_pair[0], [arp_request(2), IP(dst="192.0.2.2") / ICMP()])
    with pytest.raises(TypeError, match="packet 0 starts with an Ethernet header"):
        send_packets(tun_pair[0], [Ether() / IP() / ICMP()])
    assert tap_pair[1].pending == 0 and tun_pair[1].pending == 0


# --- VnetioSocket ---------------------------------------------------------------------------


def test_socket_is_a_scapy_supersocket(tap_pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    from scapy.supersocket import SuperSocket

    sock = VnetioSocket(tap_pair[1])
    assert isinstance(sock, SuperSocket)
    assert sock.kind == "tap" and sock.iface == tap_pair[1].name
    assert sock.fileno() == tap_pair[1].fileno()
    assert sock.recv() is None  # nothing waiting: does not block
    sock.close()
    assert not tap_pair[1].closed  # the socket does not own the adapter by default


def test_sniff_reads_batches_frame_by_frame(
    tap_pair: tuple[vnetio.Loopback, vnetio.Loopback],
) -> None:
    a, b = tap_pair
    send_packets(a, [arp_request(i) for i in range(2, 22)])
    with VnetioSocket(b, max_frames=8) as sock:
        got = sniff(opened_socket=sock, count=20, timeout=5)
    assert [p[ARP].pdst for p in got] == [f"192.0.2.{i}" for i in range(2, 22)]
    assert all(p.time > 0 for p in got)


def test_filter_predicate_is_honoured(tap_pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    a, b = tap_pair
    ping = Ether(src=MAC_A, dst=MAC_B) / IP(dst="192.0.2.2") / ICMP()
    send_packets(a, [arp_request(2), ping, arp_request(3), ping])
    with VnetioSocket(b, filter=lambda f: f[12:14] == b"\x08\x06") as sock:
        got = sniff(opened_socket=sock, timeout=0.5)
    assert [p[ARP].pdst for p in got] == ["192.0.2.2", "192.0.2.3"]
    assert b.pending == 0  # the rest was read and dropped by the filter


def test_bpf_strings_are_honoured(
    tap_pair: tuple[vnetio.Loopback, vnetio.Loopback],
) -> None:
    """scapy's own TUN/TAP socket ignores filter=; VnetioSocket runs it (libpcap-compiled,
    on each batch by the Rust interpreter) and counts what it turned away."""
    a, b = tap_pair
    with pytest.raises(ValueError, match="syntax error"):
        VnetioSocket(b, filter="arp and and")
    with pytest.raises(TypeError):
        frame_filter(42, "tap")
    assert frame_filter(None, "tap") is None
    arp = Ether() / ARP(pdst="192.0.2.7")
    ip = Ether() / IP(dst="192.0.2.8") / UDP(dport=53)
    with VnetioSocket(b, filter="arp") as sock:
        send_packets(a, [ip, arp, ip])
        got = sock.sniff(timeout=0.3)
        assert [p[ARP].pdst for p in got] == ["192.0.2.7"]
        assert sock.filtered == 2
    predicate = frame_filter("udp port 53", "tap")
    assert predicate is not None and predicate(raw(ip)) and not predicate(raw(arp))
    assert "udp port 53" in repr(predicate)


def test_async_sniffer(tap_pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    a, b = tap_pair
    with VnetioSocket(b) as sock:
        started = threading.Event()
        sniffer = AsyncSniffer(opened_socket=sock, count=3, started_callback=started.set)
        sniffer.start()
        assert started.wait(5)
        send_packets(a, [arp_request(i) for i in range(2, 5)])
        sniffer.join(timeout=5)
        assert [p[ARP].pdst for p in sniffer.results] == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]

        sniffer = AsyncSniffer(opened_socket=sock)
        sniffer.start()
        time.sleep(0.1)
        assert sniffer.stop() is not None  # stop() wakes a sniffer with nothing to read


def test_sniff_ends_when_the_adapter_closes(
    tap_pair: tuple[vnetio.Loopback, vnetio.Loopback],
) -> None:
    a, b = tap_pair
    send_packets(a, [arp_request(2)])
    b.close()
    sock = VnetioSocket(b)
    assert len(sniff(opened_socket=sock, timeout=2)) == 0
    assert sock.closed


def test_sr1_and_an_answering_machine_on_tun(
    tun_pair: tuple[vnetio.Loopback, vnetio.Loopback],
) -> None:
    a, b = tun_pair
    with VnetioSocket(a) as client, VnetioSocket(b) as server:
        am = server.am(ICMPEcho_am, verbose=0)
        am(bg=True)
        try:
            time.sleep(0.1)
            request = IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(id=7, seq=3) / b"hello"
            reply = client.sr1(request, timeout=5, verbose=0)
        finally:
            am.sniffer.stop()
    assert reply is not None
    assert reply[IP].src == "192.0.2.1" and reply[IP].dst == "192.0.2.2"
    assert reply[ICMP].type == 0 and (reply[ICMP].id, reply[ICMP].seq) == (7, 3)
    assert bytes(reply[ICMP].payload) == b"hello"


def test_srp1_on_tap(tap_pair: tuple[vnetio.Loopback, vnetio.Loopback]) -> None:
    a, b = tap_pair

    def answer() -> None:
        with VnetioSocket(b) as server:
            request = sniff(opened_socket=server, count=1, timeout=5)[0]
            server.send(
                Ether(src=MAC_B, dst=request.src)
                / ARP(op=2, hwsrc=MAC_B, psrc=request.pdst, hwdst=request.hwsrc, pdst=request.psrc)
            )

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with VnetioSocket(a) as client:
            reply = client.srp1(arp_request(9), timeout=5, verbose=0)
    finally:
        thread.join(5)
    assert reply is not None and reply[ARP].op == 2
    assert (reply[ARP].psrc, reply[ARP].hwsrc) == ("192.0.2.9", MAC_B)


# --- scapy stays optional ---------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_vnetio_does_not_import_scapy() -> None:
    result = run_python(
        "import sys, vnetio, vnetio.inspect, vnetio._dependencies\n"
        "a, b = vnetio.loopback_pair()\n"
        "loaded = sorted(m for m in sys.modules if m == 'scapy' or m.startswith('scapy.'))\n"
        "assert not loaded, loaded\n"
    )
    assert result.returncode == 0, result.stderr


BLOCK_SCAPY = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'scapy' or name.startswith('scapy.'):\n"
    "            raise ImportError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "import vnetio, vnetio.inspect\n"
)


@pytest.mark.parametrize(
    "use",
    [
        "vnetio.inspect.to_scapy(vnetio.Batch.from_frames([]))",
        "vnetio.inspect.send_packets(vnetio.loopback_pair()[0], [])",
        "vnetio.inspect.VnetioSocket(vnetio.loopback_pair()[0])",
    ],
)
def test_without_scapy_a_feature_says_how_to_install_it(use: str) -> None:
    result = run_python(
        BLOCK_SCAPY
        + "try:\n"
        + f"    {use}\n"
        + "except ImportError as exc:\n"
        + "    print(exc)\n"
        + "else:\n"
        + "    raise SystemExit('no ImportError')\n"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "pip install vnetio[scapy]" in result.stdout
    assert "needs scapy" in result.stdout
