"""`vnetio doctor`'s adapter checks: parsing and analysis on canned kernel views (no root).

The same faults are built for real in tests/privileged/test_doctor_faults.py.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from vnetio.cli import doctor
from vnetio.cli.doctor import Finding, adapters, common
from vnetio.cli.doctor.adapters import (
    BridgePort,
    Cred,
    Features,
    analyze_adapter,
    analyze_namespace,
    parse_ethtool_features,
    parse_link_details,
    parse_netns_list,
)

ROOT = Cred(euid=0, egid=0, groups=frozenset({0}), net_admin=True, sys_admin=True)
USER = Cred(euid=1000, egid=1000, groups=frozenset({1000, 27}), net_admin=False)
NO_OFFLOAD = Features()
OFFLOAD = Features(active=("tx", "tso"))


def tap(
    name: str = "vn0",
    *,
    up: bool = False,
    carrier: bool = False,
    persist: bool = True,
    multi_queue: bool = False,
    queues: int = 0,
    disabled_queues: int = 0,
    owner: int | None = None,
    group: int | None = None,
    vnet_hdr: bool = False,
    pi: bool = False,
    mode: str = "tap",
    master: int | None = None,
) -> dict[str, Any]:
    """A link dict as ``vnetio._core.list_links`` returns it."""
    return {
        "ifindex": 7,
        "name": name,
        "kind": "tun",
        "flags": 0x1003 if up else 0x1002,
        "up": up,
        "mtu": 1500,
        "txqlen": 1000,
        "operstate": 6 if carrier else 2,
        "carrier": carrier,
        "master": master,
        "mac": "02:00:00:00:00:01",
        "tun": {
            "mode": mode,
            "owner": owner,
            "group": group,
            "pi": pi,
            "vnet_hdr": vnet_hdr,
            "persist": persist,
            "multi_queue": multi_queue,
            "queues": queues,
            "disabled_queues": disabled_queues,
        },
    }


def held(name: str = "vn0", **kwargs: Any) -> dict[str, Any]:
    """A single-queue adapter with its descriptor attached (the kernel shows carrier)."""
    return tap(name, carrier=True, **kwargs)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix commands get ``sudo`` (decided by the process's euid)."""
    monkeypatch.setattr(common, "geteuid", lambda: 1000)


@pytest.fixture(autouse=True)
def as_root_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "geteuid", lambda: 0)


def analyze(
    link: dict[str, Any],
    *,
    netns: str | None = "blue",
    cred: Cred = ROOT,
    port: BridgePort | None = None,
    features: Features | None = NO_OFFLOAD,
) -> list[Finding]:
    return analyze_adapter(link, netns=netns, cred=cred, port=port, features=features)


def checks(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.check, f.status) for f in findings]


# --- parsing ---------------------------------------------------------------------------------


def test_parse_netns_list() -> None:
    text = "blue (id: 0)\nvnetio-t-ab12\n\nred (id: 3)\nblue\n"
    assert parse_netns_list(text) == ["blue", "vnetio-t-ab12", "red"]
    assert parse_netns_list("") == []


ETHTOOL_K = """Features for vnoff:
rx-checksumming: off [fixed]
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
\ttx-checksum-ip-generic: on
scatter-gather: on
tcp-segmentation-offload: on
\ttx-tcp-segmentation: on
\ttx-tcp-ecn-segmentation: off
\ttx-tcp6-segmentation: off
generic-segmentation-offload: on
tx-udp-segmentation: off [requested on]
"""


PLAIN_K = ETHTOOL_K.replace(": on", ": off")


def test_parse_ethtool_features() -> None:
    features = parse_ethtool_features(ETHTOOL_K)
    assert features["tx-checksum-ip-generic"] is True
    assert features["tx-tcp6-segmentation"] is False
    assert features["rx-checksumming"] is False
    assert features["tx-udp-segmentation"] is False  # requested, not active
    assert "Features for vnoff" not in features
    assert adapters.offload_words(features) == ("tx", "tso")


def test_offload_words_of_a_plain_tap() -> None:
    assert adapters.offload_words(parse_ethtool_features(PLAIN_K)) == ()
    uso = {"tx-udp-segmentation": True}
    assert adapters.offload_words(uso) == ("tx-udp-segmentation",)


