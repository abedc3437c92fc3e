"""``vnetio.Macvtap`` on real macvtap links.

The topology: the test's namespace (the ``netns`` fixture) holds ``vnmva``, one end of a
veth pair, and the macvtap link vnetio creates on it; the other end, ``vnmvb``, is in a
second namespace (the *peer*), whose kernel is the other host: 192.0.2.1 there, 192.0.2.2
behind the macvtap. What the tests check comes from the kernel (sockets, ``ip``, ping),
not from vnetio. ``vnetio list``/``cleanup`` are run as the command a user would type.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import vnetio

from tests.adapters import blocked_then_closed, recv_until
from tests.netutil import Netns, create_netns, delete_netns
from tests.packets import ethernet, udp4

pytestmark = pytest.mark.privileged

LOWER, PEER_END = "vnmva", "vnmvb"
PEER_IP, OUR_IP = "192.0.2.1", "192.0.2.2"
VNETIO = [sys.executable, "-m", "vnetio.cli"]


@dataclass(frozen=True)
class Wire:
    """The macvtap's namespace (with the lower device) and the peer's."""

    ns: Netns
    peer: Netns

    def peer_mac(self) -> str:
        return str(self.peer.link(PEER_END)["address"])

    def macvtaps(self) -> dict[str, dict[str, Any]]:
        """The macvtap links of ``ns`` as `ip -d link` reports them."""
        return {
            link["ifname"]: link
            for link in self.ns.ip_json("-d", "link", "show")
            if link.get("linkinfo", {}).get("info_kind") == "macvtap"
        }


@pytest.fixture
def wire(netns: Netns) -> Iterator[Wire]:
    peer = create_netns(ipv6=False)
    try:
        netns.ip("link", "add", LOWER, "type", "veth", "peer", "name", PEER_END, "netns", peer.name)
        netns.ip("link", "set", "dev", LOWER, "up")
        peer.ip("link", "set", "dev", PEER_END, "up")
        peer.ip("addr", "add", f"{PEER_IP}/24", "dev", PEER_END)
        yield Wire(netns, peer)
    finally:
        delete_netns(peer.name)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """vnetio's age ledger in a directory of this test (CLI subprocesses inherit it)."""
    path = tmp_path / "vnetio-state"
    monkeypatch.setenv("VNETIO_STATE_DIR", str(path))
    return path


def open_macvtap(wire: Wire, **options: Any) -> vnetio.Macvtap:
    m = vnetio.Macvtap(LOWER, netns=wire.ns.name, **options)
    m.up()
    return m


