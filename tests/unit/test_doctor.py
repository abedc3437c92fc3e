"""`vnetio doctor`: every finding, driven through the module's seams with faked inputs."""

from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from vnetio.cli import doctor
from vnetio.cli.doctor import Finding, common, machine

# Kernel values (include/uapi/linux/if_tun.h); the fake core below uses them.
IFF = {
    "IFF_TUN": 0x0001,
    "IFF_TAP": 0x0002,
    "IFF_NAPI": 0x0010,
    "IFF_MULTI_QUEUE": 0x0100,
    "IFF_VNET_HDR": 0x4000,
}
ALL_FEATURES = sum(IFF.values())
CAP_NET_ADMIN_BIT = 1 << 12


def fake_core(
    version: str = "0.1.0",
    abi: int = machine.EXPECTED_ABI,
    features: int | OSError = ALL_FEATURES,
) -> SimpleNamespace:
    def tun_features() -> int:
        if isinstance(features, OSError):
            raise features
        return features

    return SimpleNamespace(
        __version__=version,
        __file__="/fake/_core.abi3.so",
        ABI_VERSION=abi,
        build_profile="release",
        tun_features=tun_features,
        **IFF,
    )


def by_check(findings: list[Finding], check: str) -> Finding:
    (finding,) = [f for f in findings if f.check == check]
    return finding


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fake, matching extension and package: tests change what they are about."""
    module = fake_core()
    monkeypatch.setattr(machine, "_import_core", lambda: module)
    monkeypatch.setattr(machine, "_package_version", lambda: "0.1.0")
    monkeypatch.setattr(common, "source_checkout", lambda: None)
    return module


@pytest.fixture
def no_core(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ModuleNotFoundError("No module named 'vnetio._core'")

    monkeypatch.setattr(machine, "_import_core", missing)
    monkeypatch.setattr(common, "source_checkout", lambda: None)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "geteuid", lambda: 1000)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "geteuid", lambda: 0)


# --- 1. versions ----------------------------------------------------------------------------


def test_versions_match(core: SimpleNamespace) -> None:
    findings = machine.check_versions()
    assert by_check(findings, "versions").status == "ok"
    assert by_check(findings, "abi").status == "ok"
    assert "0.1.0" in by_check(findings, "versions").summary


def test_version_mismatch_fails_with_reinstall_fix(
    core: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "_package_version", lambda: "0.2.0")
    finding = by_check(machine.check_versions(), "versions")
    assert finding.status == "fail"
    assert "0.2.0" in finding.summary and "0.1.0" in finding.summary
    assert finding.fix == "pip install --force-reinstall vnetio"


def test_version_mismatch_in_source_checkout_says_make_build(
    core: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "_package_version", lambda: "0.2.0")
    monkeypatch.setattr(common, "source_checkout", lambda: Path("/src/vnetio"))
    assert by_check(machine.check_versions(), "versions").fix == "make -C /src/vnetio build"


@pytest.mark.parametrize(
    ("cargo", "wheel"),
    [("0.2.0-alpha.1", "0.2.0a1"), ("1.0.0-beta.2", "1.0.0b2"), ("1.0.0-rc.1", "1.0.0rc1")],
)
def test_cargo_prerelease_matches_pep440_wheel_version(
    core: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, cargo: str, wheel: str
) -> None:
    core.__version__ = cargo
    monkeypatch.setattr(machine, "_package_version", lambda: wheel)
    assert by_check(machine.check_versions(), "versions").status == "ok"


def test_prerelease_differs_from_release(
    core: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    core.__version__ = "0.2.0-alpha.1"
    monkeypatch.setattr(machine, "_package_version", lambda: "0.2.0")
    assert by_check(machine.check_versions(), "versions").status == "fail"


def test_package_metadata_missing_warns(
    core: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed() -> str:
        raise importlib.metadata.PackageNotFoundError("vnetio")

    monkeypatch.setattr(machine, "_package_version", not_installed)
    finding = by_check(machine.check_versions(), "versions")
    assert finding.status == "warn"
    assert finding.fix == "pip install --force-reinstall vnetio"


def test_abi_mismatch_fails(core: SimpleNamespace) -> None:
    core.ABI_VERSION = machine.EXPECTED_ABI + 1
    findings = machine.check_versions()
    assert by_check(findings, "versions").status == "ok"
    abi = by_check(findings, "abi")
    assert abi.status == "fail"
    assert str(machine.EXPECTED_ABI + 1) in abi.summary
    assert abi.fix == "pip install --force-reinstall vnetio"


def test_core_missing_fails_with_fix(no_core: None) -> None:
    (finding,) = machine.check_versions()
    assert (finding.check, finding.status) == ("versions", "fail")
    assert "vnetio._core" in finding.summary
    assert finding.fix == "pip install --force-reinstall vnetio"


# --- 2. /dev/net/tun ------------------------------------------------------------------------


def fake_stat(
    mode: int = 0o666, *, kind: int = stat.S_IFCHR, rdev: tuple[int, int] = (10, 200), gid: int = 0
) -> SimpleNamespace:
    return SimpleNamespace(st_mode=kind | mode, st_rdev=os.makedev(*rdev), st_gid=gid)


@pytest.fixture
def tun(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Controls what the tun-node check sees: ``tun.stat`` and ``tun.open_error``."""
    state = SimpleNamespace(stat=fake_stat(), open_error=None, opened=[])

    def stat_(path: str) -> SimpleNamespace:
        assert path == machine.TUN_PATH
        if isinstance(state.stat, OSError):
            raise state.stat
        return state.stat

    def probe_open(path: str) -> None:
        state.opened.append(path)
        if state.open_error is not None:
            raise state.open_error

    monkeypatch.setattr(machine, "_stat", stat_)
    monkeypatch.setattr(machine, "_probe_open", probe_open)
    return state