IP_D_J = [
    {
        "ifname": "vnbr1",
        "linkinfo": {"info_kind": "bridge", "info_data": {"stp_state": 1, "forward_delay": 1500}},
    },
    {
        "ifname": "vnstp",
        "master": "vnbr1",
        "linkinfo": {
            "info_kind": "tun",
            "info_slave_kind": "bridge",
            "info_slave_data": {"state": "listening"},
        },
    },
    {
        "ifname": "veth0",
        "master": "vnbr1",
        "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge", "info_slave_data": {}},
    },
    {"ifname": "vnold", "master": "vnbr9", "linkinfo": {"info_slave_kind": "bridge",
                                                        "info_slave_data": {"state": 4}}},
    {"ifname": "lo"},
]  # fmt: skip


def test_parse_link_details() -> None:
    ports = parse_link_details(IP_D_J)
    assert ports["vnstp"] == BridgePort("vnbr1", "listening", stp=True, forward_delay=15.0)
    assert ports["veth0"].state == "?"
    assert ports["vnold"] == BridgePort("vnbr9", "blocking", stp=False, forward_delay=0.0)
    assert set(ports) == {"vnstp", "veth0", "vnold"}


# --- one adapter -----------------------------------------------------------------------------


def test_orphan_warns_with_delete_fix() -> None:
    (f,) = analyze(tap("vnorph"))
    assert (f.check, f.status, f.adapter, f.netns) == ("adapter-orphan", "warn", "vnorph", "blue")
    assert f.summary.startswith("vnorph (netns blue): persistent tap that no process holds")
    assert "vnetio delete vnorph --netns blue" in f.fix
    assert "ip -n blue link del dev vnorph" in f.fix


def test_orphan_in_own_namespace_names_no_netns(as_user: None) -> None:
    (f,) = analyze(tap("vnorph"), netns=None, cred=USER)
    assert f.summary.startswith("vnorph: ")
    assert f.netns is None
    assert "sudo vnetio delete vnorph (or: sudo ip link del dev vnorph)" in f.fix


def test_held_and_reserved_adapters_are_fine() -> None:
    assert analyze(held()) == []
    assert analyze(tap(persist=False, carrier=True)) == []
    assert analyze(tap(owner=1000)) == []  # reserved for a user: not an orphan
    assert analyze(tap(group=27)) == []
    assert analyze(tap(multi_queue=True, queues=2)) == []
    assert analyze(tap(multi_queue=True, disabled_queues=1)) == []


def test_pi_and_vnet_hdr_left_set_are_not_findings() -> None:
    assert analyze(tap(owner=0, pi=True, vnet_hdr=True)) == []


def test_stale_offload_warns_and_replaces_orphan() -> None:
    (f,) = analyze(tap("vnoff"), features=OFFLOAD)
    assert (f.check, f.status) == ("adapter-offload", "warn")
    assert "checksum/TSO offload left on with no process attached" in f.summary
    assert f.fix.startswith("ip netns exec blue ethtool -K vnoff tx off tso off; ")
    assert "vnetio delete vnoff --netns blue" in f.fix


def test_offload_in_use_with_vnet_hdr_is_fine() -> None:
    assert analyze(held(vnet_hdr=True), features=OFFLOAD) == []


def test_offload_with_a_plain_reader_fails() -> None:
    (f,) = analyze(held(name="vnmix"), features=OFFLOAD)
    assert (f.check, f.status) == ("adapter-flags", "fail")
    assert "opened it without IFF_VNET_HDR" in f.summary
    assert f.fix.startswith("ip netns exec blue ethtool -K vnmix tx off tso off")


def test_offload_of_own_namespace_fix_has_no_ip_netns_exec() -> None:
    (f,) = analyze(tap("vnoff"), netns=None, features=Features(active=("tx-udp-segmentation",)))
    assert f.fix.startswith("ethtool -K vnoff tx-udp-segmentation off; ")
    assert "USO offload" in f.summary


def test_offload_not_checkable_warns_only_when_nobody_holds_it() -> None:
    missing = Features(error="ethtool is not installed")
    (f,) = analyze(tap(), features=missing)
    assert (f.check, f.status) == ("adapter-offload", "warn")
    assert "not checked: ethtool is not installed" in f.summary
    assert "apt-get install ethtool" in f.fix
    assert analyze(held(), features=missing) == []


