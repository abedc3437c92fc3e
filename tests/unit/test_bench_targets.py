"""`make bench-rust` runs every criterion benchmark Cargo.toml declares, and `make bench`
keeps the paired benchmarks: a benchmark the README credits cannot silently drop out."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def recipe(target: str) -> str:
    """The recipe lines of a Makefile target."""
    text = (ROOT / "Makefile").read_text()
    m = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert m, f"no {target} target in the Makefile"
    return m.group(1)


def test_bench_rust_runs_every_criterion_bench() -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    declared = {b["name"] for b in cargo.get("bench", [])}
    assert declared, "Cargo.toml declares no [[bench]]"
    ran = set(re.findall(r"cargo bench --bench (\w+)", recipe("bench-rust")))
    assert declared <= ran, f"make bench-rust misses {sorted(declared - ran)}"
    for name in declared:
        assert (ROOT / "benches" / f"{name}.rs").exists()


def test_make_bench_runs_the_paired_benchmarks() -> None:
    steps = recipe("bench") + recipe("bench-offload")
    for script in (
        "bridge_loop.py",
        "checksum_scapy.py",
        "capture_loop.py",
        "filter_loop.py",
        "forwarder.py",
    ):
        assert f"benches/{script}" in steps, f"{script} is not in make bench/bench-offload"


def test_make_bench_keeps_raw_figures_of_every_published_script() -> None:
    """Every benchmark script in make bench/bench-offload writes its report and its raw
    per-run figures under BENCH_OUT (docs/bench-data/ for the published tables)."""
    steps = recipe("bench") + recipe("bench-offload")
    scripts = re.findall(r"benches/(\w+)\.py", steps)
    assert scripts
    for name in scripts:
        line = next(line for line in steps.splitlines() if f"benches/{name}.py" in line)
        assert f"--json $(BENCH_OUT)/{name}.json" in line, f"{name} keeps no raw figures"
        assert f"--out $(BENCH_OUT)/{name}.md" in line, f"{name} writes no report"


def test_tests_that_import_benches_are_left_out_of_the_wheel_run() -> None:
    """`make dist-check` runs the suite against the installed wheel, which has no benches/;
    it leaves out tests/unit/test_bench_*.py. A test importing benches/ under another name
    would fail there at collection (CI saw exactly that once)."""
    pattern = re.compile(r"^\s*(?:from|import)\s+(?:benches\b|harness\b)|sys\.path.*benches")
    importing = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").rglob("*.py")
        if any(pattern.search(line) for line in path.read_text().splitlines())
        or '"benches"' in path.read_text()
    }
    assert importing, "found no test importing benches/: the check itself is broken"
    outside = sorted(p for p in importing if not re.fullmatch(r"tests/unit/test_bench_\w+\.py", p))
    assert outside == [], f"import benches/ but are not tests/unit/test_bench_*.py: {outside}"
    assert (
        "--ignore-glob 'tests/unit/test_bench_*.py'"
        in (ROOT / "tests/packaging/check.sh").read_text()
    )
