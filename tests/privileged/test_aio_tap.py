"""vnetio.aio on a real TAP, the kernel as the peer (each test in its own namespace).

The TAP has 192.0.2.1/24; the event loop plays 192.0.2.2 (a static neighbour entry, so
the kernel sends its pings without asking for our MAC). While ``ping`` runs in the
namespace as a subprocess, the loop receives the kernel's echo requests and answers them,
all on one thread.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading

import pytest
import vnetio
from vnetio import aio, checksum

from tests.netutil import Netns
from tests.packets import ICMP_ECHO_REPLY, ipv4_echo_request, parse_ipv4_echo

pytestmark = pytest.mark.privileged

KERNEL_IP = "192.0.2.1"
OUR_IP = "192.0.2.2"
OUR_MAC = bytes.fromhex("020000000002")
IDENT = os.getpid() & 0xFFFF
ETH_IPV4 = b"\x08\x00"


def open_tap(netns: Netns) -> vnetio.Tap:
    tap = vnetio.Tap("vn%d", netns=netns.name)
    try:
        tap.add_address(f"{KERNEL_IP}/24")
        tap.up()
        netns.ip(
            "neigh", "replace", OUR_IP, "lladdr", OUR_MAC.hex(":"), "dev", tap.name,
            "nud", "permanent",
        )  # fmt: skip
    except BaseException:
        tap.close()
        raise
    return tap


def echo_reply(frame: bytes) -> bytes | None:
    """Our answer to an ICMP echo request for OUR_IP in an Ethernet frame, or None."""
    if frame[12:14] != ETH_IPV4 or len(frame) < 14 + 20 + 8:
        return None
    ihl = (frame[14] & 0x0F) * 4
    icmp = 14 + ihl
    if frame[23] != 1 or frame[30:34] != bytes([192, 0, 2, 2]) or frame[icmp] != 8:
        return None
    reply = bytearray(frame)
    reply[0:6], reply[6:12] = frame[6:12], OUR_MAC
    reply[26:30], reply[30:34] = frame[30:34], frame[26:30]
    reply[icmp] = 0  # echo reply
    checksum.fix(reply, "tap")
    return bytes(reply)


def test_event_loop_answers_the_kernels_ping(netns: Netns) -> None:
    async def main(tap: vnetio.Tap) -> tuple[int, str, int]:
        threads = threading.active_count()
        answered = 0

        async def responder() -> None:
            nonlocal answered
            async for batch in aio.batches(tap):
                replies = [r for r in map(echo_reply, batch.to_list()) if r is not None]
                if replies:
                    answered += await aio.send_batch_async(tap, replies)

        task = asyncio.create_task(responder())
        # Popen polled from the loop (not waited on): asyncio's own subprocess support
        # would start a child-watcher thread and spoil the thread count.
        with subprocess.Popen(  # noqa: ASYNC220
            ["ip", "netns", "exec", netns.name,
             "ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", OUR_IP],
            stdout=subprocess.PIPE, text=True,
        ) as ping:  # fmt: skip
            try:
                while ping.poll() is None:
                    await asyncio.sleep(0.05)
            finally:
                if ping.poll() is None:
                    ping.kill()
            out = ping.stdout.read() if ping.stdout else ""
        extra_threads = threading.active_count() - threads
        task.cancel()  # the adapter stays usable after it
        with pytest.raises(asyncio.CancelledError):
            await task
        return answered, out, extra_threads

    with open_tap(netns) as tap:
        answered, out, extra_threads = asyncio.run(asyncio.wait_for(main(tap), 30))
        # Still usable after the cancellation: the kernel answers a ping of ours.
        tap.send(_echo_request_frame(tap, 99))
        assert _wait_reply(tap, 99)
    assert "5 received" in out, out
    assert answered >= 5
    assert extra_threads == 0


def _echo_request_frame(tap: vnetio.Tap, seq: int) -> bytes:
    dst = bytes.fromhex(tap.mac.replace(":", ""))
    return dst + OUR_MAC + ETH_IPV4 + ipv4_echo_request(OUR_IP, KERNEL_IP, IDENT, seq, b"x" * 8)


def _is_reply(frame: bytes, seq: int) -> bool:
    if frame[12:14] != ETH_IPV4:
        return False
    echo = parse_ipv4_echo(frame[14:])
    return echo is not None and echo.kind == ICMP_ECHO_REPLY and echo.seq == seq


def _wait_reply(tap: vnetio.Tap, seq: int) -> bool:
    for _ in range(20):
        if any(_is_reply(f, seq) for f in tap.recv_batch(timeout=0.1).to_list()):
            return True
    return False


def test_async_pings_to_the_kernel_with_cancellations(netns: Netns) -> None:
    """We ping the kernel from the loop; receives are cancelled at random points, and
    every reply still arrives exactly once."""

    async def main(tap: vnetio.Tap) -> list[int]:
        count = 40
        await aio.send_batch_async(tap, [_echo_request_frame(tap, s) for s in range(count)])
        seen: list[int] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen) < count and asyncio.get_running_loop().time() < deadline:
            task = asyncio.create_task(aio.recv_batch_async(tap, max_frames=4))
            await asyncio.sleep(0)
            if len(seen) % 3 == 0:
                task.cancel()
            try:
                batch = await task
            except asyncio.CancelledError:
                continue
            for frame in batch.to_list():
                echo = parse_ipv4_echo(frame[14:]) if frame[12:14] == ETH_IPV4 else None
                if echo is not None and echo.kind == ICMP_ECHO_REPLY and echo.ident == IDENT:
                    seen.append(echo.seq)
        return seen

    async def with_context(tap: vnetio.Tap) -> list[int]:
        async with aio.open(tap, close=False) as atap:
            return await main(atap.adapter)

    with open_tap(netns) as tap:
        seen = asyncio.run(asyncio.wait_for(with_context(tap), 30))
    assert sorted(seen) == list(range(40))
