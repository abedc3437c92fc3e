"""EchoResponder behind real adapters: the kernel's own `ping` reaches the virtual host.

Each test builds a private namespace (IPv6 on, DAD off), gives the adapter the kernel-side
addresses 192.0.2.1/24 and 2001:db8::1/64 and serves .2 / ::2 with the responder. `ping`
runs inside the namespace (`ip netns exec`); on a TAP the kernel must first resolve the
responder's MAC (ARP, neighbour solicitation), which its neighbour table then shows.
"""

from __future__ import annotations

import json
import re

import pytest
import vnetio
from vnetio.responder import EchoResponder

from tests.netutil import Netns

pytestmark = [pytest.mark.privileged, pytest.mark.ipv6]


def ping(netns: Netns, address: str, count: int = 3) -> tuple[int, str]:
    family = ["-6"] if ":" in address else ["-4"]
    argv = ["ping", *family, "-c", str(count), "-i", "0.2", "-W", "2", address]
    out = netns.exec(*argv, check=False, timeout=30)
    match = re.search(r"(\d+) received", out)
    return (int(match[1]) if match else 0), out


def neighbours(netns: Netns, dev: str) -> dict[str, str | None]:
    entries = json.loads(netns.ip("-j", "neigh", "show", "dev", dev) or "[]")
    return {e["dst"]: e.get("lladdr") for e in entries}


def test_kernel_pings_a_responder_behind_a_tap(netns: Netns) -> None:
    with vnetio.Tap("vn%d", netns=netns.name) as tap:
        tap.add_address("192.0.2.1/24")
        tap.add_address("2001:db8::1/64")
        tap.up()
        with EchoResponder(tap, ipv4="192.0.2.2", ipv6="2001:db8::2") as responder:
            got4, out4 = ping(netns, "192.0.2.2")
            got6, out6 = ping(netns, "2001:db8::2")
            table = neighbours(netns, tap.name)
        assert got4 == 3, out4
        assert got6 == 3, out6
        assert responder.mac != tap.mac
        assert table.get("192.0.2.2") == responder.mac, table
        assert table.get("2001:db8::2") == responder.mac, table
        stats = responder.stats()
    assert stats["arp"] >= 1 and stats["ns"] >= 1, stats
    assert (stats["echo4"], stats["echo6"], stats["malformed"]) == (3, 3, 0), stats
    assert stats["sent"] == stats["answered"] and stats["send_failed"] == 0, stats
    # The kernel's own chatter (router solicitations, MLD reports) is seen and ignored.
    assert stats["received"] == stats["answered"] + stats["ignored"], stats


def test_kernel_pings_a_responder_behind_a_tun(netns: Netns) -> None:
    with vnetio.Tun("vn%d", netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.add_address("2001:db8::1/64")
        tun.up()
        with EchoResponder(tun) as responder:
            got4, out4 = ping(netns, "192.0.2.2")
            got6, out6 = ping(netns, "2001:db8::2")
    assert (got4, got6) == (3, 3), out4 + out6
    stats = responder.stats()
    assert (stats["echo4"], stats["echo6"], stats["arp"], stats["ns"]) == (3, 3, 0, 0), stats


def test_other_addresses_get_no_answer(netns: Netns) -> None:
    with vnetio.Tun("vn%d", netns=netns.name) as tun:
        tun.add_address("192.0.2.1/24")
        tun.up()
        with EchoResponder(tun, ipv4="192.0.2.2", ipv6=None) as responder:
            got, out = ping(netns, "192.0.2.3", count=2)
    assert got == 0, out
    stats = responder.stats()
    assert stats["echo4"] == 0 and stats["ignored"] >= 2, stats  # + the kernel's IPv6 chatter


KERNEL_MAC = "02:00:5e:10:00:aa"


def test_the_taps_own_mac_is_refused_on_a_real_tap(netns: Netns) -> None:
    """README: on a TAP the responder has a MAC of its own; "the TAP's own MAC is the
    kernel's and is refused", in any spelling the MAC parser takes, also after the
    address was changed from outside; a neighbouring MAC is taken and answers pings."""
    with vnetio.Tap("vn%d", netns=netns.name) as tap:
        netns.ip("link", "set", "dev", tap.name, "address", KERNEL_MAC)
        assert tap.mac == KERNEL_MAC
        tap.add_address("192.0.2.1/24")
        tap.up()
        spellings = [KERNEL_MAC, KERNEL_MAC.upper(), KERNEL_MAC.replace(":", "-"), "2:0:5e:10:0:aa"]
        for spelling in spellings:
            with pytest.raises(ValueError, match="TAP's own MAC address") as info:
                EchoResponder(tap, ipv4="192.0.2.2", ipv6=None, mac=spelling)
            assert "belongs to the kernel's side" in str(info.value)
        neighbour = "02:00:5e:10:00:ab"
        with EchoResponder(tap, ipv4="192.0.2.2", ipv6=None, mac=neighbour) as responder:
            got, out = ping(netns, "192.0.2.2", count=2)
            table = neighbours(netns, tap.name)
        assert got == 2, out
        assert table.get("192.0.2.2") == responder.mac == neighbour, table
