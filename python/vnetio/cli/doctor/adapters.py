"""``vnetio doctor``'s adapter checks: TUN/TAP adapters (and macvtap links) that will
surprise their next user.

For each network namespace asked for (the caller's by default, ``--netns NS``, or every
namespace with ``--all-namespaces``), every TUN/TAP adapter is examined with what the kernel
reports about it (rtnetlink through ``vnetio._core.list_links``, bridge port states through
``ip -d -j link``, device offload features through ``ethtool -k``):

============================ ====== ==========================================================
check                        status when
============================ ====== ==========================================================
``adapter-owner``            fail   this process lacks CAP_NET_ADMIN and is not the owner/group
``adapter-multi-queue``      fail   a multi-queue adapter nobody holds: a plain open is EINVAL
``adapter-flags``            fail   offload on, but the reader attached has no IFF_VNET_HDR
``adapter-offload``          warn   offload left on with nobody attached (stale mask)
``adapter-no-carrier``       warn   up, but no process holds it (bridge port disabled)
``bridge-port``              warn   an up bridge port with carrier that is not forwarding
``adapter-orphan``           warn   persistent, nobody holds it, no owner, nothing else wrong
``macvtap-no-carrier``       warn   a macvtap link that is up but whose lower device is not
``macvtap-orphan``           warn   a macvtap link no process holds, nothing else wrong
``adapter-queue-raised``     warn   a capture killed before its end left the queue raised
``wireguard-stale``          warn   a killed WireGuard interface left its socket and record
``adapters``                 ok     per namespace, when nothing above applies
============================ ====== ==========================================================

IFF_NO_PI / IFF_VNET_HDR left set on an adapter nobody holds are *not* findings: the kernel
replaces them with the next opener's own flags (TUNSETIFF), so they cannot surprise anyone;
only the device-wide offload mask survives (``adapter-offload``). See
``docs/troubleshooting.md``.

Macvtap links' holders are the processes with a descriptor on the link's character device
(``vnetio.hygiene``'s process scan); ``macvtap-orphan`` is reported only when that scan could
see every process (root).

Every finding names the adapter and its namespace (``Finding.adapter``/``Finding.netns``;
``netns`` None means the caller's namespace) and carries the command that fixes it.
"""

from __future__ import annotations

import dataclasses
import grp
import importlib
import json
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from vnetio.cli.doctor import common
from vnetio.cli.doctor.common import Finding, Status

__all__ = [
    "BridgePort",
    "Cred",
    "analyze_namespace",
    "check_adapters",
    "check_offload",
    "offload_flags",
    "parse_ethtool_features",
    "parse_link_details",
    "parse_netns_list",
    "raised_queue_findings",
    "stale_wireguard_findings",
    "target_namespaces",
]

CAP_SYS_ADMIN = 21

# Device features that TUNSETOFFLOAD switches (the driver's TUN_USER_FEATURES), as ethtool
# names them, grouped by the ethtool -K word that turns them off.
OFFLOAD_FEATURES: dict[str, tuple[str, ...]] = {
    "tx": ("tx-checksum-ip-generic",),
    "tso": ("tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp6-segmentation"),
    "tx-udp-segmentation": ("tx-udp-segmentation",),
}

# Bridge port states (include/uapi/linux/if_bridge.h), for iproute2 versions that print numbers.
BRIDGE_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")


# --- seams: what only these checks read from the system (the shared ones are in common) ---


def _list_links(netns: str | None) -> list[dict[str, Any]]:
    core = importlib.import_module("vnetio._core")
    links: list[dict[str, Any]] = core.list_links(netns)
    return links


def _macvtap_holders(links: list[dict[str, Any]]) -> dict[int, tuple[str, ...]] | None:
    """Holders ("PID (command)") of the macvtap links among ``links``, by ifindex; None when
    the process scan may have missed some (not root, device numbers unknown)."""
    if not any(link.get("macvtap") for link in links):
        return {}
    scan = importlib.import_module("vnetio.hygiene.scan")
    holders, complete = scan.macvtap_holders(links)
    if not complete:
        return None
    return {ifindex: tuple(str(h) for h in who) for ifindex, who in holders.items()}


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def _cred() -> Cred:
    try:
        text = common.read_text(common.PROC_STATUS)
    except OSError:
        text = ""
    effective = common.cap_mask(text, "CapEff") or 0
    return Cred(
        euid=os.geteuid(),
        egid=os.getegid(),
        groups=frozenset(os.getgroups()),
        net_admin=bool(effective >> common.CAP_NET_ADMIN & 1),
        sys_admin=bool(effective >> CAP_SYS_ADMIN & 1),
    )


def _same_netns_as_caller(name: str) -> bool:
    """True when the named namespace is the one this process runs in (listed once)."""
    try:
        mine = os.stat(common.NETNS_SELF)
        theirs = os.stat(os.path.join(common.NETNS_RUN_DIR, name))
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


