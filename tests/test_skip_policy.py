"""The skip policy of tests/conftest.py, run as a nested pytest on synthetic test files.

With ``CI`` set, every way a test can end up not checked (a skip in the body or in a
fixture, ``skip``/``skipif`` markers, ``importorskip``, a module skipped at import, an
expected failure, a non-strict ``xfail`` that passes) must fail, naming the reason;
without ``CI`` each stays what it was. ``wheel`` tests are deselected, with the reason
printed, unless ``VNETIO_DIST_WHEEL`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SYNTHETIC = {
    "test_ways.py": """
        import pytest

        def test_passes():
            pass

        def test_skip_in_body():
            pytest.skip("reason-body")

        @pytest.mark.skip(reason="reason-marker")
        def test_skip_marker():
            pass

        @pytest.mark.skipif(True, reason="reason-skipif")
        def test_skipif_marker():
            pass

        def test_importorskip():
            pytest.importorskip("vnetio_reason_no_such_module")

        @pytest.fixture
        def skipping():
            pytest.skip("reason-fixture")

        def test_skip_in_fixture(skipping):
            pass

        @pytest.mark.xfail(reason="reason-xfail", strict=False)
        def test_xfail_that_fails():
            assert False

        @pytest.mark.xfail(reason="reason-xpass", strict=False)
        def test_xfail_that_passes():
            pass

        def test_imperative_xfail():
            pytest.xfail("reason-imperative-xfail")

        @pytest.mark.wheel
        def test_wheel_only():
            pass
    """,
    "test_module_skip.py": """
        import pytest

        pytest.skip("reason-module", allow_module_level=True)

        def test_never_collected():
            pass
    """,
    "test_module_importorskip.py": """
        import pytest

        pytest.importorskip("vnetio_reason_module_import")

        def test_never_collected():
            pass
    """,
}

# Test name → (its reason, its outcome in junit XML without CI).
WAYS = {
    "test_skip_in_body": ("reason-body", "skipped"),
    "test_skip_marker": ("reason-marker", "skipped"),
    "test_skipif_marker": ("reason-skipif", "skipped"),
    "test_importorskip": ("vnetio_reason_no_such_module", "skipped"),
    "test_skip_in_fixture": ("reason-fixture", "skipped"),
    "test_xfail_that_fails": ("reason-xfail", "skipped"),
    "test_xfail_that_passes": ("reason-xpass", "passed"),
    "test_imperative_xfail": ("reason-imperative-xfail", "skipped"),
}
MODULES = {
    "test_module_skip": "reason-module",
    "test_module_importorskip": "vnetio_reason_module_import",
}


def nested_pytest(
    tmp_path: Path, env_extra: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, tuple[str, str]]]:
    """Run the synthetic files; return the process and, per test case in the junit XML,
    (outcome, the failure/error/skipped text)."""
    for name, source in SYNTHETIC.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VNETIO_DIST_WHEEL")}
    env |= {"PYTHONPATH": str(REPO), **env_extra}
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-o", "xfail_strict=false", "-rA", "--continue-on-collection-errors", f"--junitxml={junit}", "--rootdir", str(tmp_path),
         *SYNTHETIC],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    cases: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).iter("testcase"):
        name = case.get("name", "")
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                text = f"{child.get('message', '')} {child.text or ''}"
        cases[name] = (outcome, text)
    return proc, cases


def test_without_ci_skips_stay_skips(tmp_path: Path) -> None:
    proc, cases = nested_pytest(tmp_path, {})
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert cases.pop("test_passes") == ("passed", "")
    for name, (reason, outcome) in WAYS.items():
        got, text = cases.pop(name)
        assert got == outcome, (name, got, text, report)
        if outcome == "skipped":
            assert reason in text, (name, text)
    for module, reason in MODULES.items():
        got, text = cases.pop(module)  # a skipped module is a test case named after it
        assert got == "skipped" and reason in text, (module, got, text)
    assert cases == {}, cases  # the wheel test was deselected
    assert "1 deselected" in report, report
    assert "deselected 1 `wheel` tests (test_ways.py)" in report, report
    assert "VNETIO_DIST_WHEEL is not set here" in report, report


@pytest.mark.parametrize("ci", ["true", "1"])
def test_with_ci_every_skip_fails_with_its_reason(tmp_path: Path, ci: str) -> None:
    proc, cases = nested_pytest(tmp_path, {"CI": ci})
    report = proc.stdout + proc.stderr
    assert proc.returncode == 1, report
    assert cases.pop("test_passes") == ("passed", "")
    for name, (reason, _) in WAYS.items():
        got, text = cases.pop(name)
        assert got in ("failure", "error"), (name, got, text, report)
        assert "a skip is a failure when CI is set" in text and reason in text, (name, text)
        # The short summary names the test and the reason too.
        summary = [line for line in report.splitlines() if f"::{name} - " in line]
        assert summary and reason in summary[0], (name, summary)
    for module, reason in MODULES.items():
        got, text = cases.pop(module)
        assert got == "error" and reason in text, (module, got, text)
        assert "skipped at collection" in text, text
    assert cases == {}, cases
    assert "1 deselected" in report, report  # deselection is no skip: CI does not mind it


def test_wheel_tests_run_when_the_wheel_is_named(tmp_path: Path) -> None:
    proc, cases = nested_pytest(tmp_path, {"VNETIO_DIST_WHEEL": "/nonexistent.whl"})
    assert cases["test_wheel_only"] == ("passed", "")
    assert "deselected" not in proc.stdout, proc.stdout