def test_tun_node_good(tun: SimpleNamespace, as_user: None) -> None:
    findings = machine.check_tun_device()
    assert [(f.check, f.status) for f in findings] == [
        ("tun-node", "ok"),
        ("tun-mode", "ok"),
        ("tun-open", "ok"),
    ]
    assert tun.opened == ["/dev/net/tun"]


def test_tun_node_missing(tun: SimpleNamespace, as_user: None) -> None:
    tun.stat = FileNotFoundError(errno.ENOENT, "No such file or directory")
    (finding,) = machine.check_tun_device()
    assert (finding.check, finding.status) == ("tun-node", "fail")
    assert finding.fix is not None
    assert "sudo modprobe tun" in finding.fix
    assert "sudo mknod /dev/net/tun c 10 200" in finding.fix
    assert tun.opened == []


def test_tun_node_not_a_char_device(tun: SimpleNamespace, as_root: None) -> None:
    tun.stat = fake_stat(0o644, kind=stat.S_IFREG)
    (finding,) = machine.check_tun_device()
    assert finding.status == "fail"
    assert "not a character device" in finding.summary
    assert finding.fix is not None
    assert finding.fix.startswith("rm /dev/net/tun && mkdir -p /dev/net && mknod")


def test_tun_node_wrong_device_numbers(tun: SimpleNamespace, as_root: None) -> None:
    tun.stat = fake_stat(rdev=(1, 3))
    (finding,) = machine.check_tun_device()
    assert finding.status == "fail"
    assert "1:3" in finding.summary


def test_tun_mode_0600_warns_with_chmod_and_udev_fix(tun: SimpleNamespace, as_root: None) -> None:
    tun.stat = fake_stat(0o600)
    findings = machine.check_tun_device()
    mode = by_check(findings, "tun-mode")
    assert mode.status == "warn"
    assert "0600" in mode.summary and "owner=" in mode.summary
    assert mode.fix is not None
    assert mode.fix.startswith("chmod 0666 /dev/net/tun")
    assert 'KERNEL=="tun", MODE="0666"' in mode.fix
    assert by_check(findings, "tun-open").status == "ok"  # root opens it anyway