# --- parsing (pure) ---------------------------------------------------------------------------


def parse_netns_list(text: str) -> list[str]:
    """Names from ``ip netns list`` (lines ``NAME`` or ``NAME (id: N)``), in order."""
    names = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] not in names:
            names.append(words[0])
    return names


def parse_ethtool_features(text: str) -> dict[str, bool]:
    """``ethtool -k DEV`` output as {feature: active}; ``[fixed]``/``[requested on]`` ignored.

    Lines look like ``tx-checksumming: on`` or ``\\ttx-tcp6-segmentation: off [fixed]``.
    """
    features = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().partition(":")
        words = rest.split()
        if sep and words and words[0] in ("on", "off") and " " not in name:
            features[name] = words[0] == "on"
    return features


@dataclasses.dataclass(frozen=True, slots=True)
class BridgePort:
    """A bridge port as ``ip -d -j link`` shows it."""

    bridge: str
    state: str  # disabled, listening, learning, forwarding, blocking
    stp: bool  # the bridge runs STP
    forward_delay: float  # seconds (the bridge's)


def _state_name(value: object) -> str:
    if isinstance(value, int) and 0 <= value < len(BRIDGE_STATES):
        return BRIDGE_STATES[value]
    return str(value)


def parse_link_details(data: Iterable[Mapping[str, Any]]) -> dict[str, BridgePort]:
    """Bridge ports by interface name, from the parsed JSON of ``ip -d -j link show``."""
    entries = list(data)
    bridges: dict[str, tuple[bool, float]] = {}
    for entry in entries:
        info = entry.get("linkinfo") or {}
        if info.get("info_kind") == "bridge":
            bdata = info.get("info_data") or {}
            bridges[str(entry.get("ifname"))] = (
                int(bdata.get("stp_state", 0) or 0) != 0,
                float(bdata.get("forward_delay", 0) or 0) / 100.0,  # centiseconds
            )
    ports = {}
    for entry in entries:
        info = entry.get("linkinfo") or {}
        if info.get("info_slave_kind") != "bridge":
            continue
        bridge = str(entry.get("master", "?"))
        stp, delay = bridges.get(bridge, (False, 0.0))
        state = _state_name((info.get("info_slave_data") or {}).get("state", "?"))
        ports[str(entry.get("ifname"))] = BridgePort(bridge, state, stp, delay)
    return ports


# --- how to name things and fix them ----------------------------------------------------------


def _at(name: str, netns: str | None) -> str:
    return name if netns is None else f"{name} (netns {netns})"


def _where(netns: str | None) -> str:
    return "this network namespace" if netns is None else f"network namespace {netns}"


def _ip(netns: str | None, *args: str) -> str:
    ns = () if netns is None else ("-n", netns)
    return common.as_root(shlex.join(("ip", *ns, *args)))


def _in_ns(netns: str | None, *argv: str) -> str:
    ns = () if netns is None else ("ip", "netns", "exec", netns)
    return common.as_root(shlex.join((*ns, *argv)))


def _delete(name: str, netns: str | None) -> str:
    vnetio = ("vnetio", "delete", name) + (() if netns is None else ("--netns", netns))
    return f"{common.as_root(shlex.join(vnetio))} (or: {_ip(netns, 'link', 'del', 'dev', name)})"


def _python_open(mode: str, name: str, netns: str | None, **options: object) -> str:
    """``vnetio.Tap('NAME', ...)`` as Python source, for fixes."""
    args = [repr(name), *(f"{k}={v!r}" for k, v in options.items())]
    if netns is not None:
        args.append(f"netns={netns!r}")
    return f"vnetio.{'Tap' if mode == 'tap' else 'Tun'}({', '.join(args)})"


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"gid {gid} ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return f"gid {gid}"


@dataclasses.dataclass(frozen=True, slots=True)
class Cred:
    """Who runs the doctor, as the kernel's TUN ownership rule sees it."""

    euid: int
    egid: int
    groups: frozenset[int]
    net_admin: bool
    sys_admin: bool = False


def _owner_denies(tun: Mapping[str, Any], cred: Cred) -> bool:
    """The kernel's rule (tun_not_capable): without CAP_NET_ADMIN, a set owner must be the
    euid and a set group must be the egid or a supplementary group; unset ones allow all."""
    if cred.net_admin:
        return False
    owner, group = tun.get("owner"), tun.get("group")
    wrong_owner = owner is not None and owner != cred.euid
    wrong_group = group is not None and group != cred.egid and group not in cred.groups
    return wrong_owner or wrong_group


