"""Names that moved keep working where they were: ``vnetio.loopback`` and ``vnetio._doctor``."""

from __future__ import annotations

import vnetio
import vnetio.loopback
from vnetio import _doctor, kernel_loop, responder
from vnetio.cli import doctor


def test_loopback_module_re_exports_the_old_names() -> None:
    assert vnetio.loopback.KernelLoop is kernel_loop.KernelLoop is vnetio.KernelLoop
    assert vnetio.loopback.EchoResponder is responder.EchoResponder is vnetio.EchoResponder
    assert vnetio.loopback.loopback_pair is vnetio.loopback_pair
    assert vnetio.loopback.Loopback is vnetio.Loopback
    assert vnetio.loopback.random_mac is responder.random_mac
    assert {"EchoResponder", "KernelLoop", "Loopback", "loopback_pair"} <= set(
        vnetio.loopback.__all__
    )


def test_old_doctor_module_is_the_doctor() -> None:
    assert _doctor.main is doctor.main
    assert _doctor.run_checks is doctor.run_checks
    assert _doctor.Finding is doctor.Finding
