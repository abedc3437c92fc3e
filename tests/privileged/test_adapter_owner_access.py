"""The unprivileged flow, end to end, with real users that the test creates and removes.

Root creates persistent adapters with an owner or a group (``vnetio create --owner``,
``create_adapter(group=...)``); the users then run vnetio with every capability dropped
but CAP_DAC_READ_SEARCH (to start the interpreter that lives under /root), inside the
test's namespace and a private mount namespace whose /dev/net/tun is our own 0666 node:
the host's 0600 node is never changed (TAP-FACTS.md, "Testing as an unprivileged user").
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import vnetio

from tests.netutil import Netns, random_suffix, run

pytestmark = pytest.mark.privileged

# In a private mount namespace: a tmpfs (device nodes work there), our 0666 node bound over
# /dev/net/tun, then the command. $1 = directory, the rest = command.
WITH_OWN_TUN_NODE = (
    'mount -t tmpfs vnetio-t "$1" && mknod "$1/tun" c 10 200 && chmod 666 "$1/tun" '
    '&& mount --bind "$1/tun" /dev/net/tun && shift && exec "$@"'
)

TAP_MAC = "02:00:5e:10:aa:10"
USER_MAC = bytes.fromhex("02005e10aa01")

# Opens an adapter without privileges; for a TAP, sends ARP requests for 192.0.2.1 (the
# adapter's address on the kernel side) and waits for the kernel's ARP reply.
USER_SCRIPT = r"""
import json, os, struct, sys, time, vnetio
mode, name, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
out = {"uid": os.geteuid(), "gid": os.getegid(),
       "cap_net_admin": bool(int(status["CapEff"], 16) >> 12 & 1)}
mac = bytes.fromhex(sys.argv[4])
arp = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
       + mac + bytes([192, 0, 2, 2]) + bytes(6) + bytes([192, 0, 2, 1])).ljust(60, b"\0")
try:
    with (vnetio.Tap if mode == "tap" else vnetio.Tun)(name) as adapter:
        out["created"] = adapter.created
        reply = None
        deadline = time.monotonic() + 5
        sent = 0
        while frames and reply is None and time.monotonic() < deadline:
            sent += adapter.send_batch([arp] * frames)
            for f in adapter.recv_batch(timeout=0.2):
                f = bytes(f)
                if f[:6] == mac and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02":
                    reply = f
        out["sent"] = sent
        out["reply"] = None if reply is None else reply.hex()
except OSError as exc:
    out["error"] = {"type": type(exc).__name__, "errno": exc.errno, "message": str(exc)}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


@pytest.fixture
def make_user() -> Iterator[Any]:
    """Creates system users ``vnetio-t-<rand>`` on demand; removes them (and their groups)."""
    made: list[str] = []

    def make() -> User:
        name = f"vnetio-t-{random_suffix(3)}"
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        made.append(name)
        entry = pwd.getpwnam(name)
        return User(name, entry.pw_uid, entry.pw_gid)

    try:
        yield make
    finally:
        for name in made:
            run(["userdel", name], check=False)
            try:
                grp.getgrnam(name)
            except KeyError:
                continue
            run(["groupdel", name], check=False)