# --- the analysis (pure: links, ports and features in, findings out) -------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Features:
    """Offload features of one adapter; ``error`` says why they are unknown."""

    active: tuple[str, ...] = ()  # ethtool -K words whose features are on: tx, tso, ...
    error: str | None = None


def offload_words(features: Mapping[str, bool]) -> tuple[str, ...]:
    """The ethtool -K words (tx, tso, tx-udp-segmentation) whose TUN offload features are on."""
    return tuple(
        word for word, names in OFFLOAD_FEATURES.items() if any(features.get(n) for n in names)
    )


def _offload_names(words: tuple[str, ...]) -> str:
    labels = {"tx": "checksum", "tso": "TSO", "tx-udp-segmentation": "USO"}
    return "/".join(labels.get(w, w) for w in words)


def _ethtool_off(name: str, netns: str | None, words: tuple[str, ...]) -> str:
    argv = ["ethtool", "-K", name]
    for word in words:
        argv += [word, "off"]
    return _in_ns(netns, *argv)


def attached(link: Mapping[str, Any]) -> bool:
    """Whether some process holds the adapter open.

    The kernel reports queue counts for multi-queue adapters only. A single-queue adapter
    has carrier exactly while its descriptor is attached (unless the holder turned carrier
    off with TUNSETCARRIER, which then reads as not held).
    """
    tun = link.get("tun") or {}
    if tun.get("multi_queue"):
        return int(tun.get("queues") or 0) + int(tun.get("disabled_queues") or 0) > 0
    return bool(link.get("carrier"))


def needs_features(link: Mapping[str, Any]) -> bool:
    """Whether the offload mask of this adapter matters (nobody attached, or a reader
    without IFF_VNET_HDR): only then is ethtool asked."""
    tun = link.get("tun") or {}
    return not attached(link) or not tun.get("vnet_hdr")


@dataclasses.dataclass(frozen=True, slots=True)
class _Adapter:
    """One TUN/TAP adapter as the per-problem checks below see it."""

    link: Mapping[str, Any]
    netns: str | None
    cred: Cred

    @property
    def tun(self) -> Mapping[str, Any]:
        tun: Mapping[str, Any] = self.link["tun"]
        return tun

    @property
    def name(self) -> str:
        return str(self.link["name"])

    @property
    def mode(self) -> str:
        return str(self.tun.get("mode", "tap"))

    @property
    def at(self) -> str:
        return _at(self.name, self.netns)

    @property
    def attached(self) -> bool:
        return attached(self.link)

    def finding(self, check: str, status: Status, summary: str, detail: str, fix: str) -> Finding:
        return Finding(check, status, summary, detail, fix, adapter=self.name, netns=self.netns)

    def open_code(self, **options: object) -> str:
        if self.tun.get("multi_queue") and "queues" not in options:
            options["queues"] = 2
        return _python_open(self.mode, self.name, self.netns, **options)

    def delete(self) -> str:
        return _delete(self.name, self.netns)


def _owner_finding(a: _Adapter) -> Finding | None:
    if not _owner_denies(a.tun, a.cred):
        return None
    owner, group = a.tun.get("owner"), a.tun.get("group")
    who = " and ".join(
        ([_user(owner)] if owner is not None else [])
        + ([_group(group)] if group is not None else [])
    )
    options: dict[str, object] = {"owner": a.cred.euid}
    if group is not None:
        options["group"] = a.cred.egid
    handover = f"{sys.executable} -c 'import vnetio; {a.open_code(**options)}'"
    return a.finding(
        "adapter-owner",
        "fail",
        f"{a.at}: owned by {who}; this process ({_user(a.cred.euid)}, no CAP_NET_ADMIN) "
        "cannot attach to it (EPERM)",
        "Without CAP_NET_ADMIN the kernel lets a process attach to an existing adapter only "
        "when its effective uid is the adapter's owner and its groups include the adapter's "
        "group, for whichever of the two is set.",
        f"run as {who}; or have root hand the adapter over (attaching as root with owner= "
        f"sets the new owner): {common.as_root(handover)}",
    )


def _multi_queue_finding(a: _Adapter) -> Finding | None:
    if not a.tun.get("multi_queue") or a.attached:
        return None
    return a.finding(
        "adapter-multi-queue",
        "fail",
        f"{a.at}: multi-queue {a.mode} that no process holds: opening it with one queue fails "
        "with EINVAL",
        "IFF_MULTI_QUEUE is fixed when an adapter is created and every open must ask for the "
        "same: vnetio with queues=1, python-pytun and other single-queue openers get 'Invalid "
        "argument'. Opening it as multi-queue (vnetio: queues=2 or more) works.",
        f"open it with queues>=2: {a.open_code(queues=2)}; or, if it should be single-queue, "
        f"delete it so it is created anew: {a.delete()}",
    )


