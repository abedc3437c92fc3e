"""The WireGuard tunnel without UDP GSO or GRO: the kernel really refuses, nothing of vnetio
is mocked (issue 18's rule).

Two in-process interfaces, A and B, in a namespace the test creates, over UDP on its
loopback address. A carries batches of equal-size packets to B, which the tunnel sends as
UDP GSO runs where the kernel takes them. Three refusals:

- **At setup**, as a kernel without UDP GSO (before 4.18) or GRO (before 5.0) answers: a
  seccomp filter in a child process fails ``getsockopt(SOL_UDP, UDP_SEGMENT)`` and
  ``setsockopt(SOL_UDP, UDP_GRO)`` with ENOPROTOOPT. Such a kernel would not refuse a send
  carrying the ``UDP_SEGMENT`` control message, it would ignore it (and send a whole run
  as one datagram), so the tunnel must never send one: a supervisor thread reads every
  ``sendmmsg``'s control messages and counts those that do.
- **At a send**, with EIO, as older kernels answer a GSO send over a device without
  checksum offload (this machine's 6.18 sends it anyway): the supervisor fails exactly the
  ``sendmmsg`` calls whose message carries ``UDP_SEGMENT``, as the kernel would (a message
  before it is sent, the call returns their count).
- **At a send, by the kernel itself**: loopback's MTU lowered below the size of a
  WireGuard datagram. The kernel refuses a GSO segment larger than the route's MTU
  (EMSGSIZE) while it sends the same datagram alone, fragmented.

Each time every packet arrives, byte for byte and in order, ``stats()`` says GSO is off
(``gso_unavailable``) and how it went off (``gso_fallbacks``: a refused send), and nothing
is counted as a send error.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from vnetio import wireguard

from tests.netutil import Netns
from tests.syscall_faults import run_child

pytestmark = pytest.mark.privileged

SIZE = 1400  # plaintext bytes (the tunnel's MTU is 1420): WireGuard datagrams of 1432


def packets(first: int, count: int, *, src: str = "10.9.0.1", dst: str = "10.9.0.2") -> list[bytes]:
    """``count`` IPv4/UDP packets of ``SIZE`` bytes, numbered from ``first`` (each one's
    payload is its number, repeated)."""
    out = []
    for n in range(first, first + count):
        body = n.to_bytes(4, "big") * ((SIZE - 28) // 4)
        out.append(bytes(IP(src=src, dst=dst) / UDP(sport=4000, dport=4001) / Raw(body)))
    return out


def connect(a: wireguard.Interface, b: wireguard.Interface) -> None:
    """A (10.9.0.1) and B (10.9.0.2) peers of each other over 127.0.0.1."""
    a.add_peer(b.public_key, endpoint=f"127.0.0.1:{b.listen_port}", allowed_ips=["10.9.0.2/32"])
    b.add_peer(a.public_key, endpoint=f"127.0.0.1:{a.listen_port}", allowed_ips=["10.9.0.1/32"])


def carry(
    sender: wireguard.Interface, receiver: wireguard.Interface, sent: list[bytes]
) -> dict[str, Any]:
    """Send ``sent`` in one batch; what arrived within 10 s, compared."""
    assert sender.send_batch(sent) == len(sent)
    got: list[bytes] = []
    deadline = time.monotonic() + 10
    while len(got) < len(sent) and time.monotonic() < deadline:
        got += [bytes(p) for p in receiver.recv_batch(256, timeout=0.2)]
    return {"sent": len(sent), "received": len(got), "same": got == sent}


def handshake(a: wireguard.Interface, b: wireguard.Interface) -> None:
    """One packet each way: the session is up before the batches."""
    for sender, receiver, (src, dst) in (
        (a, b, ("10.9.0.1", "10.9.0.2")),
        (b, a, ("10.9.0.2", "10.9.0.1")),
    ):
        (one,) = packets(0, 1, src=src, dst=dst)
        sender.send(one)
        assert receiver.recv(timeout=10) == one


def offload_stats(iface: wireguard.Interface) -> dict[str, int]:
    s = iface.stats()
    return {
        "gso_fallbacks": s["gso_fallbacks"],
        "gso_unavailable": s["gso_unavailable"],
        "gro_unavailable": s["gro_unavailable"],
        "send_error": s["drops"]["send_error"],
    }


# The child's supervisor: every sendmmsg of the filtered interface's threads passes through
# it. It counts the calls and the messages that carry UDP_SEGMENT; with REFUSE[0] set it
# answers such a message as a kernel that does not take the GSO send: EIO when it is the
# call's first message, else it sends the messages before it itself and returns their count.
SUPERVISOR = """
import ctypes, errno
from tests.syscall_faults import (SYSCALLS, USER_NOTIF, Arg, Mmsghdr, Returns, Rule,
                                 Supervisor, control_messages, errno_action)

SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104
libc = ctypes.CDLL(None, use_errno=True)
libc.sendmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
REFUSE = [False]
seen = {"sendmmsg": 0, "messages": 0, "gso_messages": 0, "gso_refused": 0}

def watch_gso(nr, args):
    fd, vec, count, flags = args[0], args[1], args[2], args[3] & 0xFFFFFFFF
    msgs = (Mmsghdr * count).from_address(vec)
    seen["sendmmsg"] += 1
    seen["messages"] += count
    gso = [i for i, m in enumerate(msgs)
           if any(c[:2] == (SOL_UDP, UDP_SEGMENT) for c in control_messages(m.hdr))]
    seen["gso_messages"] += len(gso)
    if not REFUSE[0] or not gso:
        return 0
    if gso[0] == 0:
        seen["gso_refused"] += 1
        return errno.EIO
    for i in range(gso[0]):  # what the kernel sends before the message it refuses
        n = libc.sendmsg(fd, ctypes.addressof(msgs[i].hdr), flags)
        if n < 0:
            return Returns(i) if i else ctypes.get_errno()
        msgs[i].len = n
    return Returns(gso[0])

supervisor = Supervisor(watch_gso)
"""


OLD_KERNEL_CHILD = """
import errno
from tests.privileged.test_wireguard_fallbacks import (carry, connect, handshake,
                                                        offload_stats, packets)
from vnetio import wireguard

ns = PARAMS["ns"]
# B first: its threads exist before the filter, which binds only threads started after it.
b = wireguard.Interface(wireguard.genkey(), netns=ns)
supervisor.install([
    Rule("getsockopt", errno_action(errno.ENOPROTOOPT),
         [Arg(1, "eq", SOL_UDP), Arg(2, "eq", UDP_SEGMENT)]),
    Rule("setsockopt", errno_action(errno.ENOPROTOOPT),
         [Arg(1, "eq", SOL_UDP), Arg(2, "eq", UDP_GRO)]),
    Rule("sendmmsg", USER_NOTIF),
])
a = wireguard.Interface(wireguard.genkey(), netns=ns)
connect(a, b)
with a, b:
    handshake(a, b)
    out = {"a_to_b": carry(a, b, packets(1, 256)),
           "b_to_a": carry(b, a, packets(1, 256, src="10.9.0.2", dst="10.9.0.1")),
           "a": offload_stats(a), "b": offload_stats(b), "seen": seen,
           "supervisor_errors": supervisor.errors}
