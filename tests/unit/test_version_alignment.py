"""The Rust core and the Python package must come from one build; `import vnetio` says so.

The mismatches are real: a temporary copy of the package (with the real built extension)
whose EXPECTED_ABI differs, or a fake ``vnetio-*.dist-info`` that claims another version,
first on ``PYTHONPATH`` of a fresh interpreter. The ``vnetio`` command must still run
``doctor`` (which reports the problem, exit 1) and ``--version``, and refuse the rest.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import vnetio
from vnetio import _corecheck

PACKAGE = Path(vnetio.__file__).resolve().parent
CORE_VERSION = vnetio._core.__version__


def copy_package(dest: Path, *, abi: int | None = None) -> Path:
    """A copy of the package (the built extension included) under ``dest``; returns dest."""
    shutil.copytree(PACKAGE, dest / "vnetio", ignore=shutil.ignore_patterns("__pycache__"))
    if abi is not None:
        corecheck = dest / "vnetio" / "_corecheck.py"
        text, count = re.subn(
            r"(?m)^EXPECTED_ABI = \d+$", f"EXPECTED_ABI = {abi}", corecheck.read_text()
        )
        assert count == 1
        corecheck.write_text(text)
    return dest


def fake_distribution(dest: Path, version: str) -> None:
    info = dest / f"vnetio-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vnetio\nVersion: {version}\n")


def console_script(dest: Path) -> Path:
    """A `vnetio` console script like the one pip writes, running this interpreter."""
    script = dest / "bin" / "vnetio"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom vnetio.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


def run(argv: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.fixture
def abi_mismatch(tmp_path: Path) -> Path:
    return copy_package(tmp_path, abi=vnetio.EXPECTED_ABI + 98)


def test_import_fails_on_an_abi_mismatch_naming_both_sides_and_the_fix(abi_mismatch: Path) -> None:
    proc = run([sys.executable, "-c", "import vnetio"], abi_mismatch)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: vnetio's Rust core does not match its Python package")
    assert f"core {CORE_VERSION} (ABI {vnetio._core.ABI_VERSION})" in last
    assert f"(ABI {vnetio.EXPECTED_ABI + 98})" in last
    assert "`pip install --force-reinstall vnetio`" in last  # the copy is no source checkout


def test_import_fails_on_a_version_mismatch(tmp_path: Path) -> None:
    copy_package(tmp_path)
    fake_distribution(tmp_path, "9.9.9")
    proc = run([sys.executable, "-c", "import vnetio"], tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert f"core {CORE_VERSION} " in last and "vs package 9.9.9 " in last, last


def test_the_fix_in_a_source_checkout_is_make_build(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text("")
    (tmp_path / "Makefile").write_text("")
    copy_package(tmp_path / "python", abi=vnetio.EXPECTED_ABI + 1)
    proc = run([sys.executable, "-c", "import vnetio"], tmp_path / "python")
    assert f"`make -C {tmp_path} build`" in proc.stderr, proc.stderr


def test_matching_versions_import_fine(tmp_path: Path) -> None:
    copy_package(tmp_path)
    fake_distribution(tmp_path, CORE_VERSION)
    proc = run([sys.executable, "-c", "import vnetio; print(vnetio.__file__)"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "vnetio" / "__init__.py")


@pytest.mark.parametrize("how", ["console-script", "python-m"])
def test_doctor_and_version_still_run_and_report_the_mismatch(abi_mismatch: Path, how: str) -> None:
    if how == "console-script":
        command = [str(console_script(abi_mismatch))]
    else:
        command = [sys.executable, "-m", "vnetio.cli"]
    doctor = run([*command, "doctor"], abi_mismatch)
    assert doctor.returncode == 1, doctor.stderr
    assert "[FAIL]" in doctor.stdout
    assert f"the Python package expects {vnetio.EXPECTED_ABI + 98}" in doctor.stdout
    assert "Traceback" not in doctor.stderr

    version = run([*command, "--version"], abi_mismatch)
    assert version.returncode == 0 and version.stdout.strip().startswith("vnetio "), version

    helped = run([*command, "--help"], abi_mismatch)
    assert helped.returncode == 0 and "cleanup" in helped.stdout

    for args in (["list"], ["cleanup", "--dry-run"], ["demo", "--loopback"]):
        refused = run([*command, *args], abi_mismatch)
        assert refused.returncode == 1, (args, refused.stdout)
        assert "Traceback" not in refused.stderr
        assert f"vnetio {args[0]}: vnetio's Rust core does not match" in refused.stderr
        assert "pip install --force-reinstall vnetio" in refused.stderr
        assert "vnetio doctor" in refused.stderr


def test_a_missing_core_is_reported_too(tmp_path: Path) -> None:
    copy_package(tmp_path)
    for built in (tmp_path / "vnetio").glob("_core*.so"):
        built.unlink()
    proc = run([sys.executable, "-c", "import vnetio"], tmp_path)
    assert proc.returncode == 1
    assert "ImportError: vnetio's Rust core (vnetio._core) cannot be imported" in proc.stderr
    assert "pip install --force-reinstall vnetio" in proc.stderr
    doctor = run([sys.executable, "-m", "vnetio.cli", "doctor"], tmp_path)
    assert doctor.returncode == 1, doctor.stderr
    assert "[FAIL] the Rust core vnetio._core cannot be imported" in doctor.stdout


def test_python_m_doctor_reports_the_mismatch(abi_mismatch: Path) -> None:
    proc = run([sys.executable, "-m", "vnetio._doctor"], abi_mismatch)
    assert proc.returncode == 1 and "[FAIL]" in proc.stdout, proc.stderr


def test_the_deferred_error_reaches_anything_that_uses_the_core(abi_mismatch: Path) -> None:
    """A program that happens to be called `vnetio` still gets the ImportError on use."""
    script = abi_mismatch / "vnetio-prog" / "vnetio"
    script.parent.mkdir()
    script.write_text("import vnetio\nvnetio.Tap\n")
    proc = run([sys.executable, str(script)], abi_mismatch)
    assert proc.returncode == 1
    assert "ImportError: vnetio's Rust core does not match" in proc.stderr


@pytest.mark.parametrize(
    ("orig_argv", "expected"),
    [
        (["python", "/venv/bin/vnetio", "doctor"], True),
        (["python", "/venv/bin/vnetio"], True),
        (["python", "-m", "vnetio.cli", "list"], True),
        (["python", "-mvnetio._doctor"], True),
        (["python", "-X", "dev", "-m", "vnetio.cli"], True),
        (["python", "-I", "/venv/bin/vnetio", "--version"], True),
        (["python", "-c", "import vnetio", "vnetio"], False),
        (["python", "app.py", "-m", "vnetio.cli"], False),
        (["python", "-m", "pytest"], False),
        (["python"], False),
    ],
)
def test_running_as_cli(
    monkeypatch: pytest.MonkeyPatch, orig_argv: list[str], expected: bool
) -> None:
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert _corecheck.running_as_cli() is expected


@pytest.mark.parametrize(
    ("cargo", "pep440"),
    [("0.1.0", "0.1.0"), ("0.2.0-alpha.1", "0.2.0a1"), ("1.0.0-beta.2", "1.0.0b2")],
)
def test_cargo_and_pep440_versions_compare_equal(cargo: str, pep440: str) -> None:
    assert _corecheck.normalize_version(cargo) == _corecheck.normalize_version(pep440)
    assert _corecheck.normalize_version("0.2.0") != _corecheck.normalize_version("0.2.0a1")


def test_core_package_and_metadata_report_one_version() -> None:
    """However vnetio was installed (`maturin develop`, or the wheel in `make dist-check`),
    the installed metadata, ``vnetio.__version__`` and the Rust core agree; in a source
    checkout so does Cargo.toml, the one place the version is written."""
    metadata_version = importlib.metadata.version("vnetio")
    assert vnetio.__version__ == metadata_version
    assert _corecheck.normalize_version(CORE_VERSION) == _corecheck.normalize_version(
        metadata_version
    )
    cargo_toml = PACKAGE.parents[1] / "Cargo.toml"
    if cargo_toml.is_file():
        cargo_version = tomllib.loads(cargo_toml.read_text())["package"]["version"]
        assert cargo_version == CORE_VERSION
