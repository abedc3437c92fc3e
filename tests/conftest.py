"""Shared fixtures, the skip policy and the `privileged` marker policy.

Skip policy: with the environment variable ``CI`` set (:func:`ci_is_set`), a test that
would be skipped *fails* instead, with the skip's reason — whatever skipped it:
``pytest.skip()`` in a test or fixture, a ``skip``/``skipif`` marker, ``importorskip``, a
module-level skip, or an expected failure (``xfail`` marker or ``pytest.xfail()``, whether
it fails as expected or passes). One hook does it (:func:`pytest_runtest_makereport`, and
:func:`pytest_make_collect_report` for skips at import time), so CI can never go green
by skipping a test. Without ``CI`` a skip stays a skip (a laptop without QEMU, say).
Tests that only make sense elsewhere are *deselected*, not skipped, with the reason
printed in the summary: see :data:`WHEEL_ONLY`.

`privileged` policy: a test marked ``privileged`` (and every test that uses the ``netns``
or ``bridge_pair`` fixtures, which are marked automatically) needs CAP_NET_ADMIN,
/dev/net/tun and ``ip netns``. When these are missing the test is skipped with the
reason, which the skip policy turns into a failure when ``CI`` is set.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

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


# Hypothesis times each example by the wall clock: its default 200 ms deadline and its
# too_slow health check (data generation) fail a property test when the machine is loaded,
# whatever the property. Neither checks vnetio; a test's own @settings inherit this.
settings.register_profile(
    "vnetio", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("vnetio")


def ci_is_set() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# Tests marked `wheel` prove that a run is against the installed wheel: `make dist-check`
# (tests/packaging/check.sh) sets this variable to the wheel's path. Anywhere else they are
# deselected, and the summary says so and why.
WHEEL_ONLY = "VNETIO_DIST_WHEEL"
_DESELECTED_WHEEL_TESTS = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    # Tests interrupt children with SIGINT (Ctrl-C handling, the capture command line), so
    # a child must take it. Started as a background job of a non-interactive shell (a CI
    # script's `make test &`), pytest inherits SIGINT *ignored*, every child too, and
    # Python then installs no KeyboardInterrupt handler: those tests would hang and fail
    # whatever vnetio does. A handler here is reset to the default in each exec'd child.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers", "ipv6: the `netns` fixture leaves IPv6 enabled (disabled by default)"
    )
    config.addinivalue_line(
        "markers",
        f"wheel: checks a run against the installed wheel; deselected (reason printed) "
        f"unless {WHEEL_ONLY} is set, as `make dist-check` does",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & PRIVILEGED_FIXTURES and item.get_closest_marker("privileged") is None:
            item.add_marker(pytest.mark.privileged)
    if os.environ.get(WHEEL_ONLY):
        return
    wheel_only = [item for item in items if item.get_closest_marker("wheel") is not None]
    if wheel_only:
        items[:] = [item for item in items if item.get_closest_marker("wheel") is None]
        config.hook.pytest_deselected(items=wheel_only)
        config.stash[_DESELECTED_WHEEL_TESTS] = [item.nodeid for item in wheel_only]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    deselected = terminalreporter.config.stash.get(_DESELECTED_WHEEL_TESTS, [])
    if deselected:
        files = sorted({nodeid.split("::")[0] for nodeid in deselected})
        terminalreporter.write_line(
            f"deselected {len(deselected)} `wheel` tests ({', '.join(files)}): they check "
            f"a run against the installed wheel, which `make dist-check` does "
            f"({WHEEL_ONLY} is not set here)"
        )


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """What a skipped (or expected-failure) report says about why."""
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        return f"expected failure (xfail){': ' + wasxfail if wasxfail else ''}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        path, line, message = longrepr
        return f"{message.removeprefix('Skipped: ')} ({path}:{line})"
    return str(longrepr)


def _fail_with_reason(report: pytest.TestReport | pytest.CollectReport, when: str) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    if hasattr(report, "wasxfail"):
        del report.wasxfail  # else it would still be counted as xfailed/xpassed
    report.longrepr = f"skipped at {when}, and a skip is a failure when CI is set: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """With CI set: a skipped setup, call or teardown (a skip of any kind, an expected
    failure), or a passing ``xfail`` test that is not strict, fails with the reason."""
    report = yield
    if ci_is_set() and (report.skipped or hasattr(report, "wasxfail")):
        _fail_with_reason(report, call.when)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """With CI set: a module skipped as it is imported (``pytest.skip(...,
    allow_module_level=True)``, ``importorskip`` at module level) fails its collection."""
    report = yield
    if ci_is_set() and report.skipped:
        _fail_with_reason(report, "collection")
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") is None:
        return
    problem = privilege_problem()
    if problem is not None:
        pytest.skip(f"privileged test cannot run: {problem}")


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
