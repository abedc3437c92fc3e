"""The suite is running against the built wheel, installed in a virtualenv without Rust.

`make dist-check` (tests/packaging/check.sh) installs ``dist/*.whl`` into a fresh virtualenv
whose PATH has no cargo/rustc, copies ``tests/`` to a temporary directory and runs pytest
there with that virtualenv's interpreter; it sets ``VNETIO_DIST_WHEEL`` (the wheel file)
and ``VNETIO_DIST_CARGO_VERSION`` (the version in Cargo.toml). These tests prove that the
run really is against the wheel, and that the wheel's file name, its metadata, the Python
package and the Rust core report one version. Elsewhere (a source checkout's `make test`)
they are deselected, with the reason in the summary (the `wheel` marker, tests/conftest.py):
there the extension comes from `maturin develop`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import sysconfig
from importlib.metadata import distribution
from pathlib import Path

import pytest
import vnetio
from vnetio import _corecheck

WHEEL = os.environ.get("VNETIO_DIST_WHEEL", "")
CARGO_VERSION = os.environ.get("VNETIO_DIST_CARGO_VERSION", "")

pytestmark = pytest.mark.wheel


def test_vnetio_comes_from_the_virtualenvs_site_packages() -> None:
    assert sys.prefix != sys.base_prefix, "not running in a virtualenv"
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert site.is_relative_to(Path(sys.prefix).resolve())
    for module in (vnetio, vnetio._core):
        assert module.__file__ is not None
        assert Path(module.__file__).resolve().is_relative_to(site / "vnetio"), module.__file__
    assert Path(vnetio._core.__file__).name == "_core.abi3.so"


def test_no_rust_toolchain_on_path() -> None:
    for tool in ("cargo", "rustc", "rustup"):
        assert shutil.which(tool) is None, f"{tool} is on PATH: {shutil.which(tool)}"


def test_the_installed_distribution_is_that_wheel() -> None:
    dist = distribution("vnetio")
    tags = [
        line.removeprefix("Tag: ")
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag: ")
    ]
    assert tags == ["cp311-abi3-manylinux2014_x86_64", "cp311-abi3-manylinux_2_17_x86_64"]
    assert "vnetio/_core.abi3.so" in {str(f) for f in dist.files or ()}
    # The file name carries the same tags: {name}-{version}-{python}-{abi}-{platforms}.whl
    assert Path(WHEEL).name.endswith("-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")


def test_one_version_number() -> None:
    match = re.fullmatch(r"vnetio-(?P<version>[^-]+)-.*\.whl", Path(WHEEL).name)
    assert match is not None, WHEEL
    wheel_version = match["version"]
    metadata_version = distribution("vnetio").version
    assert wheel_version == metadata_version == vnetio.__version__
    # Cargo writes "0.2.0-alpha.1" where PEP 440 (the wheel) writes "0.2.0a1".
    assert vnetio._core.__version__ == CARGO_VERSION
    assert _corecheck.normalize_version(CARGO_VERSION) == _corecheck.normalize_version(
        wheel_version
    )


def test_the_readme_names_this_wheel_and_sdist() -> None:
    """README's Install section gives the file names to install: they follow the version."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert Path(WHEEL).name in readme
    assert f"vnetio-{distribution('vnetio').version}.tar.gz" in readme
