"""Adapter hygiene on real adapters: create, delete, list and cleanup (API and CLI).

Every test works in its own namespace (the `netns` fixture) and never asks for
``--all-namespaces`` cleanup: other namespaces on the machine are not ours to touch. What
the tests check comes from the kernel through `ip` and sysfs, not from vnetio. Processes
that hold adapters are started by the tests and ended by their PID.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import vnetio

from tests.netutil import Netns, create_netns, delete_netns

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parents[2]
VNETIO = [sys.executable, "-m", "vnetio.cli"]

HOLD_SCRIPT = """
import sys, time, vnetio
mode, name, netns, queues, persist = sys.argv[1:6]
cls = vnetio.Tap if mode == "tap" else vnetio.Tun
adapter = cls(name, netns=netns, queues=int(queues), persist=persist == "1")
print(adapter.name, flush=True)
time.sleep(300)
"""


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """vnetio's age ledger in a directory of this test (CLI subprocesses inherit it)."""
    path = tmp_path / "vnetio-state"
    monkeypatch.setenv("VNETIO_STATE_DIR", str(path))
    return path


@contextmanager
def holder(
    ns: Netns, name: str, mode: str = "tap", *, queues: int = 1, persist: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """A process of ours that opens (or creates) ``name`` and holds it until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, mode, name, ns.name, str(queues), str(int(persist))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != name:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"holder for {name} did not start: {line!r} {err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def kill_holder(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*VNETIO, *args], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert proc.returncode == 0, f"vnetio {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


def tuntaps(ns: Netns) -> dict[str, dict[str, Any]]:
    """TUN/TAP adapters of ``ns`` as `ip -d link` reports them."""
    links = ns.ip_json("-d", "link", "show")
    return {
        link["ifname"]: link for link in links if link.get("linkinfo", {}).get("info_kind") == "tun"
    }


def tun_data(ns: Netns, name: str) -> dict[str, Any]:
    data: dict[str, Any] = ns.link(name)["linkinfo"]["info_data"]
    return data


def owner_group(ns: Netns, name: str) -> tuple[int, int]:
    """uid and gid from sysfs (-1: not set); `ip -j` would print names."""
    return int(ns.read_sys(f"{name}/owner")), int(ns.read_sys(f"{name}/group"))


def by_name(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (entry,) = [e for e in entries if e["name"] == name]
    return entry


# --- create / delete ---------------------------------------------------------------------------


def test_create_and_delete_through_the_api(netns: Netns) -> None:
    tap = vnetio.create_adapter(
        "vnh0", "tap", owner="nobody", group=65534, mtu=1400, netns=netns.name
    )
    tun = vnetio.create_adapter("vnh%d", "tun", queues=3, netns=netns.name)
    try:
        assert (tap.name, tap.mode, tap.netns, tap.persistent) == ("vnh0", "tap", netns.name, True)
        assert (tap.owner, tap.owner_name, tap.group, tap.group_name) == (
            65534,
            "nobody",
            65534,
            "nogroup",
        )
        assert tap.mtu == 1400 and tap.orphaned and not tap.held
        assert tap.known_since_source == "created" and tap.age is not None and tap.age < 30
        data = tun_data(netns, "vnh0")
        assert (data["type"], data["persist"]) == ("tap", True)
        assert owner_group(netns, "vnh0") == (65534, 65534)
        assert netns.link("vnh0")["mtu"] == 1400
        assert tun.name == "vnh1" and tun.mode == "tun" and tun.multi_queue
        data = tun_data(netns, tun.name)
        assert (data["type"], data["multi_queue"], data["persist"]) == ("tun", True, True)
        assert int(netns.read_sys(f"{tun.name}/tun_flags"), 16) == tun.flags
        assert "IFF_MULTI_QUEUE" in tun.flag_names and "IFF_TUN" in tun.flag_names

        gone = vnetio.delete_adapter("vnh0", netns=netns.name)
        assert gone.name == "vnh0"
        assert set(tuntaps(netns)) == {tun.name}
        vnetio.delete_adapter(tun.name, netns=netns.name)
        assert tuntaps(netns) == {}
    finally:
        for name in ("vnh0", "vnh1"):
            netns.ip("link", "del", "dev", name, check=False)


def test_create_refuses_existing_names_and_unknown_users(netns: Netns) -> None:
    netns.ip("link", "add", "vnbr9", "type", "bridge")
    netns.ip("tuntap", "add", "dev", "vnh2", "mode", "tun")
    with pytest.raises(FileExistsError, match="bridge") as info:
        vnetio.create_adapter("vnbr9", "tap", netns=netns.name)
    assert info.value.errno == errno.EEXIST
    with pytest.raises(FileExistsError, match="TUN adapter"):
        vnetio.create_adapter("vnh2", "tap", netns=netns.name)
    with pytest.raises(LookupError, match="no user named"):
        vnetio.create_adapter("vnh3", "tap", owner="vnetio-t-no-such-user", netns=netns.name)
    with pytest.raises(LookupError, match="no group named"):
        vnetio.create_adapter("vnh3", "tap", group="vnetio-t-no-such-group", netns=netns.name)
    with pytest.raises(ValueError, match="mode"):
        vnetio.create_adapter("vnh3", "ethernet", netns=netns.name)  # type: ignore[arg-type]
    assert netns.link("vnbr9")["linkinfo"]["info_kind"] == "bridge"
    assert set(tuntaps(netns)) == {"vnh2"}
    assert tun_data(netns, "vnh2")["type"] == "tun"


def test_delete_never_touches_other_kinds_or_missing_names(netns: Netns) -> None:
    netns.ip("link", "add", "vnbr9", "type", "bridge")
    with pytest.raises(ValueError, match="not a TUN/TAP adapter"):
        vnetio.delete_adapter("vnbr9", netns=netns.name)
    with pytest.raises(ValueError, match="not a TUN/TAP adapter"):
        vnetio.delete_adapter("vnbr9", netns=netns.name, force=True)
    with pytest.raises(FileNotFoundError, match="no adapter named vnh9"):
        vnetio.delete_adapter("vnh9", netns=netns.name)
    assert netns.has_link("vnbr9")


def test_delete_refuses_a_held_adapter_unless_forced(netns: Netns) -> None:
    vnetio.create_adapter("vnh4", "tap", netns=netns.name)
    with holder(netns, "vnh4") as proc:
        with pytest.raises(OSError, match=f"held open by PID {proc.pid}") as info:
            vnetio.delete_adapter("vnh4", netns=netns.name)
        assert info.value.errno == errno.EBUSY
        assert tun_data(netns, "vnh4")["persist"] is True  # refused before touching it
        result = cli("delete", "vnh4", "--netns", netns.name, check=False)
        assert result.returncode == 1
        assert f"PID {proc.pid}" in result.stderr and "--force" in result.stderr
        assert netns.has_link("vnh4")
        vnetio.delete_adapter("vnh4", netns=netns.name, force=True)
        assert not netns.has_link("vnh4")
        assert proc.poll() is None  # the holder lost its adapter, not its life


def test_delete_multi_queue_adapter_held_by_another_queue_is_refused(netns: Netns) -> None:
    vnetio.create_adapter("vnh5", "tap", queues=2, netns=netns.name)
    with holder(netns, "vnh5", queues=2):
        with pytest.raises(OSError) as info:
            vnetio.delete_adapter("vnh5", netns=netns.name)
        assert info.value.errno == errno.EBUSY
        assert tun_data(netns, "vnh5")["persist"] is True
    vnetio.delete_adapter("vnh5", netns=netns.name)
    assert not netns.has_link("vnh5")


def test_cli_create_list_delete(netns: Netns) -> None:
    out = cli(
        "create", "vnh6", "--tun", "--owner", "nobody", "--group", "nogroup",
        "--mtu", "1280", "--queues", "2", "--netns", netns.name,
    ).stdout  # fmt: skip
    assert "created TUN vnh6" in out and "nobody (65534)" in out and "2 queues" in out
    data = tun_data(netns, "vnh6")
    assert (data["type"], data["multi_queue"]) == ("tun", True)
    assert owner_group(netns, "vnh6") == (65534, 65534)
    assert netns.link("vnh6")["mtu"] == 1280
    created = json.loads(cli("create", "vnh7", "--tap", "--netns", netns.name, "--json").stdout)
    assert created["name"] == "vnh7" and created["owner"] is None and created["orphaned"]

    again = cli("create", "vnh6", "--tap", "--netns", netns.name, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr

    listed = json.loads(cli("list", "--json", "--netns", netns.name).stdout)
    assert {e["name"] for e in listed} == {"vnh6", "vnh7"}
    table = cli("list", "--netns", netns.name).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "NETNS", "MODE"]
    assert any(line.split()[:3] == ["vnh6", netns.name, "tun"] for line in table.splitlines())

    assert "deleted TUN vnh6" in cli("delete", "vnh6", "--netns", netns.name).stdout
    assert "deleted TAP vnh7" in cli("delete", "vnh7", "--netns", netns.name).stdout
    assert tuntaps(netns) == {}
    assert "no TUN/TAP adapters" in cli("list", "--netns", netns.name).stdout


def test_cli_offload_is_refused_clearly(netns: Netns) -> None:
    result = cli("create", "vnh8", "--tap", "--offload", "--netns", netns.name, check=False)
    assert result.returncode == 2
    assert "--offload is not available yet" in result.stderr
    assert tuntaps(netns) == {}


# --- list ------------------------------------------------------------------------------------


def test_list_reports_every_field(netns: Netns) -> None:
    netns.ip("link", "add", "vnbr0", "type", "bridge")  # not TUN/TAP: never listed
    vnetio.create_adapter("vnl0", "tap", owner=65534, group="nogroup", mtu=1400, netns=netns.name)
    vnetio.create_adapter("vnl1", "tun", queues=2, netns=netns.name)
    netns.ip("link", "set", "dev", "vnl0", "up")
    with holder(netns, "vnl0") as p0, holder(netns, "vnl1", "tun", queues=2) as p1:
        listed = json.loads(cli("list", "--json", "--netns", netns.name).stdout)
        assert {e["name"] for e in listed} == {"vnl0", "vnl1"}
        tap, tun = by_name(listed, "vnl0"), by_name(listed, "vnl1")
        assert tap["mode"] == "tap" and tun["mode"] == "tun"
        assert tap["flags"] == int(netns.read_sys("vnl0/tun_flags"), 16)
        assert tun["flags"] == int(netns.read_sys("vnl1/tun_flags"), 16)
        assert set(tap["flag_names"]) == {"IFF_TAP", "IFF_NO_PI", "IFF_PERSIST"}
        assert "IFF_MULTI_QUEUE" in tun["flag_names"] and tun["multi_queue"] is True
        assert (tap["owner"], tap["owner_name"], tap["group"], tap["group_name"]) == (
            65534,
            "nobody",
            65534,
            "nogroup",
        )
        assert tun["owner"] is None and tun["group"] is None
        assert tap["persistent"] and tun["persistent"]
        assert tap["mtu"] == 1400 and tun["mtu"] == netns.link("vnl1")["mtu"]
        assert tap["carrier"] is True and tap["up"] is True  # held and up
        assert tap["queues"] == 1 and tun["queues"] == 2
        assert [h["pid"] for h in tap["holders"]] == [p0.pid]
        assert [h["pid"] for h in tun["holders"]] == [p1.pid]
        assert len(tun["holders"][0]["fds"]) == 2
        assert not tap["orphaned"] and not tun["orphaned"]
        assert tap["netns"] == netns.name and tap["ifindex"] == netns.link("vnl0")["ifindex"]
        kill_holder(p1)
        after = by_name(json.loads(cli("list", "--json", "--netns", netns.name).stdout), "vnl1")
        assert after["queues"] == 0 and after["holders"] == [] and after["orphaned"] is True
        assert after["carrier"] is False and after["known_since_source"] == "created"


def test_list_tells_same_named_adapters_in_two_namespaces_apart(netns: Netns) -> None:
    other = create_netns()
    try:
        netns.ip("tuntap", "add", "dev", "vnsame0", "mode", "tap")
        other.ip("tuntap", "add", "dev", "vnsame0", "mode", "tap")
        with holder(netns, "vnsame0") as proc:
            mine = vnetio.list_adapters(netns=netns.name)
            theirs = vnetio.list_adapters(netns=other.name)
            assert [h.pid for h in mine[0].holders] == [proc.pid] and not mine[0].orphaned
            assert theirs[0].holders == () and theirs[0].orphaned
            everywhere = vnetio.list_adapters(all_namespaces=True)
            found = {(a.netns, a.name): a for a in everywhere}
            assert found[(netns.name, "vnsame0")].holders == mine[0].holders
            assert found[(other.name, "vnsame0")].orphaned
            result = vnetio.cleanup(netns=other.name)
            assert [e.adapter.name for e in result.removed] == ["vnsame0"]
            assert not other.has_link("vnsame0") and netns.has_link("vnsame0")
    finally:
        delete_netns(other.name)


# --- cleanup ---------------------------------------------------------------------------------


def test_cleanup_removes_orphans_and_nothing_else(netns: Netns) -> None:
    netns.ip("link", "add", "vnbr0", "type", "bridge")
    netns.ip("link", "add", "vnveth0", "type", "veth", "peer", "name", "vnveth1")
    netns.ip("tuntap", "add", "dev", "vnc1", "mode", "tun", "multi_queue")  # orphan too
    with holder(netns, "vnc0", persist=True) as dying:  # creates vnc0, persistent
        kill_holder(dying)  # SIGKILL: no chance to clean up; vnc0 is left behind
    assert tun_data(netns, "vnc0")["persist"] is True
    vnetio.create_adapter("vnheld0", "tap", netns=netns.name)
    before = netns.links()
    with (
        holder(netns, "vnheld0") as held,
        holder(netns, "vntemp0", "tun", persist=False) as temp,
    ):
        dry = cli("cleanup", "--dry-run", "--netns", netns.name).stdout
        assert netns.links() == before | {"vntemp0"}  # the dry run deleted nothing
        assert f"would remove  vnc0 (netns {netns.name}): orphaned" in dry
        assert "would remove  vnc1" in dry and "dry run: nothing was deleted" in dry
        assert f"vnheld0 (netns {netns.name}): held open by PID {held.pid}" in dry

        out = cli("cleanup", "--netns", netns.name).stdout
        assert f"removed  vnc0 (netns {netns.name}): orphaned: persistent" in out
        assert "removed  vnc1" in out
        assert f"kept     vnheld0 (netns {netns.name}): held open by PID {held.pid}" in out
        assert f"kept     vntemp0 (netns {netns.name}): held open by PID {temp.pid}" in out
        assert "not persistent" in out and "removed 2, kept 2" in out
        assert "vnbr0" not in out and "vnveth0" not in out  # other kinds are not even listed

        assert netns.links() == before - {"vnc0", "vnc1"} | {"vntemp0"}
        assert tun_data(netns, "vnheld0")["persist"] is True
        assert netns.link("vnbr0")["linkinfo"]["info_kind"] == "bridge"
        assert held.poll() is None and temp.poll() is None
        again = vnetio.cleanup(netns=netns.name)
        assert again.removed == () and {e.adapter.name for e in again.kept} == {
            "vnheld0",
            "vntemp0",
        }


def test_cleanup_older_than_uses_the_known_age(netns: Netns) -> None:
    vnetio.create_adapter("vna0", "tap", netns=netns.name)  # age known from its creation
    netns.ip("tuntap", "add", "dev", "vna1", "mode", "tap")  # made behind vnetio's back
    young = vnetio.cleanup(older_than="1h", netns=netns.name)
    assert young.removed == () and young.older_than == 3600
    reasons = {e.adapter.name: e.reason for e in young.kept}
    assert "not older than 1h" in reasons["vna0"] and "created by vnetio" in reasons["vna0"]
    # This cleanup saw it first; its age is the earlier of that moment and its sysfs entry's
    # change time, which the kernel stamps (with its coarse clock, up to a tick behind) when
    # the entry is first looked up — by this cleanup, a moment later: either may be earlier.
    assert "not older than 1h" in reasons["vna1"], reasons
    assert "first seen by vnetio" in reasons["vna1"] or "by its sysfs entry" in reasons["vna1"]
    assert set(tuntaps(netns)) == {"vna0", "vna1"}

    time.sleep(1.5)
    netns.ip("tuntap", "add", "dev", "vna2", "mode", "tap")  # never seen before
    out = cli("cleanup", "--older-than", "1s", "--netns", netns.name).stdout
    assert "removed  vna0" in out and "removed  vna1" in out
    assert "kept     vna2" in out and "not older than 1s" in out
    assert set(tuntaps(netns)) == {"vna2"}
    assert [e.adapter.name for e in vnetio.cleanup(netns=netns.name).removed] == ["vna2"]
    assert tuntaps(netns) == {}


def test_cleanup_json_and_bad_duration(netns: Netns) -> None:
    netns.ip("tuntap", "add", "dev", "vnj0", "mode", "tap")
    data = json.loads(cli("cleanup", "--dry-run", "--json", "--netns", netns.name).stdout)
    assert data["dry_run"] is True and [e["adapter"]["name"] for e in data["removed"]] == ["vnj0"]
    assert netns.has_link("vnj0")
    bad = cli("cleanup", "--older-than", "soon", "--netns", netns.name, check=False)
    assert bad.returncode == 2 and "invalid duration" in bad.stderr
    assert netns.has_link("vnj0")


def test_the_core_tells_the_namespace_behind_a_descriptor(netns: Netns) -> None:
    """`tun_fd_netns` (pidfd_getfd + TUNGETDEVNETNS in the core's sys module) names the
    adapter's namespace, not the holder's; a descriptor that is not a TUN gives None."""
    with vnetio.Tap("vnfdns0", netns=netns.name) as tap:
        st = os.stat(f"/run/netns/{netns.name}")
        assert vnetio._core.tun_fd_netns(os.getpid(), tap.fileno()) == (st.st_dev, st.st_ino)
        own = os.stat("/proc/self/ns/net")
        assert (own.st_dev, own.st_ino) != (st.st_dev, st.st_ino)
    assert vnetio._core.tun_fd_netns(os.getpid(), 0) is None  # stdin: not a TUN
    assert vnetio._core.tun_fd_netns(2**22, 3) is None  # no such process
