"""Marker policy and leak guard for the guest-rig tests (tests/vm).

A test marked ``vm`` boots a guest under QEMU (see tests/vm/rig.py). When QEMU, a kernel
image with its modules, static busybox or dash is missing, it is skipped with the reason;
with ``CI`` set the skip policy of tests/conftest.py makes that a failure, as for any skip. Tests that also need a network namespace carry ``privileged`` too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from tests.vm import rig


@functools.cache
def _vm_problem() -> str | None:
    return rig.vm_problem()


#: Per-test limit (pytest-timeout) for guest-rig tests: boot, module fixtures and 32 MB
#: streams through a TCG guest, whose speed is the machine's spare CPU. One took 61 s with
#: the machine at load 12 (pyproject's general limit is 120 s; this is only a hang guard).
VM_TEST_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("vm") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(VM_TEST_TIMEOUT))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("vm") is None:
        return
    problem = _vm_problem()
    if problem is not None:  # with CI set the skip is a failure (tests/conftest.py)
        pytest.skip(f"VM test cannot run: {problem}")


@pytest.fixture(autouse=True)
def guest_leak_guard() -> Iterator[None]:
    """Fail the test that leaves a guest running (module-scoped guests are set up before
    this fixture and torn down after it, so they are not counted). Leaks are killed."""
    before = set(rig.live_guests())
    yield
    leaked = {pid: g for pid, g in rig.live_guests().items() if pid not in before}
    if not leaked:
        return
    for guest in leaked.values():
        guest.kill()
    pytest.fail(f"test left guests running: {sorted(leaked)} (killed now)", pytrace=False)