def _offload_finding(a: _Adapter, features: Features | None) -> Finding | None:
    if features is None:
        return None
    if not features.active:
        if features.error is None or a.attached:
            return None
        return a.finding(
            "adapter-offload",
            "warn",
            f"{a.at}: offload mask not checked: {features.error}",
            "A persistent adapter keeps the offload mask of its last user (TUNSETOFFLOAD); "
            "ethtool -k shows it.",
            f"install ethtool (Debian/Ubuntu: {common.as_root('apt-get install ethtool')}) and run "
            "vnetio doctor again",
        )
    off = _ethtool_off(a.name, a.netns, features.active)
    what = _offload_names(features.active)
    if not a.attached:
        return a.finding(
            "adapter-offload",
            "warn",
            f"{a.at}: {what} offload left on with no process attached: the next reader without "
            "IFF_VNET_HDR gets 64 KB super-frames and unfinished checksums",
            "The TUNSETOFFLOAD mask belongs to the adapter, not to a descriptor: it outlives "
            "the process that set it (with IFF_VNET_HDR) and applies to whoever attaches next. "
            "Readers without IFF_VNET_HDR (python-pytun, os.read, most tools) then receive "
            "unsegmented GSO frames (truncated to their buffer) and checksums left for the "
            "'hardware' to finish. vnetio resets the mask whenever it opens an adapter "
            "without offload=True.",
            f"{off}; or open it once with vnetio, which resets the mask: {a.open_code()}; or "
            f"delete it: {a.delete()}",
        )
    if a.tun.get("vnet_hdr"):
        return None
    return a.finding(
        "adapter-flags",
        "fail",
        f"{a.at}: {what} offload is on but the process attached opened it without "
        "IFF_VNET_HDR: it reads super-frames and unfinished checksums",
        "The device-wide offload mask (TUNSETOFFLOAD, typically left by an earlier user with "
        "IFF_VNET_HDR) does not match the flags of the descriptor reading now: without a "
        "virtio-net header the reader cannot tell a 64 KB GSO frame or a partial checksum "
        "from a normal packet.",
        f"{off} (takes effect at once); or have the reader reopen it with vnetio, which "
        "resets the mask (or reads super-frames properly with offload=True), or with "
        "IFF_VNET_HDR, handling virtio-net headers",
    )


def _carrier_finding(a: _Adapter, port: BridgePort | None) -> Finding | None:
    if not a.link.get("up"):
        return None
    if a.link.get("carrier"):
        if port is not None and port.state != "forwarding":
            return bridge_port_finding(a.name, port, a.netns)
        return None
    held = (
        "its process turned the carrier off (TUNSETCARRIER)"
        if a.attached
        else "no process holds it (no carrier)"
    )
    down = _ip(a.netns, "link", "set", "dev", a.name, "down")
    if port is not None:
        summary = (
            f"{a.at}: up as a port of bridge {port.bridge}, but {held}: the bridge disables the "
            "port and frames it would forward there vanish without any counter"
        )
        detail = (
            f"Bridge port state: {port.state}. A TAP has carrier only while a process holds "
            "it; until then the bridge neither forwards to it nor counts a drop (TAP-FACTS "
            "pitfall 4). Attach the reader first, then wait for the port to read forwarding."
        )
        nomaster = _ip(a.netns, "link", "set", "dev", a.name, "nomaster")
        take_out = f"{down} (or take it off the bridge: {nomaster})"
    else:
        summary = f"{a.at}: up, but {held}: packets routed to it are dropped"
        detail = (
            "Without a process holding it, everything the kernel sends to the adapter is "
            "dropped; only the adapter's own 'TX dropped' counter shows it."
        )
        take_out = down
    return a.finding(
        "adapter-no-carrier",
        "warn",
        summary,
        detail,
        f"{take_out}; or attach a reader before sending: {a.open_code()}; if it is left over: "
        f"{a.delete()}",
    )


def _orphan_finding(a: _Adapter) -> Finding | None:
    reserved = a.tun.get("owner") is not None or a.tun.get("group") is not None
    if not a.tun.get("persist") or a.attached or reserved:
        return None
    return a.finding(
        "adapter-orphan",
        "warn",
        f"{a.at}: persistent {a.mode} that no process holds (left over by a process that ended "
        "or was killed?)",
        "A persistent adapter outlives its creator. This one has no process attached and is "
        "not reserved for a user (no owner or group set). It keeps its name and settings: a "
        "later open of that name attaches to it as it is (EINVAL if the kind or multi-queue "
        "setting differs).",
        f"{a.delete()}; keep it on purpose? give it an owner so it reads as reserved: "
        f"{a.open_code(owner=a.cred.euid)}",
    )