def as_user(
    ns: Netns, tmp_path: Path, user: User, argv: list[str]
) -> subprocess.CompletedProcess[str]:
    node_dir = tmp_path / "dev"
    node_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VNETIO_STATE_DIR", "XDG_RUNTIME_DIR")}
    host_mode = os.stat("/dev/net/tun").st_mode
    proc = subprocess.run(
        [
            "ip", "netns", "exec", ns.name,
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", WITH_OWN_TUN_NODE, "sh", str(node_dir),
            "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
            "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
            *argv,
        ],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert os.stat("/dev/net/tun").st_mode == host_mode, "the host's tun node was changed"
    return proc


def open_as(
    ns: Netns, tmp_path: Path, user: User, mode: str, name: str, frames: int = 0
) -> dict[str, Any]:
    argv = [sys.executable, "-c", USER_SCRIPT, mode, name, str(frames), USER_MAC.hex()]
    proc = as_user(ns, tmp_path, user, argv)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["uid"] == user.uid and result["cap_net_admin"] is False, result
    return result


def rx_packets(ns: Netns, dev: str) -> int:
    return int(ns.link(dev)["stats64"]["rx"]["packets"])


def test_owner_uses_its_adapter_without_privileges_and_others_are_told_who_owns_it(
    netns: Netns, tmp_path: Path, make_user: Any
) -> None:
    owner, other = make_user(), make_user()
    vnetio_cli = [sys.executable, "-m", "vnetio.cli"]
    # Root creates: a TAP for the owner (through the CLI), a TUN for the other user's group.
    created = subprocess.run(
        [*vnetio_cli, "create", "vnu0", "--tap", "--owner", owner.name, "--netns", netns.name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert f"owner {owner.name} ({owner.uid})" in created.stdout
    info = vnetio.create_adapter("vnu1", "tun", group=other.name, netns=netns.name)
    assert (info.group, info.group_name, info.owner) == (other.gid, other.name, None)
    assert int(netns.read_sys("vnu0/owner")) == owner.uid
    netns.ip("link", "set", "dev", "vnu0", "address", TAP_MAC)
    netns.ip("addr", "add", "192.0.2.1/24", "dev", "vnu0")
    netns.ip("link", "set", "dev", "vnu0", "up")
    before = rx_packets(netns, "vnu0")

    # The owner attaches, sends frames, and receives the kernel's ARP reply.
    result = open_as(netns, tmp_path, owner, "tap", "vnu0", frames=4)
    assert "error" not in result, result
    assert result["created"] is False
    assert result["reply"] is not None, result
    reply = bytes.fromhex(result["reply"])
    assert reply[6:12] == bytes.fromhex(TAP_MAC.replace(":", ""))  # from the adapter
    assert reply[28:32] == bytes([192, 0, 2, 1])  # "192.0.2.1 is at <the adapter's MAC>"
    assert rx_packets(netns, "vnu0") - before >= result["sent"] >= 4

    # Someone else may not, and is told who owns the adapter.
    denied = open_as(netns, tmp_path, other, "tap", "vnu0")
    assert denied["error"]["type"] == "PermissionError", denied
    assert f"uid {owner.uid}" in denied["error"]["message"], denied

    # Group ownership: the group's member attaches, the owner of vnu0 does not.
    member = open_as(netns, tmp_path, other, "tun", "vnu1")
    assert "error" not in member and member["created"] is False, member
    outsider = open_as(netns, tmp_path, owner, "tun", "vnu1")
    assert outsider["error"]["type"] == "PermissionError", outsider
    assert f"gid {other.gid}" in outsider["error"]["message"], outsider

    # The owner lists and deletes its own adapter, still without privileges; others cannot.
    listed = as_user(netns, tmp_path, owner, [*vnetio_cli, "list", "--json"])
    assert listed.returncode == 0, listed.stderr
    entry = {e["name"]: e for e in json.loads(listed.stdout)}["vnu0"]
    assert (entry["owner"], entry["owner_name"], entry["orphaned"]) == (owner.uid, owner.name, True)
    refused = as_user(netns, tmp_path, other, [*vnetio_cli, "delete", "vnu0"])
    assert refused.returncode == 1 and "PermissionError" in refused.stderr, refused.stderr
    assert netns.has_link("vnu0")
    deleted = as_user(netns, tmp_path, owner, [*vnetio_cli, "delete", "vnu0"])
    assert deleted.returncode == 0, deleted.stderr
    assert not netns.has_link("vnu0") and netns.has_link("vnu1")


def test_permission_error_names_the_owner_and_the_group(
    netns: Netns, tmp_path: Path, make_user: Any
) -> None:
    """README: "A user who is not the owner gets a PermissionError that names the adapter's
    owner and group (ids and names)"."""
    owner, member, outsider = make_user(), make_user(), make_user()
    vnetio.create_adapter("vnn0", "tap", owner=owner.name, group=member.name, netns=netns.name)
    vnetio.create_adapter("vnn1", "tun", owner=owner.uid, netns=netns.name)
    both = open_as(netns, tmp_path, outsider, "tap", "vnn0")
    assert both["error"]["type"] == "PermissionError", both
    assert both["error"]["errno"] == 1, both  # EPERM
    message = both["error"]["message"]
    assert f"vnn0 belongs to uid {owner.uid} ({owner.name}) / gid {member.gid} ({member.name})" in (
        message
    ), message
    only_owner = open_as(netns, tmp_path, outsider, "tun", "vnn1")
    message = only_owner["error"]["message"]
    assert f"vnn1 belongs to uid {owner.uid} ({owner.name}) / gid none" in message, only_owner
