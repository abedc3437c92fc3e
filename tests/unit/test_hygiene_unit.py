"""vnetio.hygiene without privileges: durations, ids, flags, decisions, ledger, CLI parsing."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import vnetio
from vnetio import cli, hygiene
from vnetio.cli import adapters as cli_adapters
from vnetio.hygiene import AdapterInfo, Holder, ledger, model, ops, scan

# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("45s", 45),
        ("10m", 600),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        (" 1.5h ", 5400),
        (".5m", 30),
        ("0", 0),
        (3, 3),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert hygiene.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "x", "1y", "-5", "1h x", "h", "nan", float("inf"), -1])
def test_parse_duration_rejects(text: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        hygiene.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.9, "42s"), (60, "1m"), (307, "5m07s"), (3600, "1h"), (3900, "1h05m")]
    + [(86400, "1d"), (187200, "2d04h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert hygiene.format_duration(seconds) == text


# --- users, groups, flags ------------------------------------------------------------------------


def test_resolve_ids() -> None:
    resolve = model._resolve_id
    assert resolve(None, "user") is None
    assert resolve(0, "user") == 0 and resolve("0", "group") == 0
    assert resolve("root", "user") == 0 and resolve("root", "group") == 0
    with pytest.raises(LookupError, match="no user named 'vnetio-t-nobody-here'"):
        resolve("vnetio-t-nobody-here", "user")
    with pytest.raises(LookupError, match="no group named"):
        resolve("vnetio-t-nobody-here", "group")
    with pytest.raises(ValueError, match="out of range"):
        resolve(-1, "user")
    with pytest.raises(TypeError):
        resolve(True, "user")
    with pytest.raises(TypeError):
        resolve(1.5, "group")  # type: ignore[arg-type]


def test_flag_names_decode_tun_flags() -> None:
    assert model._flag_names(0x1802) == ("IFF_TAP", "IFF_PERSIST", "IFF_NO_PI")
    assert model._flag_names(0x5901) == (
        "IFF_TUN",
        "IFF_MULTI_QUEUE",
        "IFF_PERSIST",
        "IFF_NO_PI",
        "IFF_VNET_HDR",
    )
    assert model._flag_names(0x10002 | 0x10) == ("IFF_TAP", "IFF_NAPI", "0x10000")


def test_flags_derived_from_rtnetlink_match_sysfs_for_the_common_bits() -> None:
    tun = {"mode": "tap", "pi": False, "vnet_hdr": True, "persist": True, "multi_queue": True}
    assert model._derived_flags(tun) == 0x0002 | 0x1000 | 0x4000 | 0x0800 | 0x0100
    tun = {"mode": "tun", "pi": True, "vnet_hdr": False, "persist": False, "multi_queue": False}
    assert model._derived_flags(tun) == 0x0001


# --- AdapterInfo and cleanup's decisions ---------------------------------------------------------


def adapter(**changes: Any) -> AdapterInfo:
    base = AdapterInfo(
        name="vn0",
        netns="blue",
        ifindex=7,
        mode="tap",
        flags=0x1802,
        flag_names=("IFF_TAP", "IFF_PERSIST", "IFF_NO_PI"),
        owner=1000,
        owner_name="alice",
        group=None,
        group_name=None,
        persistent=True,
        multi_queue=False,
        up=False,
        carrier=False,
        mtu=1500,
        queues=0,
        disabled_queues=0,
        known_since=time.time() - 120,
        known_since_source="created",
    )
    return dataclasses.replace(base, **changes)


def test_adapter_info_states_and_json() -> None:
    orphan = adapter()
    assert orphan.orphaned and not orphan.held and orphan.where == "vn0 (netns blue)"
    assert orphan.age is not None and 119 < orphan.age < 130
    held = adapter(queues=1, carrier=True, holders=(Holder(42, "qemu", (5,)),))
    assert held.held and not held.orphaned
    assert not adapter(persistent=False, queues=1).orphaned
    assert adapter(multi_queue=True, disabled_queues=1).held  # a disabled queue still holds it
    assert adapter(netns=None).where == "vn0" and adapter(known_since=None).age is None
    data = held.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["holders"] == [{"pid": 42, "command": "qemu", "fds": [5]}]
    assert {"mode", "flags", "flag_names", "owner", "group", "persistent", "carrier", "mtu"} <= set(
        data
    )
    assert {"queues", "holders", "orphaned", "age_seconds", "known_since_source"} <= set(data)
    assert data["orphaned"] is False and data["held"] is True


def test_keep_reasons() -> None:
    keep = ops._keep_reason
    assert keep(adapter(), None) is None
    assert keep(adapter(), 60) is None  # known for 120 s
    assert "not older than 1h" in str(keep(adapter(), 3600))
    assert "created by vnetio" in str(keep(adapter(), 3600))
    assert "age unknown" in str(keep(adapter(known_since=None), 1))
    held = adapter(queues=1, holders=(Holder(42, "qemu", (5,)), Holder(43, "x", (3, 4))))
    assert keep(held, None) == "held open by PID 42 (qemu), PID 43 (x)"
    invisible = keep(adapter(queues=2, multi_queue=True), None)
    assert invisible == "held open by 2 descriptors of a process not visible here"
    temp = keep(adapter(persistent=False, queues=1, holders=(Holder(9, "t", (3,)),)), None)
    assert temp is not None and "not persistent" in temp


def test_macvtap_links_are_held_when_the_scan_may_have_missed_a_holder() -> None:
    link = adapter(
        name="vnmvt0",
        mode="macvtap",
        flags=0,
        flag_names=(),
        owner=None,
        owner_name=None,
        lower="eth0",
        macvtap_mode="bridge",
    )
    assert link.orphaned and ops._keep_reason(link, None) is None
    data = link.as_dict()
    assert (data["mode"], data["lower"], data["macvtap_mode"]) == ("macvtap", "eth0", "bridge")
    unsure = dataclasses.replace(link, holders_complete=False)
    assert unsure.held and not unsure.orphaned
    assert "possibly held open" in str(ops._keep_reason(unsure, None))
    qemu = dataclasses.replace(link, queues=2, holders=(Holder(42, "qemu", (5, 6)),))
    assert ops._keep_reason(qemu, None) == "held open by PID 42 (qemu)"


def test_macvtap_holders_by_device_number() -> None:
    rdev = os.makedev(246, 1)
    found = scan._Scan([], {rdev: [(os.getpid(), 9), (os.getpid(), 7)]}, complete=True)
    (h,) = scan.holders_by_device(found, rdev)
    assert (h.pid, h.fds) == (os.getpid(), (7, 9))
    assert scan.holders_by_device(found, os.makedev(246, 2)) == ()
    link = {"ifindex": 9, "macvtap": {"mode": "bridge", "lower": "eth0", "dev": (246, 1)}}
    assert scan.macvtap_rdev(link) == rdev
    assert scan.macvtap_rdev({"macvtap": {"dev": None}}) is None
    assert scan.macvtap_holders([{"ifindex": 1, "macvtap": None}]) == ({}, True)


def test_holders_are_matched_by_namespace_when_known() -> None:
    blue, red = scan._Ns("blue", (1, 100)), scan._Ns("red", (1, 200))

    def link(ifindex: int, *, mq: bool = False, queues: int = 0) -> dict[str, Any]:
        tun = {"multi_queue": mq, "queues": queues, "disabled_queues": 0}
        return {"name": "vn0", "ifindex": ifindex, "tun": tun}

    found = [(blue, link(3)), (red, link(4))]
    fds = [scan._TunFd(4242, 5, "vn0", (1, 100))]
    assert list(scan._assign_holders(fds, found)) == [("blue", 3)]
    unknown = [scan._TunFd(4242, 5, "vn0", None)]  # no namespace: matched by name
    assert set(scan._assign_holders(unknown, found)) == {("blue", 3), ("red", 4)}
    # A multi-queue adapter the kernel counts no queues on cannot be the one held.
    found = [(blue, link(3, mq=True, queues=0)), (red, link(4, mq=True, queues=1))]
    assert list(scan._assign_holders(unknown, found)) == [("red", 4)]


# --- the age ledger ------------------------------------------------------------------------------


def test_ledger_keeps_the_first_sighting_and_prunes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VNETIO_STATE_DIR", str(tmp_path))
    ns = scan._Ns(None, (1, 99))
    root = ledger._ledger_dir()
    assert root == tmp_path
    link = {"ifindex": 5, "name": "vn0", "seen_at": 1000.0}
    assert ledger._known_since(root, ns, link, None) == (1000.0, "first-seen")
    link["seen_at"] = 2000.0  # seen again later: the first sighting stays
    assert ledger._known_since(root, ns, link, None) == (1000.0, "first-seen")
    assert ledger._known_since(root, ns, link, 900.0) == (900.0, "sysfs")  # earlier wins
    path = ledger._ledger_file(root, ns, 5, "vn0")
    assert ledger._ledger_write(path, 500.0, "created", replace=True)
    assert ledger._known_since(root, ns, link, None) == (500.0, "created")
    ledger._ledger_prune(root, ns, {"6-vn1"})
    assert not path.exists()
    assert ledger._known_since(None, ns, link, None) == (None, None)


def test_no_ledger_without_a_writable_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VNETIO_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert ledger._ledger_dir() is None
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert ledger._ledger_dir() == Path("/run/user/1000/vnetio")


def test_ledger_write_failure_is_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not ledger._ledger_write(blocker / "x" / "y", 1.0, "created", replace=True)


# --- API argument checks (before any system call) -------------------------------------------------


def test_create_rejects_bad_arguments_before_touching_anything() -> None:
    with pytest.raises(ValueError, match="mode"):
        vnetio.create_adapter("vnx0", "bridge")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        vnetio.create_adapter("bad/name", "tap")
    with pytest.raises(LookupError):
        vnetio.create_adapter("vnx0", "tap", owner="vnetio-t-nobody-here")
    with pytest.raises(FileNotFoundError, match="network namespace 'vnetio-t-none'"):
        vnetio.create_adapter("vnx0", "tap", netns="vnetio-t-none")


def test_list_scope_arguments() -> None:
    with pytest.raises(ValueError, match="either"):
        vnetio.list_adapters(netns="x", all_namespaces=True)
    with pytest.raises(FileNotFoundError):
        vnetio.list_adapters(netns="vnetio-t-none")


def test_public_names_are_exported() -> None:
    for name in hygiene.__all__:
        if not name.startswith("format"):
            assert name in vnetio.__all__ and getattr(vnetio, name) is getattr(hygiene, name)


# --- CLI parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "vnx0"],  # --tap or --tun is required
        ["create", "vnx0", "--tap", "--tun"],
        ["create", "vnx0", "--tap", "--queues", "two"],
        ["list", "--netns", "a", "--all-namespaces"],
        ["cleanup", "--netns", "a", "--all-namespaces"],
        ["delete"],
    ],
)
def test_cli_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: vnetio" in capsys.readouterr().err


def test_cli_offload_is_not_available_yet(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["create", "vnx0", "--tap", "--offload"]) == 2
    err = capsys.readouterr().err
    assert "--offload is not available yet" in err and "vnetio.Tap('vnx0', offload=True)" in err


def test_cli_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cleanup", "--older-than", "soon"]) == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err


def test_cli_table_lists_every_column() -> None:
    held = adapter(queues=1, carrier=True, holders=(Holder(42, "qemu", (5,)),))
    text = cli_adapters._adapter_table([adapter(), held], show_netns=True)
    header, first, second = text.splitlines()
    assert header.split() == [
        "NAME", "NETNS", "MODE", "FLAGS", "OWNER", "GROUP", "PERSIST", "CARRIER", "MTU",
        "QUEUES", "HOLDERS", "ORPHANED", "AGE",
    ]  # fmt: skip
    assert first.split()[:5] == ["vn0", "blue", "tap", "persist,no_pi", "alice"]
    assert "ORPHANED" in first.split() and "2m" in first.split()
    assert "42/qemu" in second.split() and "ORPHANED" not in second.split()