def analyze_adapter(
    link: Mapping[str, Any],
    *,
    netns: str | None,
    cred: Cred,
    port: BridgePort | None,
    features: Features | None,
) -> list[Finding]:
    """Every non-ok finding about one TUN/TAP adapter (``link`` from ``list_links``).

    ``adapter-orphan`` is reported only when nothing else is: every other finding about an
    adapter nobody holds already says so, and its fix covers deleting it.
    """
    a = _Adapter(link, netns, cred)
    found = [
        f
        for f in (
            _owner_finding(a),
            _multi_queue_finding(a),
            _offload_finding(a, features),
            _carrier_finding(a, port),
        )
        if f is not None
    ]
    if not found:
        orphan = _orphan_finding(a)
        found += [orphan] if orphan else []
    return found


def bridge_port_finding(name: str, port: BridgePort, netns: str | None) -> Finding:
    """An up bridge port (with carrier) that is not forwarding."""
    at, bridge = _at(name, netns), port.bridge
    ns = () if netns is None else ("-n", netns)
    forward = common.as_root(shlex.join(("bridge", *ns, "link", "set", "dev", name, "state", "3")))
    # Turning STP off leaves a port in the state it had; with STP off it may then be set to
    # forwarding by hand (the kernel refuses that while STP runs).
    stp_off = _ip(netns, "link", "set", "dev", bridge, "type", "bridge", "stp_state", "0")
    stp_off = f"{stp_off} && {forward}"
    if port.state in ("listening", "learning"):
        wait = 2 * port.forward_delay
        detail = (
            f"STP is on for {bridge}: a port that comes up spends forward_delay "
            f"({port.forward_delay:g} s) listening and as long again learning; frames to and "
            "from it are dropped until then."
        )
        fix = f"wait about {wait:g} s; or, if {bridge} needs no STP: {stp_off}"
    elif port.state == "blocking":
        detail = (
            f"STP blocks this port of {bridge} because it found a loop (another path between "
            "the same segments)."
        )
        fix = f"remove the loop; or, if there is none and {bridge} needs no STP: {stp_off}"
    else:
        detail = (
            "The port has carrier but its state was set by hand (bridge link set ... state) "
            "or by a user-space STP daemon; the bridge forwards nothing through it."
        )
        fix = forward
    return Finding(
        "bridge-port",
        "warn",
        f"{at}: port of bridge {bridge} is {port.state}, not forwarding: frames through it "
        "are dropped",
        detail,
        fix,
        adapter=name,
        netns=netns,
    )


def _macvtap_findings(
    link: Mapping[str, Any],
    links: list[dict[str, Any]],
    netns: str | None,
    holders: Mapping[int, tuple[str, ...]] | None,
) -> list[Finding]:
    """Findings about one macvtap link (``holders``: see :func:`analyze_namespace`)."""
    name, info = str(link["name"]), link.get("macvtap") or {}
    at, lower = _at(name, netns), info.get("lower")

    def finding(check: str, summary: str, detail: str, fix: str) -> Finding:
        return Finding(check, "warn", summary, detail, fix, adapter=name, netns=netns)

    if link.get("up") and not link.get("carrier"):
        lower_link = next((x for x in links if x.get("name") == lower), None)
        state = "down" if lower_link is not None and not lower_link.get("up") else "without carrier"
        fix = (
            _ip(netns, "link", "set", "dev", str(lower), "up")
            + f" (and check that {lower} has a link partner)"
            if lower
            else _ip(netns, "-d", "link", "show", "dev", name) + "  # shows its lower device"
        )
        return [
            finding(
                "macvtap-no-carrier",
                f"{at}: macvtap link up, but its lower device {lower or '(another namespace)'} "
                f"is {state}: frames neither arrive nor leave",
                "A macvtap has carrier exactly while its lower device has; frames written to "
                "it are dropped (counted as its TX dropped) and nothing is received.",
                fix,
            )
        ]
    if holders is not None and link["ifindex"] in holders and not holders[link["ifindex"]]:
        return [
            finding(
                "macvtap-orphan",
                f"{at}: macvtap link on {lower or '(another namespace)'} that no process holds "
                "(left over by a process that ended or was killed?)",
                "A macvtap link is not owned by a descriptor: it lives until deleted. vnetio "
                "deletes the links it created when they are closed (unless persist=True); one "
                "made with `ip link add … type macvtap` or by a program that died stays. It "
                "keeps its MAC address on the lower device, which keeps receiving for it.",
                f"{_delete(name, netns)}; keep it on purpose? then ignore this warning",
            )
        ]
    return []


