#!/usr/bin/env bash
# `make dist-check`: prove that what `make dist` built works where users install it.
#
#   1. `auditwheel show` must find the wheel consistent with manylinux_2_17 (manylinux2014)
#      x86_64 or an older policy, and the extension must import no unversioned libc symbol
#      (tests/packaging/unversioned_symbols.py: what auditwheel cannot see);
#   2. the wheel installs into a fresh virtualenv whose PATH has no cargo/rustc/rustup, and the
#      test suite runs there against the installed wheel (a copy of tests/ in a temporary
#      directory, so nothing of the source tree is importable; tests/packaging checks that);
#   3. the sdist builds a wheel in another fresh virtualenv (with cargo: building from source
#      needs Rust), which installs and passes a smoke test.
#
# Usage: tests/packaging/check.sh PYTHON AUDITWHEEL   (the Makefile passes .venv's tools;
# PYTHON needs pyelftools, which comes with auditwheel). DIST_CHECK_TESTS overrides which tests
# step 2 runs (pytest arguments; they must include tests/packaging, which must pass).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${1:?usage: check.sh PYTHON AUDITWHEEL}
auditwheel=${2:?usage: check.sh PYTHON AUDITWHEEL}
cd "$repo"

step_start=$SECONDS
step() {
    echo
    echo "=== dist-check: $* ($((SECONDS - step_start)) s so far)"
}