def test_tun_mode_0660_names_the_group(tun: SimpleNamespace, as_user: None) -> None:
    tun.stat = fake_stat(0o660, gid=108)
    mode = by_check(machine.check_tun_device(), "tun-mode")
    assert mode.status == "warn"
    assert "group 108" in mode.summary
    assert mode.fix is not None and mode.fix.startswith("sudo chmod 0666 /dev/net/tun")


def test_tun_open_refused_by_mode(tun: SimpleNamespace, as_user: None) -> None:
    tun.stat = fake_stat(0o600)
    tun.open_error = PermissionError(errno.EACCES, "Permission denied")
    finding = by_check(machine.check_tun_device(), "tun-open")
    assert finding.status == "fail"
    assert "uid 1000" in finding.summary
    assert finding.fix is not None and finding.fix.startswith("sudo chmod 0666 /dev/net/tun")


def test_tun_open_refused_despite_mode_blames_cgroup_or_lsm(
    tun: SimpleNamespace, as_user: None
) -> None:
    tun.open_error = PermissionError(errno.EPERM, "Operation not permitted")
    finding = by_check(machine.check_tun_device(), "tun-open")
    assert finding.status == "fail"
    assert finding.fix is not None and "--device /dev/net/tun" in finding.fix


def test_tun_open_no_driver(tun: SimpleNamespace, as_root: None) -> None:
    tun.open_error = OSError(errno.ENODEV, "No such device")
    finding = by_check(machine.check_tun_device(), "tun-open")
    assert finding.status == "fail"
    assert finding.fix == "modprobe tun"


# --- 3. kernel TUN features -----------------------------------------------------------------


def test_features_all_present(core: SimpleNamespace) -> None:
    (finding,) = machine.check_tun_features()
    assert finding.status == "ok"
    for name in IFF:
        assert name in finding.summary


@pytest.mark.parametrize("missing", ["IFF_MULTI_QUEUE", "IFF_VNET_HDR"])
def test_features_missing_optional_warns(core: SimpleNamespace, missing: str) -> None:
    core.tun_features = lambda: ALL_FEATURES & ~IFF[missing]
    (finding,) = machine.check_tun_features()
    assert finding.status == "warn"
    assert f"(missing: {missing})" in finding.summary
    assert finding.fix is not None and "kernel" in finding.fix


def test_features_without_napi_is_fine(core: SimpleNamespace) -> None:
    core.tun_features = lambda: ALL_FEATURES & ~IFF["IFF_NAPI"]
    (finding,) = machine.check_tun_features()
    assert finding.status == "ok"
    assert "IFF_NAPI" not in finding.summary


def test_features_missing_tap_fails(core: SimpleNamespace) -> None:
    core.tun_features = lambda: IFF["IFF_TUN"]
    (finding,) = machine.check_tun_features()
    assert finding.status == "fail"
    assert "IFF_TAP" in finding.summary


def test_features_when_tun_cannot_be_opened(core: SimpleNamespace) -> None:
    core.tun_features = fake_core(features=PermissionError(13, "Permission denied")).tun_features
    (finding,) = machine.check_tun_features()
    assert finding.status == "warn"
    assert "tun-open" in (finding.fix or "")


def test_features_without_core(no_core: None) -> None:
    (finding,) = machine.check_tun_features()
    assert finding.status == "warn"
    assert finding.fix == "pip install --force-reinstall vnetio"


# --- 4. CAP_NET_ADMIN -----------------------------------------------------------------------


def proc_status(eff: int, bnd: int = (1 << 41) - 1) -> str:
    return (
        "Name:\tpython\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t"
        f"{eff:016x}\nCapEff:\t{eff:016x}\nCapBnd:\t{bnd:016x}\nCapAmb:\t0000000000000000\n"
    )