def test_multi_queue_nobody_holds_fails() -> None:
    (f,) = analyze(tap("vnmq", multi_queue=True))
    assert (f.check, f.status) == ("adapter-multi-queue", "fail")
    assert "EINVAL" in f.summary
    assert "vnetio.Tap('vnmq', queues=2, netns='blue')" in f.fix
    assert "ip -n blue link del dev vnmq" in f.fix


def test_multi_queue_tun_fix_uses_tun() -> None:
    (f,) = analyze(tap("vnmq", multi_queue=True, mode="tun"))
    assert "vnetio.Tun('vnmq', queues=2, netns='blue')" in f.fix


def test_up_without_carrier() -> None:
    (f,) = analyze(tap("vnup", up=True))
    assert (f.check, f.status) == ("adapter-no-carrier", "warn")
    assert "up, but no process holds it (no carrier)" in f.summary
    assert f.fix.startswith("ip -n blue link set dev vnup down; ")
    assert "vnetio.Tap('vnup', netns='blue')" in f.fix


def test_up_without_carrier_on_a_bridge_says_frames_vanish() -> None:
    port = BridgePort("vnbr0", "disabled", stp=False, forward_delay=0.0)
    (f,) = analyze(tap("vnport", up=True), port=port)
    assert (f.check, f.status) == ("adapter-no-carrier", "warn")
    assert "up as a port of bridge vnbr0" in f.summary and "vanish" in f.summary
    assert "ip -n blue link set dev vnport nomaster" in f.fix
    assert "disabled" in f.detail


def test_multi_queue_holder_turned_carrier_off() -> None:
    (f,) = analyze(tap(up=True, multi_queue=True, queues=1))
    assert "turned the carrier off" in f.summary


def test_down_adapter_on_a_bridge_is_not_a_port_problem() -> None:
    port = BridgePort("vnbr0", "disabled", stp=False, forward_delay=0.0)
    assert checks(analyze(tap(), port=port)) == [("adapter-orphan", "warn")]


def test_several_problems_each_reported() -> None:
    found = analyze(tap("vnx", up=True, multi_queue=True), features=OFFLOAD)
    assert checks(found) == [
        ("adapter-multi-queue", "fail"),
        ("adapter-offload", "warn"),
        ("adapter-no-carrier", "warn"),
    ]


# --- ownership: the kernel's tun_not_capable rule --------------------------------------------


@pytest.mark.parametrize(
    ("owner", "group", "denied"),
    [
        (None, None, False),  # nobody set: anyone who can open /dev/net/tun
        (1000, None, False),
        (1001, None, True),
        (None, 27, False),  # a supplementary group
        (None, 1000, False),  # the effective group
        (None, 5, True),
        (1000, 5, True),  # both are checked when both are set
        (1001, 27, True),
    ],
)
def test_owner_rule(owner: int | None, group: int | None, denied: bool) -> None:
    found = analyze(held(owner=owner, group=group), cred=USER)
    assert checks(found) == ([("adapter-owner", "fail")] if denied else [])


def test_owner_finding_names_owner_and_handover(as_user: None) -> None:
    (f,) = analyze(held("vnown", owner=4321), cred=USER, netns=None)
    assert "owned by uid 4321" in f.summary
    assert "uid 1000" in f.summary and "EPERM" in f.summary
    assert f.fix.startswith("run as uid 4321; ")
    assert "vnetio.Tap('vnown', owner=1000)" in f.fix
    assert "sudo " in f.fix


def test_owner_with_group_hands_over_the_group_too() -> None:
    (f,) = analyze(held("vnown", group=5), cred=USER)
    assert "gid 5" in f.summary
    assert "owner=1000, group=1000" in f.fix


def test_root_may_attach_to_anything() -> None:
    assert analyze(held(owner=4321, group=5), cred=ROOT) == []


# --- a namespace -----------------------------------------------------------------------------


def test_port_not_forwarding_with_stp() -> None:
    port = BridgePort("vnbr1", "listening", stp=True, forward_delay=15.0)
    (f,) = analyze(held("vnstp", up=True), port=port)
    assert (f.check, f.status) == ("bridge-port", "warn")
    assert "port of bridge vnbr1 is listening, not forwarding" in f.summary
    assert f.fix.startswith("wait about 30 s; ")
    assert (
        "ip -n blue link set dev vnbr1 type bridge stp_state 0 && "
        "bridge -n blue link set dev vnstp state 3"
    ) in f.fix