def analyze_namespace(
    links: list[dict[str, Any]],
    *,
    netns: str | None,
    cred: Cred,
    ports: Mapping[str, BridgePort],
    features: Mapping[str, Features],
    macvtap_holders: Mapping[int, tuple[str, ...]] | None = None,
) -> list[Finding]:
    """Findings for one namespace: per TUN/TAP adapter, per macvtap link, per other bridge
    port, else one ok. ``macvtap_holders``: the holders of each macvtap link by ifindex
    (None, or a link missing: unknown, so no orphan finding)."""
    found: list[Finding] = []
    tuns = [link for link in links if link.get("tun")]
    macvtaps = [link for link in links if link.get("macvtap")]
    for link in tuns:
        found += analyze_adapter(
            link,
            netns=netns,
            cred=cred,
            port=ports.get(link["name"]),
            features=features.get(link["name"]),
        )
    for link in macvtaps:
        found += _macvtap_findings(link, links, netns, macvtap_holders)
    by_name = {str(link["name"]): link for link in links}
    tun_names = {str(link["name"]) for link in tuns}
    for name, port in sorted(ports.items()):
        link = by_name.get(name, {})
        if name not in tun_names and link.get("up") and port.state != "forwarding":
            found.append(bridge_port_finding(name, port, netns))
    if not found:
        found.append(_summary(tuns, netns, macvtaps, macvtap_holders))
    return found


def _describe(link: Mapping[str, Any]) -> str:
    tun = link["tun"]
    parts = [str(tun.get("mode"))]
    if tun.get("persist"):
        parts.append("persistent")
    if tun.get("multi_queue"):
        parts.append("multi-queue")
    if tun.get("multi_queue"):
        queues = int(tun.get("queues") or 0)
        parts.append(f"{queues} queue{'s' if queues != 1 else ''} attached")
    else:
        parts.append("held by a process" if attached(link) else "held by no process")
    if tun.get("owner") is not None:
        parts.append(f"owner {tun['owner']}")
    if tun.get("group") is not None:
        parts.append(f"group {tun['group']}")
    return f"{link['name']}: {', '.join(parts)}"


def _describe_macvtap(
    link: Mapping[str, Any], holders: Mapping[int, tuple[str, ...]] | None
) -> str:
    info = link.get("macvtap") or {}
    lower = info.get("lower") or "a device in another namespace"
    who = None if holders is None else holders.get(link["ifindex"])
    held = "holders unknown" if who is None else ("held by " + ", ".join(who) if who else "")
    return f"{link['name']}: macvtap {info.get('mode')} on {lower}" + (f", {held}" if held else "")


def _summary(
    tuns: list[dict[str, Any]],
    netns: str | None,
    macvtaps: list[dict[str, Any]] | None = None,
    holders: Mapping[int, tuple[str, ...]] | None = None,
) -> Finding:
    where = _where(netns)
    macvtaps = macvtaps or []
    if not tuns and not macvtaps:
        return Finding("adapters", "ok", f"{where}: no TUN/TAP adapters", netns=netns)

    def count(links: list[dict[str, Any]], what: str) -> str:
        names = " ".join(str(link["name"]) for link in links)
        return f"{len(links)} {what}{'s' if len(links) != 1 else ''} ({names})"

    parts = ([count(tuns, "TUN/TAP adapter")] if tuns else []) + (
        [count(macvtaps, "macvtap link")] if macvtaps else []
    )
    return Finding(
        "adapters",
        "ok",
        f"{where}: {' and '.join(parts)}, nothing to fix",
        "\n".join(
            [_describe(link) for link in tuns]
            + [_describe_macvtap(link, holders) for link in macvtaps]
        ),
        netns=netns,
    )


# --- gathering (system) -------------------------------------------------------------------


