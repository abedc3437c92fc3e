"""owner=/group= and what a process without CAP_NET_ADMIN may do.

Unprivileged processes run inside the test's namespace. The "nobody" runs also get a
private mount namespace whose /dev/net/tun is our own 0666 node on a tmpfs, bind-mounted
over the real one: the host's 0600 node is never changed (TAP-FACTS.md, "Testing as an
unprivileged user").
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import vnetio

from tests.netutil import Netns

pytestmark = pytest.mark.privileged

NOBODY = 65534
OTHER_USER = 65533
REPO = Path(__file__).resolve().parents[2]

# Root, but without CAP_NET_ADMIN (the host's 0600 node is still root's to open).
DROP_NET_ADMIN = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"]


def as_user(uid: int) -> list[str]:
    # CAP_DAC_READ_SEARCH only: enough to start the interpreter that lives under /root.
    return [
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
    ]  # fmt: skip


# $1 = directory for our node, then the command.
WITH_OWN_TUN_NODE = (
    'mount -t tmpfs vnetio-t "$1" && mknod "$1/tun" c 10 200 && chmod 666 "$1/tun" '
    '&& mount --bind "$1/tun" /dev/net/tun && shift && exec "$@"'
)

OPEN_SCRIPT = textwrap.dedent(
    """
    import json, sys, vnetio
    try:
        with vnetio.Tap(sys.argv[1]) as tap:
            print(json.dumps({"ok": True, "created": tap.created, "name": tap.name}))
    except OSError as exc:
        print(json.dumps({"ok": False, "type": type(exc).__name__, "errno": exc.errno,
                          "message": str(exc)}))
    """
)


def open_tap_as(ns: Netns, tmp_path: Path, who: list[str], name: str) -> dict[str, object]:
    python = [sys.executable, "-c", OPEN_SCRIPT, name]
    if who == DROP_NET_ADMIN:
        argv = [*who, *python]
    else:
        node_dir = tmp_path / "dev"
        node_dir.mkdir(exist_ok=True)
        argv = ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", WITH_OWN_TUN_NODE, "sh", str(node_dir), *who, *python]  # fmt: skip
    host_mode = os.stat("/dev/net/tun").st_mode
    proc = subprocess.run(
        ["ip", "netns", "exec", ns.name, *argv],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert os.stat("/dev/net/tun").st_mode == host_mode, "the host's tun node was changed"
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize(
    "who", [pytest.param(DROP_NET_ADMIN, id="root-without-net-admin"),
            pytest.param(as_user(NOBODY), id="nobody")],
)  # fmt: skip
def test_creating_without_cap_net_admin_is_permission_error_with_hint(
    netns: Netns, tmp_path: Path, who: list[str]
) -> None:
    result = open_tap_as(netns, tmp_path, who, "vnperm0")
    assert result["ok"] is False, result
    assert result["type"] == "PermissionError", result
    assert result["errno"] == errno.EPERM, result
    message = str(result["message"])
    assert "CAP_NET_ADMIN" in message or "owner=" in message, message
    assert not netns.has_link("vnperm0")


def test_owner_and_group_are_set(netns: Netns) -> None:
    try:
        with vnetio.Tap("vnown0", persist=True, owner=1234, group=5678, netns=netns.name):
            pass
        # /sys/class/net is per namespace: read it from inside.
        assert netns.read_sys("vnown0/owner") == "1234"
        assert netns.read_sys("vnown0/group") == "5678"
        info = netns.link("vnown0")["linkinfo"]["info_data"]
        assert (info["user"], info["group"]) == (1234, 5678)
    finally:
        netns.ip("link", "del", "dev", "vnown0", check=False)


def test_owner_may_attach_others_may_not(netns: Netns, tmp_path: Path) -> None:
    try:
        with vnetio.Tap("vnown1", persist=True, owner=NOBODY, netns=netns.name):
            pass
        owner = open_tap_as(netns, tmp_path, as_user(NOBODY), "vnown1")
        assert owner == {"ok": True, "created": False, "name": "vnown1"}
        other = open_tap_as(netns, tmp_path, as_user(OTHER_USER), "vnown1")
        assert other["ok"] is False, other
        assert other["type"] == "PermissionError", other
        assert "owner" in str(other["message"]).lower(), other
        assert netns.has_link("vnown1")
    finally:
        netns.ip("link", "del", "dev", "vnown1", check=False)