def test_port_blocking_and_disabled_by_hand(as_user: None) -> None:
    blocking = BridgePort("vnbr1", "blocking", stp=True, forward_delay=15.0)
    (f,) = analyze(held("vnb", up=True), port=blocking)
    assert f.fix.startswith("remove the loop")
    assert "sudo ip -n blue link set dev vnbr1 type bridge stp_state 0" in f.fix
    manual = BridgePort("vnbr1", "disabled", stp=False, forward_delay=0.0)
    (f,) = analyze(held("vnb", up=True), port=manual, netns=None, cred=USER)
    assert f.fix == "sudo bridge link set dev vnb state 3"


def test_namespace_ok_summary_and_other_bridge_ports() -> None:
    links = [held("vn0"), tap("vn1", owner=1000), {"name": "veth0", "up": True, "tun": None}]
    veth = BridgePort("vnbr0", "learning", stp=True, forward_delay=2.0)
    found = analyze_namespace(links, netns="blue", cred=ROOT, ports={}, features={})
    (ok,) = found
    assert (ok.check, ok.status, ok.netns) == ("adapters", "ok", "blue")
    assert ok.summary == "network namespace blue: 2 TUN/TAP adapters (vn0 vn1), nothing to fix"
    assert "vn1: tap, persistent, held by no process, owner 1000" in ok.detail

    found = analyze_namespace(links, netns="blue", cred=ROOT, ports={"veth0": veth}, features={})
    (f,) = found
    assert (f.check, f.adapter) == ("bridge-port", "veth0")


def test_empty_namespace() -> None:
    (ok,) = analyze_namespace([], netns=None, cred=ROOT, ports={}, features={})
    assert ok.summary == "this network namespace: no TUN/TAP adapters"


def macvtap(
    name: str = "vnmvt0", *, ifindex: int = 9, up: bool = True, carrier: bool = True
) -> dict[str, Any]:
    """A macvtap link dict as ``vnetio._core.list_links`` returns it (lower: veth0)."""
    return {
        "ifindex": ifindex,
        "name": name,
        "kind": "macvtap",
        "up": up,
        "carrier": carrier,
        "mtu": 1500,
        "master": None,
        "tun": None,
        "link": 3,
        "macvtap": {"mode": "bridge", "lower": "veth0", "dev": (246, 1)},
    }


def test_macvtap_links_in_the_summary_with_their_holders() -> None:
    lower = {"ifindex": 3, "name": "veth0", "up": True, "tun": None, "macvtap": None}
    links = [held("vn0"), lower, macvtap()]
    holders = {9: ("PID 42 (qemu)",)}
    (ok,) = analyze_namespace(
        links, netns="blue", cred=ROOT, ports={}, features={}, macvtap_holders=holders
    )
    assert ok.summary == (
        "network namespace blue: 1 TUN/TAP adapter (vn0) and 1 macvtap link (vnmvt0), "
        "nothing to fix"
    )
    assert "vnmvt0: macvtap bridge on veth0, held by PID 42 (qemu)" in ok.detail
    (ok,) = analyze_namespace([lower, macvtap()], netns=None, cred=ROOT, ports={}, features={})
    assert ok.summary == "this network namespace: 1 macvtap link (vnmvt0), nothing to fix"
    assert "holders unknown" in ok.detail


def test_macvtap_nobody_holds_warns_only_when_the_scan_saw_everything() -> None:
    (f,) = analyze_namespace(
        [macvtap()], netns="blue", cred=ROOT, ports={}, features={}, macvtap_holders={9: ()}
    )
    assert (f.check, f.status, f.adapter, f.netns) == ("macvtap-orphan", "warn", "vnmvt0", "blue")
    assert "on veth0 that no process holds" in f.summary
    assert f.fix.startswith("vnetio delete vnmvt0 --netns blue")
    for unknown in (None, {}):
        (ok,) = analyze_namespace(
            [macvtap()], netns="blue", cred=ROOT, ports={}, features={}, macvtap_holders=unknown
        )
        assert ok.check == "adapters"


