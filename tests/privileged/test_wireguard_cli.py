"""``vnetio wg``: keys interchangeable with wireguard-tools, and up/show/down of a wg-quick
file in a namespace, checked with wireguard-tools' own ``wg show``/``wg showconf``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vnetio import wireguard
from vnetio.wireguard import uapi

from tests.netutil import Netns, need, random_suffix

pytestmark = pytest.mark.privileged


def vnetio(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vnetio.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_genkey_and_pubkey_are_interchangeable_with_wg() -> None:
    wg = need("wg", "wireguard-tools")
    ours = vnetio("wg", "genkey").stdout.strip()
    theirs = subprocess.run([wg, "genkey"], capture_output=True, text=True, check=True).stdout
    for key in (ours, theirs.strip()):
        mine = vnetio("wg", "pubkey", stdin=key + "\n")
        assert mine.returncode == 0, mine.stderr
        wgs = subprocess.run([wg, "pubkey"], input=key, capture_output=True, text=True, check=True)
        assert mine.stdout.strip() == wgs.stdout.strip()
    bad = vnetio("wg", "pubkey", stdin="not a key\n")
    assert bad.returncode == 1 and "not base64" in bad.stderr


@pytest.fixture
def conf(netns: Netns, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    name = f"vnwg{random_suffix(2)}"
    peer = wireguard.pubkey(wireguard.genkey())
    psk = wireguard.genkey()
    path = tmp_path / f"{name}.conf"
    path.write_text(
        "[Interface]\n"
        f"PrivateKey = {wireguard.genkey()}\n"
        "Address = 10.77.0.1/24, fd77::1/64\n"
        "ListenPort = 51900\n"
        "PostUp = echo not for us\n\n"
        "[Peer]\n"
        f"PublicKey = {peer}\n"
        f"PresharedKey = {psk}\n"
        "AllowedIPs = 10.77.0.2/32, 10.78.0.0/16\n"
        "Endpoint = 10.77.0.2:51820\n"
        "PersistentKeepalive = 25\n"
    )
    try:
        yield path, name
    finally:
        vnetio("wg", "down", name)
        uapi.socket_path(name).unlink(missing_ok=True)


@pytest.mark.ipv6
def test_up_show_down(netns: Netns, conf: tuple[Path, str]) -> None:
    path, name = conf
    wg = need("wg", "wireguard-tools")
    up = vnetio("wg", "up", str(path), "--netns", netns.name)
    assert up.returncode == 0, up.stderr
    assert f"{name}: up" in up.stdout
    assert "does not use Interface.PostUp" in up.stdout + up.stderr
    assert netns.has_link(name)
    assert {"10.77.0.1/24", "fd77::1/64"} <= netns.addresses(name)
    routes = netns.ip("route", "show", "dev", name)
    assert "10.78.0.0/16" in routes and "10.77.0.2" in routes
    # wireguard-tools reads vnetio's state through the userspace API socket.
    shown = subprocess.run([wg, "show", name], capture_output=True, text=True, check=True).stdout
    assert "listening port: 51900" in shown and "preshared key: (hidden)" in shown
    assert "10.77.0.2/32, 10.78.0.0/16" in shown and "every 25 seconds" in shown
    showconf = subprocess.run([wg, "showconf", name], capture_output=True, text=True, check=True)
    again = wireguard.Config.parse(showconf.stdout)
    original = wireguard.Config.parse(path.read_text())
    assert again.private_key == original.private_key
    assert again.peers[0].preshared_key == original.peers[0].preshared_key
    # `wg set` changes the interface the background process holds.
    extra = wireguard.pubkey(wireguard.genkey())
    subprocess.run([wg, "set", name, "peer", extra, "allowed-ips", "10.79.0.0/16"], check=True)
    allowed = subprocess.run(
        [wg, "show", name, "allowed-ips"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{extra}\t10.79.0.0/16" in allowed, allowed
    listed = vnetio("list", "--netns", netns.name, "--json")
    (tun,) = [a for a in json.loads(listed.stdout) if a["name"] == name]
    assert tun["wireguard"] == tun["holders"][0]["pid"], tun
    ours = vnetio("wg", "show", name)
    assert ours.returncode == 0 and "latest handshake: never" in ours.stdout, ours
    assert name in vnetio("wg", "show").stdout
    # A second `up` of the same name is refused, naming the problem.
    second = vnetio("wg", "up", str(path), "--netns", netns.name)
    assert second.returncode == 1
    down = vnetio("wg", "down", name)
    assert down.returncode == 0, down.stderr
    assert not netns.has_link(name)
    assert not uapi.socket_path(name).exists()
    gone = vnetio("wg", "down", name)
    assert gone.returncode == 1 and "is up" in gone.stderr


def test_a_bad_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "vnwgbad.conf"
    path.write_text("[Interface]\nPrivateKey = x\n[Peer]\nAllowedIPs = 10.0.0.0/8\n")
    result = vnetio("wg", "up", str(path), "--foreground")
    assert result.returncode == 1 and "no PublicKey" in result.stderr, result


@pytest.mark.ipv6
def test_a_killed_interface_is_named_by_doctor_and_cleaned_up(
    netns: Netns, conf: tuple[Path, str]
) -> None:
    path, name = conf
    up = subprocess.Popen(
        [sys.executable, "-m", "vnetio.cli", "wg", "up", "--foreground", str(path),
         "--netns", netns.name],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None and f"{name}: up" in up.stdout.readline()
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
    deadline = time.monotonic() + 5
    while netns.has_link(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not netns.has_link(name), "the TUN outlived its process"
    (record,) = [r for r in uapi.records() if r.name == name]
    assert record.pid == up.pid and not record.alive
    doctor = vnetio("doctor", "--json")
    findings = [f for f in json.loads(doctor.stdout) if f["check"] == "wireguard-stale"]
    assert any(name in f["summary"] and f["adapter"] == name for f in findings), findings
    dry = vnetio("cleanup", "--dry-run")
    assert f"would remove  WireGuard record {name}" in dry.stdout
    assert uapi.socket_path(name).exists()
    done = vnetio("cleanup")
    assert f"removed  WireGuard record {name}" in done.stdout, done
    assert not uapi.socket_path(name).exists()
    assert name not in [r.name for r in uapi.records()]


def test_a_live_interface_is_not_stale_to_a_user_who_may_not_connect(netns: Netns) -> None:
    """Its socket is root's (0600): a doctor run as nobody cannot ask it, and must not call
    the live interface stale (CI once saw exactly that, from a concurrent test's interface)."""
    name = f"vnwgl{random_suffix(2)}"
    # nobody, able to read (the wheel's virtualenv may sit in a 0700 directory) but with no
    # right to write, so not to connect to a root-owned socket either
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
              "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip
    with wireguard.Interface(wireguard.genkey(), tun=name, netns=netns.name, uapi=True):
        path = uapi.socket_path(name)
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
        connect = (
            "import socket\ntry:\n"
            f"    socket.socket(socket.AF_UNIX).connect({str(path)!r})\n    print('connected')\n"
            "except PermissionError:\n    print('refused')"
        )
        probe = subprocess.run(
            [*nobody, sys.executable, "-c", connect],
            capture_output=True, text=True, timeout=60, check=False, cwd="/",
        )  # fmt: skip
        assert probe.stdout.strip() == "refused", probe  # the condition this test is about
        doctor = subprocess.run(
            [*nobody, sys.executable, "-m", "vnetio.cli", "doctor", "--json"],
            capture_output=True, text=True, timeout=60, check=False, cwd="/",
        )  # fmt: skip
        assert doctor.stdout, doctor
        findings = json.loads(doctor.stdout)
        assert not [f for f in findings if f["adapter"] == name], findings