def _link_ports(netns: str | None) -> dict[str, BridgePort] | str:
    """Bridge ports of a namespace, or why they cannot be read."""
    ip = common.which("ip")
    if ip is None:
        return "iproute2 ('ip') is not installed"
    argv = [ip, *(["-n", netns] if netns else []), "-d", "-j", "link", "show"]
    try:
        proc = _run(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if proc.returncode != 0:
        return f"{shlex.join(argv)}: {proc.stderr.strip() or f'exit status {proc.returncode}'}"
    try:
        return parse_link_details(json.loads(proc.stdout or "[]"))
    except (ValueError, TypeError, AttributeError) as exc:
        return f"cannot parse the output of {shlex.join(argv)}: {exc}"


def _features(name: str, netns: str | None) -> Features:
    ethtool = common.which("ethtool")
    if ethtool is None:
        return Features(error="ethtool is not installed")
    argv = [ethtool, "-k", name]
    if netns is not None:
        ip = common.which("ip")
        if ip is None:
            return Features(error="iproute2 ('ip') is not installed")
        argv = [ip, "netns", "exec", netns, *argv]
    try:
        proc = _run(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        return Features(error=str(exc))
    if proc.returncode != 0:
        return Features(error=f"{shlex.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return Features(active=offload_words(parse_ethtool_features(proc.stdout)))


def check_adapters(netns: str | None, cred: Cred | None = None) -> list[Finding]:
    """Examine every TUN/TAP adapter (and bridge port) of one namespace."""
    cred = cred or _cred()
    where = _where(netns)
    try:
        links = _list_links(netns)
    except ImportError as exc:
        return [
            Finding(
                "adapters",
                "warn",
                f"{where}: adapters not checked: the Rust core cannot be imported",
                f"{type(exc).__name__}: {exc}. See the 'versions' finding.",
                common.reinstall_fix(),
                netns=netns,
            )
        ]
    except (OSError, ValueError) as exc:
        if netns is not None and not cred.sys_admin:
            fix = f"run as root: {common.as_root(f'vnetio doctor --netns {shlex.quote(netns)}')}"
        else:
            fix = "ip netns list  # shows the names of the namespaces that exist"
        return [
            Finding(
                "adapters",
                "fail" if netns is not None else "warn",
                f"{where} cannot be examined: {exc}",
                "Entering another network namespace needs root (CAP_SYS_ADMIN); the name must "
                "be one that 'ip netns list' shows.",
                fix,
                netns=netns,
            )
        ]

    found: list[Finding] = []
    by_index = {link.get("ifindex"): link for link in links}
    bridged = any(
        (by_index.get(link.get("master")) or {}).get("kind") == "bridge" for link in links
    )
    ports: Mapping[str, BridgePort] = {}
    if bridged:
        got = _link_ports(netns)
        if isinstance(got, str):
            found.append(
                Finding(
                    "bridge-port",
                    "warn",
                    f"{where}: bridge port states not checked: {got}",
                    "Ports of a bridge that are not forwarding drop every frame silently.",
                    f"install iproute2 (Debian/Ubuntu: {common.as_root('apt-get install iproute2')})",
                    netns=netns,
                )
            )
        else:
            ports = got
    features = {
        str(link["name"]): _features(str(link["name"]), netns)
        for link in links
        if link.get("tun") and needs_features(link)
    }
    try:
        holders = _macvtap_holders(links)
    except (ImportError, OSError):
        holders = None
    found += raised_queue_findings(netns)
    if netns is None:  # /var/run/wireguard is one directory for every namespace
        found += stale_wireguard_findings()
    found += analyze_namespace(
        links,
        netns=netns,
        cred=cred,
        ports=ports,
        features=features,
        macvtap_holders=holders,
    )
    if len(found) > 1 and found[-1].check == "adapters" and found[-1].status == "ok":
        found.pop()  # a "not checked" warning above means it is not all fine
    return found


def raised_queue_findings(netns: str | None) -> list[Finding]:
    """``adapter-queue-raised``: kernel queues a capture raised and never put back (its
    process was killed), from the records of ``vnetio.hygiene.queues``."""
    from vnetio.hygiene.queues import raised_queues

    try:
        queues = raised_queues(netns)
    except (OSError, ValueError):
        return []
    scope = () if netns is None else ("--netns", netns)
    return [
        Finding(
            "adapter-queue-raised",
            "warn",
            f"{_at(q.name, netns)}: kernel queue left raised to {q.raised} frames (it was "
            f"{q.original}) by a capture that ended without putting it back (PID {q.pid}, "
            "killed?)",
            "A capture raises its adapter's queue (txqueuelen) while it runs and puts it back "
            "at the end; a capture killed in between (SIGKILL, out of memory) cannot. Every "
            "later user of the adapter gets the longer queue, and the latency that comes "
            "with it under load.",
            f"{common.as_root(shlex.join(('vnetio', 'cleanup', *scope)))} (or: "
            f"{_ip(netns, 'link', 'set', 'dev', q.name, 'txqueuelen', str(q.original))})",
            adapter=q.name,
            netns=netns,
        )
        for q in queues
        if q.left_raised
    ]


def stale_wireguard_findings() -> list[Finding]:
    """``wireguard-stale``: a vnetio WireGuard interface whose process was killed left its
    userspace API socket and record in /var/run/wireguard (the TUN went with the process)."""
    from vnetio.wireguard import uapi

    try:
        stale = [r for r in uapi.records() if not r.alive]
    except OSError:
        return []
    return [
        Finding(
            "wireguard-stale",
            "warn",
            f"WireGuard interface {r.name}: its process ({r.pid}) is gone, but its socket "
            f"and record are still in {uapi.RUN_DIR}",
            "A `vnetio wg up` (or a program with a vnetio WireGuard interface) killed before "
            "it closed cannot remove them; `wg show` and `vnetio wg show` then list an "
            "interface that is gone.",
            f"{common.as_root('vnetio cleanup')} (or: vnetio wg down {r.name})",
            adapter=r.name,
        )
        for r in stale
    ]


def target_namespaces(
    names: list[str] | None, all_namespaces: bool
) -> tuple[list[str | None], list[Finding]]:
    """The namespaces to examine (None: the caller's), and a finding if listing failed."""
    if names:
        return list(dict.fromkeys(names)), []
    if not all_namespaces:
        return [None], []
    ip = common.which("ip")
    problem = None
    if ip is None:
        problem = "iproute2 ('ip') is not installed"
    else:
        try:
            proc = _run([ip, "netns", "list"])
        except (OSError, subprocess.SubprocessError) as exc:
            problem = str(exc)
        else:
            if proc.returncode != 0:
                problem = proc.stderr.strip() or f"exit status {proc.returncode}"
    if problem is not None:
        return [None], [
            Finding(
                "adapters",
                "warn",
                f"named network namespaces not listed ('ip netns list' failed: {problem}); "
                "only this one is examined",
                "",
                f"install iproute2 (Debian/Ubuntu: {common.as_root('apt-get install iproute2')})",
            )
        ]
    named = [n for n in parse_netns_list(proc.stdout) if not _same_netns_as_caller(n)]
    return [None, *named], []


# --- kernel offload support (TUNSETOFFLOAD flags) -------------------------------------------

# What the finding names, in order: the TUN_F_* flags (include/uapi/linux/if_tun.h), with
# USO4 and USO6 as one (the kernel takes them only together).
OFFLOAD_NAMES = ("CSUM", "TSO4", "TSO6", "TSO_ECN", "USO")

# The probe is the library's own: vnetio.Tap(offload=True) offers the kernel the richest
# TUNSETOFFLOAD mask first and falls back to smaller ones; Tap.offloads is what it took. It
# runs in a child in a throwaway network namespace (unshare --net), so the probe TAP never
# appears among the caller's interfaces, and goes with the namespace even if the child dies.
_OFFLOAD_PROBE = (
    "import json, vnetio; print(json.dumps(vnetio.Tap('vnprobe0', offload=True).offloads))"
)


def offload_flags(offloads: Iterable[str]) -> list[str]:
    """:data:`OFFLOAD_NAMES` that an adapter's ``offloads`` ("csum", "tso4", "tso6", "uso4",
    "uso6") cover. vnetio never offers TSO_ECN, but the kernel's tun_set_offload() takes it
    exactly when it takes TSO4 or TSO6 with it, so it is reported with TSO4."""
    took = set(offloads)
    accepted = {
        "CSUM": "csum" in took,
        "TSO4": "tso4" in took,
        "TSO6": "tso6" in took,
        "TSO_ECN": "tso4" in took,
        "USO": {"uso4", "uso6"} <= took,
    }
    return [name for name in OFFLOAD_NAMES if accepted[name]]


def check_offload(cred: Cred | None = None) -> list[Finding]:
    """Which TUNSETOFFLOAD flags this kernel accepts (probed on a TAP in a private namespace)."""
    cred = cred or _cred()
    unshare = common.which("unshare")
    if not (cred.net_admin and cred.sys_admin) or unshare is None:
        why = "needs root" if unshare else "'unshare' (util-linux) is not installed"
        return [
            Finding(
                "offload",
                "warn",
                f"kernel offload support (TUNSETOFFLOAD) not checked: probing {why}",
                "The probe opens a TAP with IFF_VNET_HDR in a private network namespace.",
                common.as_root("vnetio doctor"),
            )
        ]
    argv = [unshare, "--net", sys.executable, "-c", _OFFLOAD_PROBE]
    accepted: list[str] | None = None
    try:
        proc = _run(argv)
        error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        if proc.returncode == 0:
            offloads = json.loads(proc.stdout)
            if isinstance(offloads, list):
                accepted = offload_flags(str(name) for name in offloads)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        error = str(exc)
    if accepted is None:
        return [
            Finding(
                "offload",
                "warn",
                "kernel offload support (TUNSETOFFLOAD) could not be probed",
                error,
                "see the 'tun-features' and 'tun-open' findings",
            )
        ]
    missing = [n for n in OFFLOAD_NAMES if n not in accepted]
    summary = "kernel offload (TUNSETOFFLOAD) accepts: " + (" ".join(accepted) or "nothing")
    basic = [n for n in ("CSUM", "TSO4", "TSO6") if n in missing]
    if basic:
        return [
            Finding(
                "offload",
                "warn",
                f"{summary} (missing: {' '.join(missing)})",
                "Checksum and TCP segmentation offload through virtio-net headers are "
                "unavailable, so TCP through an adapter moves one MTU-sized packet at a time.",
                "run a kernel whose TUN driver accepts TUNSETOFFLOAD checksum and TSO flags "
                "(every mainline Linux since 2.6.27 does)",
            )
        ]
    note = f" (not: {' '.join(missing)}; UDP segmentation offload (USO) needs Linux 6.2)"
    return [Finding("offload", "ok", summary + note * bool(missing))]