def test_macvtap_up_on_a_lower_device_that_is_down() -> None:
    lower = {"ifindex": 3, "name": "veth0", "up": False, "tun": None, "macvtap": None}
    (f,) = analyze_namespace(
        [lower, macvtap(carrier=False)], netns="blue", cred=ROOT, ports={}, features={}
    )
    assert (f.check, f.status) == ("macvtap-no-carrier", "warn")
    assert "lower device veth0 is down" in f.summary
    assert f.fix.startswith("ip -n blue link set dev veth0 up")
    # Down on purpose: nothing to say.
    (ok,) = analyze_namespace(
        [lower, macvtap(up=False, carrier=False)], netns="blue", cred=ROOT, ports={}, features={}
    )
    assert ok.check == "adapters"


# --- gathering, through the seams ------------------------------------------------------------


class FakeSystem:
    """Answers the module's seams: links per namespace, commands, installed tools."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.links: dict[str | None, list[dict[str, Any]] | Exception] = {None: []}
        self.tools = {"ip", "ethtool", "unshare"}
        self.outputs: dict[str, tuple[int, str]] = {}
        self.commands: list[list[str]] = []
        monkeypatch.setattr(adapters, "_list_links", self.list_links)
        monkeypatch.setattr(adapters, "_run", self.run)
        monkeypatch.setattr(common, "which", self.which)
        monkeypatch.setattr(adapters, "_cred", lambda: ROOT)
        monkeypatch.setattr(adapters, "_same_netns_as_caller", lambda name: False)

    def list_links(self, netns: str | None) -> list[dict[str, Any]]:
        links = self.links[netns]
        if isinstance(links, Exception):
            raise links
        return links

    def which(self, name: str) -> str | None:
        return f"/usr/sbin/{name}" if name in self.tools else None

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(argv)
        for key, (code, out) in self.outputs.items():
            if key in " ".join(argv):
                return subprocess.CompletedProcess(argv, code, out, "boom" if code else "")
        raise AssertionError(f"unexpected command {argv}")


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    return FakeSystem(monkeypatch)


def test_no_adapters_runs_no_tool(system: FakeSystem) -> None:
    system.links[None] = [{"ifindex": 1, "name": "lo", "tun": None, "master": None}]
    (ok,) = adapters.check_adapters(None)
    assert ok.status == "ok"
    assert system.commands == []


def test_ethtool_asked_inside_the_namespace(system: FakeSystem) -> None:
    system.links["blue"] = [tap("vnoff")]
    system.outputs["ethtool -k vnoff"] = (0, ETHTOOL_K)
    (f,) = adapters.check_adapters("blue")
    assert f.check == "adapter-offload"
    assert system.commands == [
        ["/usr/sbin/ip", "netns", "exec", "blue", "/usr/sbin/ethtool", "-k", "vnoff"]
    ]


def test_held_vnet_hdr_adapter_needs_no_ethtool(system: FakeSystem) -> None:
    system.links[None] = [held(vnet_hdr=True)]
    (ok,) = adapters.check_adapters(None)
    assert ok.status == "ok"
    assert system.commands == []


def test_ethtool_missing_is_not_a_crash(system: FakeSystem) -> None:
    system.tools.discard("ethtool")
    system.links[None] = [tap("vnoff"), held("vnok")]
    (f,) = adapters.check_adapters(None)
    assert (f.check, f.status, f.adapter) == ("adapter-offload", "warn", "vnoff")
    assert "not checked" in f.summary


def test_bridge_ports_read_with_ip(system: FakeSystem) -> None:
    bridge = {"ifindex": 3, "name": "vnbr1", "kind": "bridge", "tun": None, "master": None}
    port = held("vnstp", up=True)
    port["master"] = 3
    system.links["blue"] = [bridge, port]
    system.outputs["-d -j link show"] = (0, json.dumps(IP_D_J))
    system.outputs["ethtool -k vnstp"] = (0, PLAIN_K)
    (f,) = adapters.check_adapters("blue")
    assert (f.check, f.adapter) == ("bridge-port", "vnstp")
    assert system.commands[0] == ["/usr/sbin/ip", "-n", "blue", "-d", "-j", "link", "show"]


def test_bridge_ports_unreadable(system: FakeSystem) -> None:
    bridge = {"ifindex": 3, "name": "vnbr1", "kind": "bridge", "tun": None, "master": None}
    port = held("vnstp", up=True)
    port["master"] = 3
    system.links[None] = [bridge, port]
    system.outputs["-d -j link show"] = (1, "")
    system.outputs["ethtool -k vnstp"] = (0, PLAIN_K)
    (f,) = adapters.check_adapters(None)
    assert (f.check, f.status) == ("bridge-port", "warn")
    assert "not checked" in f.summary


def test_namespace_that_cannot_be_entered(system: FakeSystem) -> None:
    system.links["nope"] = FileNotFoundError(2, "No such file or directory")
    (f,) = adapters.check_adapters("nope")
    assert (f.check, f.status, f.netns) == ("adapters", "fail", "nope")
    assert "ip netns list" in f.fix


def test_namespace_needs_root(system: FakeSystem) -> None:
    system.links["blue"] = PermissionError(1, "Operation not permitted")
    (f,) = adapters.check_adapters("blue", cred=USER)
    assert f.status == "fail"
    assert "vnetio doctor --netns blue" in f.fix


def test_target_namespaces(system: FakeSystem) -> None:
    assert adapters.target_namespaces(None, False) == ([None], [])
    assert adapters.target_namespaces(["a", "b", "a"], False) == (["a", "b"], [])
    system.outputs["netns list"] = (0, "blue (id: 0)\nred\n")
    assert adapters.target_namespaces(None, True) == ([None, "blue", "red"], [])


def test_target_namespaces_listing_fails(system: FakeSystem) -> None:
    system.outputs["netns list"] = (1, "")
    targets, (f,) = adapters.target_namespaces(None, True)
    assert targets == [None]
    assert f.status == "warn" and "only this one is examined" in f.summary


def test_check_offload_parses_the_probe(system: FakeSystem) -> None:
    system.outputs["unshare"] = (0, '["csum", "tso4", "tso6", "uso4", "uso6"]')
    (f,) = adapters.check_offload()
    assert (f.status, f.summary) == (
        "ok",
        "kernel offload (TUNSETOFFLOAD) accepts: CSUM TSO4 TSO6 TSO_ECN USO",
    )
    system.outputs["unshare"] = (0, '["csum", "tso4", "tso6"]')
    (f,) = adapters.check_offload()
    assert f.status == "ok" and "needs Linux 6.2" in f.summary
    system.outputs["unshare"] = (0, '["csum"]')
    (f,) = adapters.check_offload()
    assert f.status == "warn" and "missing: TSO4 TSO6" in f.summary
    system.outputs["unshare"] = (1, "")
    (f,) = adapters.check_offload()
    assert f.status == "warn" and "could not be probed" in f.summary


def test_offload_flags_names_what_the_library_probe_accepted() -> None:
    assert adapters.offload_flags(["csum", "tso4", "tso6", "uso4", "uso6"]) == [
        "CSUM", "TSO4", "TSO6", "TSO_ECN", "USO",
    ]  # fmt: skip
    assert adapters.offload_flags(["csum", "tso4", "tso6", "uso4"]) == [
        "CSUM", "TSO4", "TSO6", "TSO_ECN",
    ]  # fmt: skip
    assert adapters.offload_flags([]) == []


def test_check_offload_without_root(system: FakeSystem) -> None:
    (f,) = adapters.check_offload(cred=USER)
    assert f.status == "warn" and "not checked" in f.summary
    assert system.commands == []


def test_run_checks_examines_each_namespace(system: FakeSystem) -> None:
    system.links["a"] = []
    system.links["b"] = RuntimeError("bug")
    found = doctor.check_namespaces(["a", "b"], False)
    assert [(f.check, f.status, f.netns) for f in found] == [
        ("adapters", "ok", "a"),
        ("adapters", "warn", "b"),  # a crash in one namespace does not stop the others
    ]
    assert "could not run" in found[1].summary


def test_every_adapter_check_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "troubleshooting.md").read_text()
    source = Path(adapters.__file__).read_text()
    ids = {
        "adapters",
        "adapter-owner",
        "adapter-multi-queue",
        "adapter-flags",
        "adapter-offload",
        "adapter-no-carrier",
        "adapter-orphan",
        "macvtap-no-carrier",
        "macvtap-orphan",
        "bridge-port",
        "offload",
    }
    for check in ids:
        assert f'"{check}"' in source, check
        assert f"| `{check}` |" in doc, check
