"""Shared fixtures and the `privileged` marker policy.

Policy: a test marked ``privileged`` (and every test that uses the ``netns`` or
``bridge_pair`` fixtures, which are marked automatically) needs CAP_NET_ADMIN,
/dev/net/tun and ``ip netns``. When these are missing the test is skipped with the
reason — unless the environment variable ``CI`` is set, in which case it *fails* with
the reason, so CI can never go green by skipping the tests that matter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.netutil import (
    Netns,
    create_netns,
    delete_netns,
    our_namespaces,
    privilege_problem,
    root_tuntaps,
    run,
)

PRIVILEGED_FIXTURES = {"netns", "bridge_pair"}


def ci_is_set() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ipv6: the `netns` fixture leaves IPv6 enabled (disabled by default)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & PRIVILEGED_FIXTURES and item.get_closest_marker("privileged") is None:
            item.add_marker(pytest.mark.privileged)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") is None:
        return
    problem = privilege_problem()
    if problem is None:
        return
    if ci_is_set():
        pytest.fail(f"privileged test cannot run and CI is set: {problem}", pytrace=False)
    pytest.skip(f"privileged test skipped: {problem} (with CI set it would fail)")


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[None]:
    """Fail the test that leaves a `vnetio-t-` namespace or a new TUN/TAP in this namespace.

    Autouse fixtures are set up first, so this one is torn down after the test's own
    fixtures have cleaned up. What leaked is removed, so one leak does not cascade.
    """
    namespaces, tuntaps = our_namespaces(), root_tuntaps()
    yield
    leaked_ns = sorted(our_namespaces() - namespaces)
    leaked_taps = sorted(root_tuntaps() - tuntaps)
    if not (leaked_ns or leaked_taps):
        return
    for name in leaked_ns:
        delete_netns(name)
    for dev in leaked_taps:
        if dev.startswith("vn"):
            run(["ip", "link", "del", "dev", dev], check=False)
    pytest.fail(
        f"test leaked namespaces {leaked_ns} and/or TUN/TAP adapters in the root "
        f"namespace {leaked_taps} (removed now)",
        pytrace=False,
    )


@pytest.fixture
def netns(request: pytest.FixtureRequest) -> Iterator[Netns]:
    """A fresh private network namespace ``vnetio-t-<rand>``: lo up, IPv6 disabled before
    any device exists (mark the test ``@pytest.mark.ipv6`` to keep it). Deleted on teardown
    together with every device in it."""
    ns = create_netns(ipv6=request.node.get_closest_marker("ipv6") is not None)
    try:
        yield ns
    finally:
        delete_netns(ns.name)


@dataclass(frozen=True)
class BridgePair:
    """Two persistent TAPs ``a`` and ``b`` enslaved to ``bridge``, all up, in ``ns``."""

    ns: Netns
    bridge: str
    a: str
    b: str

    def wait_forwarding(self, timeout: float = 10.0) -> None:
        """Call once both TAPs are open (a TAP without a reader has no carrier)."""
        self.ns.wait_forwarding(self.a, self.b, timeout=timeout)


@pytest.fixture
def bridge_pair(netns: Netns) -> Iterator[BridgePair]:
    pair = BridgePair(netns, bridge="vnbr0", a="vna0", b="vnb0")
    try:
        netns.ip(
            "link", "add", pair.bridge, "type", "bridge",
            "stp_state", "0", "mcast_snooping", "0", "forward_delay", "0",
        )  # fmt: skip
        # bridge-nf-call-{iptables,ip6tables,arptables} exist only with br_netfilter loaded.
        netns.exec(
            "sh", "-c",
            "for f in /proc/sys/net/bridge/bridge-nf-call-*; do "
            '[ -e "$f" ] && echo 0 > "$f"; done; true',
        )  # fmt: skip
        for tap in (pair.a, pair.b):
            netns.ip("tuntap", "add", "dev", tap, "mode", "tap")
            netns.ip("link", "set", "dev", tap, "master", pair.bridge)
        netns.set_links((pair.bridge, pair.a, pair.b), "up")
        yield pair
    finally:
        for dev in (pair.a, pair.b, pair.bridge):
            netns.ip("link", "del", "dev", dev, check=False)


@pytest.fixture(autouse=True, scope="session")
def _vnetio_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep vnetio's adapter records (see vnetio.hygiene) out of /run/vnetio: every test,
    and every subprocess it starts, writes them to a temporary directory instead."""
    old = os.environ.get("VNETIO_STATE_DIR")
    os.environ["VNETIO_STATE_DIR"] = str(tmp_path_factory.mktemp("vnetio-state"))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("VNETIO_STATE_DIR", None)
        else:
            os.environ["VNETIO_STATE_DIR"] = old