shopt -s nullglob
wheels=(dist/vnetio-*.whl)
sdists=(dist/vnetio-*.tar.gz)
shopt -u nullglob
if [ ${#wheels[@]} -ne 1 ] || [ ${#sdists[@]} -ne 1 ]; then
    echo "dist-check: expected exactly one wheel and one sdist in dist/ (run 'make dist'):" \
        "${wheels[*]-} ${sdists[*]-}" >&2
    exit 1
fi
wheel=$repo/${wheels[0]}
sdist=$repo/${sdists[0]}
cargo_version=$("$python" -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')

work=$(mktemp -d "${TMPDIR:-/tmp}/vnetio-dist-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- 1. the manylinux policy ----------------------------------------------------------
step "auditwheel show $(basename "$wheel")"
report=$("$auditwheel" show "$wheel")
echo "$report"
# auditwheel wraps its lines: join them before matching.
policy=$(tr -s ' \n' '  ' <<<"$report" |
    sed -nE 's/.*is consistent with the following platform tag: "(manylinux_2_([0-9]+)_x86_64)".*/\1/p')
minor=${policy#manylinux_2_}
minor=${minor%_x86_64}
if [ -z "$policy" ] || [ "$minor" -gt 17 ]; then
    echo "dist-check: auditwheel does not accept the wheel for manylinux_2_17_x86_64" \
        "(manylinux2014): got '${policy:-no manylinux tag}'" >&2
    exit 1
fi
echo "dist-check: auditwheel accepts the wheel for $policy (manylinux2014 needs <= manylinux_2_17)"
# auditwheel reads only versioned imports; an unversioned one (a glibc wrapper newer than the
# stubs zig linked against) would pass it and fail at import on an old system.
"$python" tests/packaging/unversioned_symbols.py "$wheel"

# --- 2. the wheel, without Rust ------------------------------------------------------
# A PATH without any directory that holds cargo, rustc or rustup (~/.cargo/bin), nor pyenv's
# shims (which could hand `python` to another interpreter): the virtualenv first, then
# the system directories that are left. CARGO_*/RUSTUP_* and PYTHONPATH go too.
no_rust_path() {
    local dir kept=()
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        [ -n "$dir" ] || continue
        case "$dir" in */.pyenv/*) continue ;; esac
        if [ -e "$dir/cargo" ] || [ -e "$dir/rustc" ] || [ -e "$dir/rustup" ]; then continue; fi
        kept+=("$dir")
    done
    (IFS=:; echo "${kept[*]}")
}
scrubbed_env=(env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV -u CARGO_HOME -u RUSTUP_HOME
    -u CARGO_TARGET_DIR -u RUSTUP_TOOLCHAIN -u RUSTC -u RUSTFLAGS)

step "fresh virtualenv without Rust; installing the wheel and the test dependencies"
venv=$work/wheel-venv
"$python" -m venv "$venv"
wheel_path="$venv/bin:$(no_rust_path)"
in_wheel_venv() { "${scrubbed_env[@]}" PATH="$wheel_path" "$@"; }
for tool in cargo rustc rustup; do
    if in_wheel_venv bash -c "command -v $tool"; then
        echo "dist-check: $tool is still on the wheel virtualenv's PATH" >&2
        exit 1
    fi
done
echo "PATH=$wheel_path"
echo "command -v cargo / rustc / rustup: not found (checked in a shell with that PATH)"
# The test dependencies are requirements-dev.txt without the build and lint tools.
grep -vE '^(maturin|ruff|mypy)([<>=!~ ;[]|$)' requirements-dev.txt >"$work/requirements-test.txt"
in_wheel_venv "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "$wheel" -r "$work/requirements-test.txt"
in_wheel_venv "$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
    grep -E '^(vnetio|libpcap|pytest|hypothesis|scapy|python-pytun) '

# The tests, and only what they read from the repo besides themselves: the pytest
# configuration (pyproject.toml), README.md (tests/test_readme.py runs its examples) and
# docs/ (tests/unit/test_doctor_adapters.py checks the troubleshooting page). No python/,
# src/ or Cargo.toml: `import vnetio` can only find the installed wheel.
run_dir=$work/run
mkdir "$run_dir"
cp -r tests pyproject.toml README.md docs "$run_dir/"
find "$run_dir" -name __pycache__ -prune -exec rm -rf {} +
# Which tests: the whole suite (privileged tests included; with CI=true any skip is a
# failure), less two groups, deselected for time and printed below. About 3.5 min here.
# VNETIO_DIST_WHEEL (set below) selects tests/packaging's `wheel` tests, deselected elsewhere.
default_tests=(tests --deselect tests/vm --ignore-glob 'tests/unit/test_bench_*.py'
    -k "not (test_capture_priv and test_cli_)")
deselect_reason="tests/privileged/test_capture_priv.py::test_cli_*: the \`vnetio capture\` \
command line's rotation timers, signals and tshark pipes (~60 s of waiting); the capture \
writer under them runs against the wheel in the rest of test_capture_priv.py and \
tests/unit/test_capture.py, and the console script in tests/test_cli_demo.py; tests/vm: the \
guest-rig tests (real Linux guests under QEMU, ~2.5 min, and examples/ they start); the \
adapters they drive (VhostUserNet, Tap, Macvtap) run against the wheel in tests/unit and \
tests/privileged; tests/unit/test_bench_*.py: they check the repository's benches/ \
harness, scripts and Makefile targets, which are not part of the wheel (they run in make test)"
if [ -n "${DIST_CHECK_TESTS:-}" ]; then
    read -ra selected <<<"$DIST_CHECK_TESTS"
    echo "DIST_CHECK_TESTS overrides the selection: ${selected[*]}"
else
    selected=("${default_tests[@]}")
    echo "deselected: $deselect_reason"
fi

step "pytest against the installed wheel (in $run_dir): ${selected[*]}"
(cd "$run_dir" && in_wheel_venv VNETIO_DIST_WHEEL="$wheel" VNETIO_DIST_CARGO_VERSION="$cargo_version" \
    "$venv/bin/python" -m pytest -p no:cacheprovider --rootdir "$run_dir" \
    --junitxml="$work/junit.xml" "${selected[@]}")
# The proof that this run was against the wheel is tests/packaging: it must have run and passed
# (pytest's default norecursedirs skips any folder named `dist`, hence the name).
"$python" - "$work/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

cases = [c for c in ET.parse(sys.argv[1]).iter("testcase")
         if c.get("classname", "").startswith("tests.packaging.")]
bad = [c.get("name") for c in cases if any(e.tag in ("failure", "error", "skipped") for e in c)]
if len(cases) < 5 or bad:
    sys.exit(f"dist-check: tests/packaging must run and pass: {len(cases)} ran, not passed: {bad}")
print(f"dist-check: the {len(cases)} tests of tests/packaging passed against the wheel")
EOF
# Belt and braces beside tests/packaging: what `import vnetio` resolves to in that environment.
(cd "$run_dir" && in_wheel_venv "$venv/bin/python" -c '
import sys, sysconfig, vnetio
site = sysconfig.get_paths()["platlib"]
assert vnetio.__file__.startswith(site + "/vnetio/"), vnetio.__file__
print("dist-check: vnetio", vnetio.__version__, "imported from", vnetio.__file__)
')

# --- 3. the sdist builds a working wheel ------------------------------------------------
step "fresh virtualenv: building a wheel from $(basename "$sdist")"
sdist_venv=$work/sdist-venv
"$python" -m venv "$sdist_venv"
# Dependencies compiled by an earlier run stay in target/ (the vnetio crate itself is rebuilt,
# from the sdist's unpacked sources).
"${scrubbed_env[@]}" CARGO_TARGET_DIR="$repo/target/sdist-check" \
    "$sdist_venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps \
    --wheel-dir "$work/from-sdist" "$sdist"
built=("$work"/from-sdist/vnetio-*.whl)
echo "built $(basename "${built[0]}")"
"${scrubbed_env[@]}" "$sdist_venv/bin/python" -m pip install -q --disable-pip-version-check "${built[0]}"
step "smoke test of the wheel built from the sdist"
(cd "$work" && "${scrubbed_env[@]}" "$sdist_venv/bin/python" - "$cargo_version" <<'EOF'
import sys
import sysconfig
from importlib.metadata import version

import vnetio
from vnetio import _corecheck

cargo_version = sys.argv[1]
site = sysconfig.get_paths()["platlib"]
assert vnetio.__file__.startswith(site + "/vnetio/"), vnetio.__file__
assert vnetio._core.__version__ == cargo_version, (vnetio._core.__version__, cargo_version)
assert vnetio.__version__ == version("vnetio"), (vnetio.__version__, version("vnetio"))
assert _corecheck.normalize_version(cargo_version) == _corecheck.normalize_version(vnetio.__version__)
a, b = vnetio.loopback_pair()
frame = b"\x02" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(46)
a.send(frame)
assert bytes(b.recv(timeout=1.0)) == frame
print(f"dist-check: the sdist's wheel works: vnetio {vnetio.__version__} (core "
      f"{vnetio._core.__version__}), loopback send/recv of {len(frame)} bytes")
EOF
)
"${scrubbed_env[@]}" "$sdist_venv/bin/vnetio" --version

step "done"