def in_ns(ns: Netns, script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def communicate(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"helper stalled: {err[-500:]}") from None
    assert proc.returncode == 0, err[-800:]
    return out


def udp_frame(dst_mac: str, src_mac: str, port: int, payload: bytes) -> bytes:
    packet = udp4(OUR_IP, PEER_IP, 40000, port, payload, ident=0x1234)
    mac = bytes.fromhex
    return ethernet(mac(dst_mac.replace(":", "")), mac(src_mac.replace(":", "")), packet)


def is_udp_to(port: int, payload: bytes):  # type: ignore[no-untyped-def]
    def keep(frame: bytes) -> bool:
        return (
            frame[12:14] == b"\x08\x00"
            and frame[23] == socket.IPPROTO_UDP
            and struct.unpack("!H", frame[36:38])[0] == port
            and frame.endswith(payload)
        )

    return keep


UDP_SENDER = r"""
import socket, sys
dst, port, count, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(payload, (dst, port + i % 8))
"""

UDP_RECEIVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(10)
print("ready", flush=True)
data, addr = s.recvfrom(2048)
print(data.decode(), addr[0], flush=True)
"""


# --- creation, errors, the link's life ---------------------------------------------------------


def test_creates_a_macvtap_link_and_deletes_it_on_close(wire: Wire) -> None:
    with vnetio.Macvtap(LOWER, netns=wire.ns.name, mode="private") as m:
        links = wire.macvtaps()
        assert list(links) == [m.name] and m.name.startswith("vnmvt")
        link = links[m.name]
        assert link["linkinfo"]["info_data"]["mode"] == "private"
        assert link["link"] == LOWER and link["ifindex"] == m.ifindex
        assert (m.lower, m.mode, m.kind, m.netns) == (LOWER, "private", "tap", wire.ns.name)
        assert m.created and not m.persistent and not m.offload
        assert m.mac == link["address"] and m.mtu == link["mtu"] == 1500
        assert len(m.queues) == 1
        assert "macvtap" in repr(m).lower()
    assert wire.macvtaps() == {}  # deleted on close
    assert wire.ns.has_link(LOWER)


def test_options_name_mac_mtu_and_persist(wire: Wire) -> None:
    m = vnetio.Macvtap(
        LOWER, netns=wire.ns.name, name="vnmvtx", mac="02:00:5e:00:53:07", mtu=1400, persist=True
    )
    try:
        assert (m.name, m.mac, m.mtu, m.persistent) == ("vnmvtx", "02:00:5e:00:53:07", 1400, True)
        link = wire.ns.link("vnmvtx")
        assert (link["address"], link["mtu"]) == ("02:00:5e:00:53:07", 1400)
        m.mac = "02:00:5e:00:53:08"
        assert wire.ns.link("vnmvtx")["address"] == "02:00:5e:00:53:08"
        m.close()
        assert "vnmvtx" in wire.macvtaps()  # persist=True: kept
    finally:
        wire.ns.ip("link", "del", "dev", "vnmvtx", check=False)
    m2 = vnetio.Macvtap(LOWER, netns=wire.ns.name, persist=True)
    m2.set_persistent(False)  # changed our mind: deleted on close after all
    m2.close()
    assert wire.macvtaps() == {}


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"lower": "vnmvnone"}, OSError, "no interface named vnmvnone"),
        ({"lower": "lo"}, ValueError, "not an Ethernet device"),
        ({"mode": "bogus"}, ValueError, "mode must be one of"),
        ({"name": "vnmvt-much-too-long"}, ValueError, "longer than 15 bytes"),
        ({"name": LOWER}, FileExistsError, "already exists"),
        ({"mac": "01:00:5e:00:00:01"}, ValueError, "unicast"),
        ({"mtu": 9}, ValueError, "mtu"),
        ({"queues": 0}, ValueError, "queues"),
        ({"rx_mode": "superframes"}, ValueError, "offload=True"),
        ({"mtu": 9000}, OSError, "mtu at most"),  # refused by the kernel: link removed again
    ],
)
def test_bad_arguments_are_clear_errors_and_leave_nothing(
    wire: Wire, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    lower = options.pop("lower", LOWER)
    before = wire.ns.links()
    with pytest.raises(error, match=match):
        vnetio.Macvtap(lower, netns=wire.ns.name, **options)
    assert wire.ns.links() == before


OPEN_AND_SHOW = r"""
import json, os, vnetio
m = vnetio.Macvtap(os.environ["LOWER"])
fd = m.queues[0].fileno()
st = os.fstat(fd)
print(json.dumps({"ifindex": m.ifindex, "dev": [os.major(st.st_rdev), os.minor(st.st_rdev)],
                  "path": os.readlink(f"/proc/self/fd/{fd}")}))
m.close()
"""


def rdev_of(adapter: vnetio.Macvtap) -> tuple[int, int]:
    st = os.fstat(adapter.queues[0].fileno())
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def test_the_device_node_is_never_another_namespaces_tap_n(wire: Wire) -> None:
    """/dev/tapN is named after an ifindex, unique only per namespace: with a macvtap of the
    same ifindex in another namespace, /dev/tapN (made by devtmpfs) is that one. vnetio
    opens its own link's device: through a private sysfs and node as root, and by checking
    the device numbers without CAP_SYS_ADMIN (then a node of its own in a temporary dir)."""
    other = create_netns(ipv6=False)
    try:
        # The next ifindexes in wire.ns are 3 and 4 (after lo and the lower device): take
        # them over there first.
        other.ip("link", "add", "name", "vnmvx0", "index", "20", "type", "veth", "peer", "name",
                 "vnmvx1", "index", "21")  # fmt: skip
        for index in ("3", "4"):
            other.ip("link", "add", "link", "vnmvx0", "index", index, "type", "macvtap")
        theirs = {
            tuple(link["macvtap"]["dev"])
            for link in vnetio._core.list_links(other.name)
            if link["macvtap"]
        }
        assert len(theirs) == 2
        with vnetio.Macvtap(LOWER, netns=wire.ns.name) as m:
            assert m.ifindex == 3
            (ours,) = [
                tuple(link["macvtap"]["dev"])
                for link in vnetio._core.list_links(wire.ns.name)
                if link["name"] == m.name
            ]
            assert ours not in theirs and rdev_of(m) == ours
        # Without CAP_SYS_ADMIN, inside the namespace: /sys is checked, /dev/tap4 refused.
        proc = subprocess.run(
            ["ip", "netns", "exec", wire.ns.name, "setpriv", "--bounding-set=-sys_admin",
             "--inh-caps=-sys_admin", sys.executable, "-c", OPEN_AND_SHOW],
            env={**os.environ, "LOWER": LOWER},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        shown = json.loads(proc.stdout)
        assert shown["ifindex"] == 4 and tuple(shown["dev"]) not in theirs
        assert "vnetio-macvtap-" in shown["path"], shown  # a node of its own
        assert wire.macvtaps() == {}
    finally:
        delete_netns(other.name)


def test_close_wakes_a_blocked_reader(wire: Wire) -> None:
    m = open_macvtap(wire)
    job = blocked_then_closed(lambda: m.recv_batch(timeout=None), m.close)
    assert isinstance(job.error, vnetio.AdapterClosedError)
    assert wire.macvtaps() == {}


# --- frames both ways --------------------------------------------------------------------------


def test_frames_from_the_peer_kernel_arrive(wire: Wire) -> None:
    with open_macvtap(wire) as m:
        # ARP: the peer's kernel asks for 192.0.2.2 (a broadcast reaches every macvtap).
        ping = subprocess.run(
            ["ip", "netns", "exec", wire.peer.name, "ping", "-c", "1", "-W", "1", OUR_IP],
            capture_output=True,
            check=False,
        )
        assert ping.returncode != 0  # nobody answers yet
        arp, _ = recv_until([m], lambda f: f[12:14] == b"\x08\x06", 1, timeout=3)
        assert arp and arp[0][:6] == b"\xff" * 6 and arp[0][38:42] == socket.inet_aton(OUR_IP)
        # Unicast UDP to the link's MAC.
        wire.peer.ip("neigh", "replace", OUR_IP, "lladdr", m.mac, "dev", PEER_END)
        communicate(in_ns(wire.peer, UDP_SENDER, OUR_IP, 7000, 1, "hello-macvtap"))
        got, _ = recv_until([m], is_udp_to(7000, b"hello-macvtap"), 1, timeout=3)
        assert got, "the peer's UDP datagram did not arrive"
        assert got[0][:6] == bytes.fromhex(m.mac.replace(":", ""))
        stats = m.stats()
        assert stats.rx_frames >= 2 and stats.rx_dropped == 0


def test_frames_sent_arrive_at_the_peer(wire: Wire) -> None:
    with open_macvtap(wire) as m:
        receiver = in_ns(wire.peer, UDP_RECEIVER, 7001)
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        frame = udp_frame(wire.peer_mac(), m.mac, 7001, b"from-vnetio")
        assert m.send_batch([frame]) == 1
        assert communicate(receiver).split() == ["from-vnetio", OUR_IP]
        assert m.stats().tx_frames == 1
        assert wire.peer.link(PEER_END)["stats64"]["rx"]["packets"] >= 1


def test_echo_responder_answers_ping_and_arp_through_the_macvtap(wire: Wire) -> None:
    with open_macvtap(wire) as m, vnetio.EchoResponder(m, ipv4=OUR_IP, ipv6=None) as responder:
        assert responder.mac == m.mac  # the link's own address
        ping = wire.peer.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", OUR_IP, check=False)
        assert " 0% packet loss" in ping, ping
        neigh = wire.peer.ip_json("neigh", "show", OUR_IP, "dev", PEER_END)
        assert neigh and neigh[0]["lladdr"] == m.mac
        counts = responder.stats()
        assert counts["arp"] >= 1 and counts["echo4"] == 3


def test_kernel_drops_for_a_slow_reader_are_counted(wire: Wire) -> None:
    with open_macvtap(wire) as m:
        m.queue_length = 16
        assert wire.ns.link(m.name)["txqlen"] == 16
        wire.peer.ip("neigh", "replace", OUR_IP, "lladdr", m.mac, "dev", PEER_END)
        communicate(in_ns(wire.peer, UDP_SENDER, OUR_IP, 7500, 200, "flood"))  # nobody reads
        time.sleep(0.2)
        got, _ = recv_until([m], lambda f: f.endswith(b"flood"), 200, timeout=1)
        stats = m.stats()
        assert stats.rx_dropped > 0 and len(got) + stats.rx_dropped >= 200, (len(got), stats)
        assert stats.tx_dropped == 0


def test_queues_share_the_flows(wire: Wire) -> None:
    with open_macvtap(wire, queues=2) as m:
        assert [q.index for q in m.queues] == [0, 1]
        wire.peer.ip("neigh", "replace", OUR_IP, "lladdr", m.mac, "dev", PEER_END)
        communicate(in_ns(wire.peer, UDP_SENDER, OUR_IP, 7100, 64, "mq"))
        got, _ = recv_until(list(m.queues), lambda f: f.endswith(b"mq"), 64, timeout=5)
        assert len(got) == 64


def test_filters_run_in_this_process(wire: Wire) -> None:
    with open_macvtap(wire) as m:
        with pytest.raises(ValueError, match="no kernel filter"):
            m.set_filter("udp", placement="kernel")
        with pytest.raises(ValueError, match="no kernel filter"):
            m.set_filter("udp", placement="classic")
        assert m.filter_placement is None
        assert m.set_filter("udp port 7200") == "userspace"
        assert (m.filter, m.filter_placement) == ("udp port 7200", "userspace")
        wire.peer.ip("neigh", "replace", OUR_IP, "lladdr", m.mac, "dev", PEER_END)
        wire.peer.exec("ping", "-c", "2", "-i", "0.2", "-b", "192.0.2.255", check=False)
        communicate(in_ns(wire.peer, UDP_SENDER, OUR_IP, 7200, 1, "kept"))
        got, everything = recv_until([m], lambda f: True, 1, timeout=3)
        assert got and all(is_udp_to(7200, b"kept")(f) for f in everything)
        assert (m.stats().rx_filtered or 0) >= 2  # the broadcast pings


def test_asyncio_and_fileno(wire: Wire) -> None:
    import asyncio

    async def main(m: vnetio.Macvtap) -> int:
        wire.peer.ip("neigh", "replace", OUR_IP, "lladdr", m.mac, "dev", PEER_END)
        sender = in_ns(wire.peer, UDP_SENDER, OUR_IP, 7300, 1, "async")
        batch = await m.recv_batch_async(16, timeout=5)
        communicate(sender)
        return len(batch)

    with open_macvtap(wire) as m:
        assert m.fileno() >= 0
        assert asyncio.run(main(m)) >= 1


def test_capture_to_a_file(wire: Wire, tmp_path: Path) -> None:
    with open_macvtap(wire) as m:
        wire.peer.ip("neigh", "replace", OUR_IP, "lladdr", m.mac, "dev", PEER_END)

        def send_later() -> None:
            time.sleep(0.3)
            communicate(in_ns(wire.peer, UDP_SENDER, OUR_IP, 7400, 3, "cap"))

        sender = threading.Thread(target=send_later)
        sender.start()
        stats = m.capture_to(tmp_path / "m.pcapng", filter="udp", count=3, duration=10)
        sender.join()
        assert stats.captured == 3
        with vnetio.capture.Reader(tmp_path / "m.pcapng") as reader:
            frames = [bytes(f) for batch in reader for f in batch]
        assert len(frames) == 3 and all(f.endswith(b"cap") for f in frames)


# --- offload: a TCP stream through vnetio, between the peer and a server behind a TAP -----------

STREAM = 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("rx_mode", "sender"),
    [("superframes", "peer"), ("segments", "peer"), ("superframes", "server")],
)
def test_tcp_stream_with_offload(wire: Wire, rx_mode: str, sender: str) -> None:
    """A TCP stream between the peer's kernel and a server behind vnetio: vnetio forwards
    between the macvtap and a TAP whose kernel side is the server (in a third namespace,
    with the macvtap's MAC address). From the peer (TSO over the veth), super-frames must
    reach Python whole in superframes mode and split in segments mode; from the server,
    the TAP's super-frames are written into the macvtap with their metadata. Either way
    the bytes arrive intact and no checksum error or stall shows in either kernel."""
    from tests.privileged.test_offload import Forwarder, assert_clean, tcp_stream

    with ExitStack() as stack:
        server = create_netns(ipv6=False)
        stack.callback(delete_netns, server.name)
        # tcp_stream sends to 192.0.2.2: the server's address, or the peer's when it sends.
        server_ip, peer_ip = (OUR_IP, PEER_IP) if sender == "peer" else (PEER_IP, OUR_IP)
        if sender == "server":
            wire.peer.ip("addr", "flush", "dev", PEER_END)
            wire.peer.ip("addr", "add", f"{peer_ip}/24", "dev", PEER_END)
        m = stack.enter_context(open_macvtap(wire, offload=True, rx_mode=rx_mode))
        assert {"csum", "tso4"} <= set(m.offloads)
        tap = stack.enter_context(
            vnetio.Tap("vnmvsrv0", netns=server.name, offload=True, rx_mode="superframes")
        )
        tap.mac = m.mac  # the server answers for the macvtap's address
        tap.add_address(f"{server_ip}/24")
        tap.up()
        fwd = stack.enter_context(Forwarder(m, tap))
        if sender == "peer":
            result = tcp_stream(wire.peer, server, 4, size=STREAM)
        else:
            result = tcp_stream(server, wire.peer, 4, size=STREAM)
        fwd.stop.set()
        fwd.check()
        assert_clean(result, fwd)
        if sender == "server":  # into the macvtap: the TAP's super-frames, metadata kept
            assert fwd.ba.oversized > 0 and "tcpv4" in fwd.ba.gso_types, fwd.ba
            assert m.stats().tx_dropped == 0
        elif rx_mode == "superframes":
            assert fwd.ab.oversized > 0 and "tcpv4" in fwd.ab.gso_types, fwd.ab
        else:
            assert fwd.ab.oversized == 0 and fwd.ab.frames > STREAM // 1500, fwd.ab


# --- the command line: list, cleanup, delete -----------------------------------------------------


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*VNETIO, *args], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert proc.returncode == 0, f"vnetio {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


def listed(ns: Netns) -> dict[str, dict[str, Any]]:
    entries = json.loads(cli("list", "--netns", ns.name, "--json").stdout)
    return {e["name"]: e for e in entries}


def test_list_shows_the_macvtap_and_its_holder(wire: Wire) -> None:
    with open_macvtap(wire, queues=2) as m:
        entry = listed(wire.ns)[m.name]
        assert (entry["mode"], entry["lower"], entry["macvtap_mode"]) == (
            "macvtap",
            LOWER,
            "bridge",
        )
        # The link outlives descriptors (only its creator may delete it on close).
        assert entry["held"] and not entry["orphaned"] and entry["persistent"] is True
        assert entry["queues"] == 2
        ((pid, fds),) = [(h["pid"], h["fds"]) for h in entry["holders"]]
        assert pid == os.getpid() and len(fds) == 2
        # The same from inside the namespace (`ip netns exec` mounts that namespace's sysfs).
        inside = subprocess.run(
            ["ip", "netns", "exec", wire.ns.name, *VNETIO, "list", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        (seen,) = [e for e in json.loads(inside.stdout) if e["name"] == m.name]
        assert [h["pid"] for h in seen["holders"]] == [os.getpid()]
        table = cli("list", "--netns", wire.ns.name).stdout
        (row,) = [line for line in table.splitlines() if line.startswith(m.name)]
        assert "macvtap" in row and f"lower={LOWER}" in row and f"{os.getpid()}/" in row
        # Not ours to clean up while held.
        out = cli("cleanup", "--netns", wire.ns.name).stdout
        assert re.search(
            rf"^kept\s+{m.name} .*held open by PID {os.getpid()}", out, re.MULTILINE
        ), out
        assert m.name in wire.macvtaps()


def test_cleanup_removes_an_orphaned_macvtap(wire: Wire) -> None:
    m = vnetio.Macvtap(LOWER, netns=wire.ns.name, persist=True)
    name = m.name
    m.close()
    try:
        entry = listed(wire.ns)[name]
        assert entry["orphaned"] and not entry["held"] and entry["holders"] == []
        dry = cli("cleanup", "--netns", wire.ns.name, "--dry-run").stdout
        assert re.search(rf"^would remove\s+{name} .*orphaned", dry, re.MULTILINE), dry
        assert name in wire.macvtaps()
        out = cli("cleanup", "--netns", wire.ns.name).stdout
        assert re.search(rf"^removed\s+{name} ", out, re.MULTILINE), out
        assert wire.macvtaps() == {} and wire.ns.has_link(LOWER)
    finally:
        wire.ns.ip("link", "del", "dev", name, check=False)


def test_delete_refuses_a_held_macvtap_unless_forced(wire: Wire) -> None:
    with open_macvtap(wire) as m:
        result = cli("delete", m.name, "--netns", wire.ns.name, check=False)
        assert result.returncode == 1 and f"PID {os.getpid()}" in result.stderr
        assert m.name in wire.macvtaps()
        cli("delete", m.name, "--netns", wire.ns.name, "--force")
        assert wire.macvtaps() == {}
    m2 = vnetio.Macvtap(LOWER, netns=wire.ns.name, persist=True)
    m2.close()
    info = vnetio.delete_adapter(m2.name, netns=wire.ns.name)
    assert info.mode == "macvtap" and wire.macvtaps() == {}


def doctor_findings(ns: Netns) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [*VNETIO, "doctor", "--json", "--netns", ns.name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return [f for f in findings if f["netns"] == ns.name]


def test_doctor_reports_macvtap_links(wire: Wire) -> None:
    with open_macvtap(wire) as m:
        (ok,) = doctor_findings(wire.ns)
        assert (ok["check"], ok["status"]) == ("adapters", "ok")
        assert f"1 macvtap link ({m.name})" in ok["summary"]
        assert f"held by PID {os.getpid()}" in ok["detail"]
        wire.ns.ip("link", "set", "dev", LOWER, "down")
        (f,) = doctor_findings(wire.ns)
        assert (f["check"], f["adapter"]) == ("macvtap-no-carrier", m.name)
        assert f"ip -n {wire.ns.name} link set dev {LOWER} up" in f["fix"]
        wire.ns.ip("link", "set", "dev", LOWER, "up")
        m.set_persistent(True)
    try:
        (f,) = doctor_findings(wire.ns)
        assert (f["check"], f["status"], f["adapter"]) == ("macvtap-orphan", "warn", m.name)
        assert f"vnetio delete {m.name} --netns {wire.ns.name}" in f["fix"]
    finally:
        wire.ns.ip("link", "del", "dev", m.name, check=False)