@pytest.fixture
def status_text(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    state = SimpleNamespace(text="")

    def read_text(path: str) -> str:
        assert path == common.PROC_STATUS
        if isinstance(state.text, OSError):
            raise state.text
        return state.text

    monkeypatch.setattr(common, "read_text", read_text)
    return state


def test_cap_net_admin_present(status_text: SimpleNamespace) -> None:
    status_text.text = proc_status(0x000001FFFEFFFFFF)
    (finding,) = machine.check_capabilities()
    assert (finding.check, finding.status, finding.fix) == ("cap-net-admin", "ok", None)


def test_cap_net_admin_missing_warns_with_all_three_fixes(
    status_text: SimpleNamespace, as_user: None
) -> None:
    status_text.text = proc_status(1 << 2)  # CAP_DAC_READ_SEARCH only
    (finding,) = machine.check_capabilities()
    assert finding.status == "warn"
    assert "lacks CAP_NET_ADMIN" in finding.summary
    assert finding.fix is not None
    assert "run as root" in finding.fix
    assert f"sudo setcap cap_net_admin+ep {os.path.realpath(sys.executable)}" in finding.fix
    assert "sudo ip tuntap add dev vn0 mode tap user 1000" in finding.fix
    assert "owner=1000" in finding.fix


def test_cap_net_admin_outside_bounding_set_points_at_container(
    status_text: SimpleNamespace, as_root: None
) -> None:
    everything_but = ((1 << 41) - 1) & ~CAP_NET_ADMIN_BIT
    status_text.text = proc_status(everything_but, bnd=everything_but)
    (finding,) = machine.check_capabilities()
    assert finding.status == "warn"
    assert finding.fix is not None and "--cap-add NET_ADMIN" in finding.fix
    assert "setcap" not in finding.fix


def test_cap_unknown_without_capeff_line(status_text: SimpleNamespace) -> None:
    status_text.text = "Name:\tpython\n"
    (finding,) = machine.check_capabilities()
    assert finding.status == "warn"
    assert "cannot tell" in finding.summary


def test_cap_unknown_when_proc_unreadable(status_text: SimpleNamespace) -> None:
    status_text.text = FileNotFoundError(errno.ENOENT, "No such file or directory")
    (finding,) = machine.check_capabilities()
    assert finding.status == "warn"
    assert finding.fix is not None and "mount -t proc" in finding.fix


# --- 5. network namespaces ------------------------------------------------------------------


@pytest.fixture
def netns_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """A fake /proc/self/ns/net, `ip` and /run/netns; tests break one of them."""
    ns_file = tmp_path / "ns-net"
    ns_file.touch()
    run_dir = tmp_path / "netns"
    run_dir.mkdir()
    state = SimpleNamespace(ip="/usr/sbin/ip", rc=0, stderr="", writable=True, calls=[])

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        state.calls.append(argv)
        return subprocess.CompletedProcess(argv, state.rc, "", state.stderr)

    monkeypatch.setattr(common, "NETNS_SELF", str(ns_file))
    monkeypatch.setattr(common, "NETNS_RUN_DIR", str(run_dir))
    monkeypatch.setattr(common, "which", lambda name: state.ip)
    monkeypatch.setattr(machine, "_run", run)
    monkeypatch.setattr(machine, "_writable", lambda path: state.writable)
    state.ns_file, state.run_dir = ns_file, run_dir
    return state


def test_netns_ok_as_root(netns_env: SimpleNamespace, as_root: None) -> None:
    (finding,) = machine.check_netns()
    assert finding.status == "ok"
    assert netns_env.calls == [["/usr/sbin/ip", "netns", "list"]]


def test_netns_ok_as_user_ignores_run_dir(netns_env: SimpleNamespace, as_user: None) -> None:
    netns_env.writable = False
    (finding,) = machine.check_netns()
    assert finding.status == "ok"


def test_netns_kernel_without_namespaces(netns_env: SimpleNamespace) -> None:
    netns_env.ns_file.unlink()
    (finding,) = machine.check_netns()
    assert finding.status == "warn"
    assert finding.fix is not None and "CONFIG_NET_NS" in finding.fix


def test_netns_without_iproute2(netns_env: SimpleNamespace, as_user: None) -> None:
    netns_env.ip = None
    (finding,) = machine.check_netns()
    assert finding.status == "warn"
    assert finding.fix is not None and "sudo apt-get install iproute2" in finding.fix
    assert netns_env.calls == []


def test_netns_ip_netns_broken(netns_env: SimpleNamespace, as_root: None) -> None:
    netns_env.rc, netns_env.stderr = 1, 'Object "netns" is unknown, try "ip help".'
    (finding,) = machine.check_netns()
    assert finding.status == "warn"
    assert "unknown" in finding.detail
    assert finding.fix is not None and "apt-get install iproute2" in finding.fix


def test_netns_run_dir_not_writable_as_root(netns_env: SimpleNamespace, as_root: None) -> None:
    netns_env.writable = False
    (finding,) = machine.check_netns()
    assert finding.status == "warn"
    assert str(netns_env.run_dir) in finding.summary
    assert finding.fix is not None and "findmnt" in finding.fix


# --- 6. sysfs -------------------------------------------------------------------------------


@pytest.fixture
def sysfs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    net = tmp_path / "class-net"
    for name in ("lo", "eth0"):
        (net / name).mkdir(parents=True)
    misc_dev = tmp_path / "misc-tun-dev"
    misc_dev.write_text("10:200\n")
    monkeypatch.setattr(machine, "SYS_CLASS_NET", str(net))
    monkeypatch.setattr(machine, "SYS_MISC_TUN_DEV", str(misc_dev))
    return SimpleNamespace(net=net, misc_dev=misc_dev)


def test_sysfs_ok(sysfs: SimpleNamespace) -> None:
    findings = machine.check_sysfs()
    assert [(f.check, f.status) for f in findings] == [("sysfs", "ok"), ("tun-driver", "ok")]
    assert "2 interfaces" in findings[0].summary


def test_sysfs_unreadable(sysfs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "SYS_CLASS_NET", str(sysfs.net / "missing"))
    (finding,) = machine.check_sysfs()
    assert finding.status == "warn"
    assert finding.fix is not None and "mount -t sysfs" in finding.fix


def test_tun_driver_not_loaded(sysfs: SimpleNamespace, as_user: None) -> None:
    sysfs.misc_dev.unlink()
    finding = by_check(machine.check_sysfs(), "tun-driver")
    assert finding.status == "warn"
    assert finding.fix == "sudo modprobe tun"


# --- run_checks, output, exit status ---------------------------------------------------------


def test_a_crashing_check_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> list[Finding]:
        raise RuntimeError("kaput")

    def fine() -> list[Finding]:
        return [Finding("later", "ok", "still ran")]

    monkeypatch.setattr(doctor, "CHECKS", (("first", boom), ("later", fine)))
    monkeypatch.setattr(doctor, "check_namespaces", lambda *args: boom())
    first, later, adapters = doctor.run_checks()
    assert (adapters.check, adapters.status) == ("adapters", "warn")
    assert (first.check, first.status) == ("first", "warn")
    assert "RuntimeError: kaput" in first.summary
    assert "Traceback" in first.detail
    assert later.summary == "still ran"


def test_every_check_runs_even_when_all_inputs_are_broken(
    no_core: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing")
    for module, attr in (
        (machine, "TUN_PATH"),
        (common, "PROC_STATUS"),
        (common, "NETNS_SELF"),
        (machine, "SYS_CLASS_NET"),
        (machine, "SYS_MISC_TUN_DEV"),
    ):
        monkeypatch.setattr(module, attr, missing)
    checks = {f.check for f in doctor.run_checks()}
    assert checks == {
        "versions",
        "tun-node",
        "tun-features",
        "offload",
        "cap-net-admin",
        "netns",
        "sysfs",
        "adapters",
    }


def canned(monkeypatch: pytest.MonkeyPatch, findings: list[Finding]) -> None:
    monkeypatch.setattr(doctor, "run_checks", lambda *args, **kwargs: list(findings))


OK = Finding("a", "ok", "all good", "some detail")
WARN = Finding("b", "warn", "meh", "why it is meh", "do this")
FAIL = Finding("c", "fail", "broken", "", "do that")


def test_text_output_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    canned(monkeypatch, [OK, WARN, FAIL])
    assert doctor.main([]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "[ok] all good",
        "[warn] meh",
        "    fix: do this",
        "[FAIL] broken",
        "    fix: do that",
    ]


def test_verbose_adds_details(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    canned(monkeypatch, [OK, WARN])
    assert doctor.main(["-v"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[ok] all good",
        "    some detail",
        "[warn] meh",
        "    why it is meh",
        "    fix: do this",
    ]


@pytest.mark.parametrize(
    ("findings", "status"), [([OK], 0), ([OK, WARN], 0), ([OK, FAIL], 1), ([FAIL, WARN], 1)]
)
def test_exit_status_is_1_only_for_fail(
    monkeypatch: pytest.MonkeyPatch, findings: list[Finding], status: int
) -> None:
    canned(monkeypatch, findings)
    assert doctor.main([]) == status
    assert doctor.main(["--json"]) == status


@pytest.mark.parametrize(
    ("findings", "status"), [([OK], 0), ([OK, WARN], 1), ([OK, FAIL], 1), ([FAIL, WARN], 1)]
)
def test_strict_exit_status_is_1_for_warn_too(
    monkeypatch: pytest.MonkeyPatch, findings: list[Finding], status: int
) -> None:
    canned(monkeypatch, findings)
    assert doctor.main(["--strict"]) == status


def test_namespace_options_reach_run_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(
        doctor,
        "run_checks",
        lambda netns, all_namespaces: calls.append((netns, all_namespaces)) or [],
    )
    doctor.main(["--json"])
    doctor.main(["--netns", "a", "--netns", "b"])
    doctor.main(["--all-namespaces"])
    assert calls == [(None, False), (["a", "b"], False), (None, True)]
    with pytest.raises(SystemExit):
        doctor.main(["--netns", "a", "--all-namespaces"])


def test_json_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    canned(monkeypatch, [OK, WARN])
    doctor.main(["--json"])
    assert json.loads(capsys.readouterr().out) == [
        {"check": "a", "status": "ok", "summary": "all good", "detail": "some detail", "fix": None,
         "adapter": None, "netns": None},
        {"check": "b", "status": "warn", "summary": "meh", "detail": "why it is meh", "fix": "do this",
         "adapter": None, "netns": None},
    ]  # fmt: skip


# --- the real thing, on this machine ---------------------------------------------------------

CHECK_IDS = {
    "versions",
    "abi",
    "tun-node",
    "tun-mode",
    "tun-open",
    "tun-features",
    "cap-net-admin",
    "netns",
    "sysfs",
    "tun-driver",
    "offload",
    "adapters",
    "adapter-owner",
    "adapter-multi-queue",
    "adapter-flags",
    "adapter-offload",
    "adapter-no-carrier",
    "adapter-orphan",
    "bridge-port",
}


def test_real_run_text(capsys: pytest.CaptureFixture[str]) -> None:
    status = doctor.main([])
    lines = capsys.readouterr().out.splitlines()
    assert lines
    tags = [line.split("]")[0] + "]" for line in lines if not line.startswith("    ")]
    assert set(tags) <= {"[ok]", "[warn]", "[FAIL]"}
    assert status == (1 if "[FAIL]" in tags else 0)
    fixes = [line for line in lines if line.startswith("    ")]
    assert all(line.startswith("    fix: ") for line in fixes)


def test_real_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = doctor.main(["--json"])
    findings = json.loads(capsys.readouterr().out)
    assert {f["check"] for f in findings} <= CHECK_IDS
    assert {"versions", "tun-node", "cap-net-admin", "netns", "sysfs"} <= {
        f["check"] for f in findings
    }
    for f in findings:
        assert set(f) == {"check", "status", "summary", "detail", "fix", "adapter", "netns"}
        assert f["status"] in ("ok", "warn", "fail")
        if f["status"] == "ok":
            assert f["fix"] is None, f
    assert status == (1 if any(f["status"] == "fail" for f in findings) else 0)


def test_run_as_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vnetio._doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(proc.stdout)
    assert proc.returncode == (1 if any(f["status"] == "fail" for f in findings) else 0)