report(out)
"""


def test_a_kernel_without_udp_gso_and_gro_gets_single_datagrams(netns: Netns) -> None:
    """A's kernel knows neither socket option; B's (unfiltered, the same process) does."""
    out = run_child(SUPERVISOR, OLD_KERNEL_CHILD, ns=netns.name, timeout=60)
    assert out["supervisor_errors"] == [], out
    assert out["a_to_b"] == {"sent": 256, "received": 256, "same": True}, out
    assert out["b_to_a"] == {"sent": 256, "received": 256, "same": True}, out
    # A never sent the control message such a kernel would ignore, and said so.
    seen = out["seen"]
    assert seen["sendmmsg"] > 0, seen  # A's sends were watched
    assert seen["gso_messages"] == 0, f"A sent UDP_SEGMENT to a kernel without GSO: {seen}"
    assert seen["messages"] >= 256, seen  # one per datagram
    assert out["a"] == {
        "gso_fallbacks": 0, "gso_unavailable": 1, "gro_unavailable": 1, "send_error": 0
    }, out  # fmt: skip
    # B, outside the filter, kept both.
    assert out["b"] == {
        "gso_fallbacks": 0, "gso_unavailable": 0, "gro_unavailable": 0, "send_error": 0
    }, out  # fmt: skip


REFUSING_CHILD = """
from tests.privileged.test_wireguard_fallbacks import (carry, connect, handshake,
                                                        offload_stats, packets)
from vnetio import wireguard

ns = PARAMS["ns"]
b = wireguard.Interface(wireguard.genkey(), netns=ns)
supervisor.install([Rule("sendmmsg", USER_NOTIF)])
a = wireguard.Interface(wireguard.genkey(), netns=ns)
connect(a, b)
out = {}
with a, b:
    handshake(a, b)
    # The control: this kernel takes A's GSO runs.
    out["control"] = {**carry(a, b, packets(1, 128)), **offload_stats(a), **seen}
    REFUSE[0] = True
    out["refused"] = {**carry(a, b, packets(129, 256)), **offload_stats(a), **seen}
    out["after"] = {**carry(a, b, packets(385, 128)), **offload_stats(a), **seen}
out["supervisor_errors"] = supervisor.errors
report(out)
"""


def test_a_refused_gso_send_is_resent_datagram_by_datagram(netns: Netns) -> None:
    out = run_child(SUPERVISOR, REFUSING_CHILD, ns=netns.name, timeout=60)
    assert out["supervisor_errors"] == [], out
    control, refused, after = out["control"], out["refused"], out["after"]
    assert control["same"] and control["received"] == 128, control
    assert control["gso_messages"] > 0, f"the tunnel sent no GSO run to refuse: {control}"
    assert control["gso_fallbacks"] == control["gso_unavailable"] == 0, control
    # One GSO send refused; its datagrams and the rest of the batch went singly, all of them.
    assert refused["same"] and refused["received"] == 256, refused
    assert refused["gso_refused"] == 1, refused
    assert refused["gso_fallbacks"] == 1 and refused["gso_unavailable"] == 1, refused
    assert refused["send_error"] == 0, refused
    # GSO stays off: no further run is even tried.
    assert after["same"] and after["received"] == 128, after
    assert after["gso_messages"] == refused["gso_messages"], after
    assert after["gso_refused"] == 1 and after["gso_fallbacks"] == 1, after
    assert after["send_error"] == 0, after


def test_a_route_mtu_below_the_datagrams_turns_gso_off(netns: Netns) -> None:
    """The kernel itself refuses (EMSGSIZE): segments larger than the route's MTU, which
    the same datagrams sent alone pass (fragmented, and reassembled at B)."""
    a = wireguard.Interface(wireguard.genkey(), netns=netns.name)
    b = wireguard.Interface(wireguard.genkey(), netns=netns.name)
    connect(a, b)
    with a, b:
        handshake(a, b)
        control = carry(a, b, packets(1, 128))
        assert control == {"sent": 128, "received": 128, "same": True}, control
        assert offload_stats(a)["gso_unavailable"] == 0, offload_stats(a)
        netns.ip("link", "set", "dev", "lo", "mtu", "1280")
        refused = carry(a, b, packets(129, 256))
        stats = offload_stats(a)
    assert refused == {"sent": 256, "received": 256, "same": True}, (refused, stats)
    assert stats == {
        "gso_fallbacks": 1, "gso_unavailable": 1, "gro_unavailable": 0, "send_error": 0
    }, stats  # fmt: skip
