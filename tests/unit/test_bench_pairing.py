"""The benchmarks' pairing harness (benches/harness/pairing.py): alternating order, one ratio
per pair, noisy pairs discarded and replaced, comparisons interleaved, figures reported as
the median of per-pair ratios."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
from harness import pairing
from harness.pairing import Comparison


def quiet(run: dict[str, Any]) -> str | None:
    return None


def test_order_alternates() -> None:
    assert [pairing.order(i, "a", "b") for i in range(4)] == [
        ("a", "b"),
        ("b", "a"),
        ("a", "b"),
        ("b", "a"),
    ]


def test_one_ratio_per_pair_and_the_median_of_ratios() -> None:
    # A's rates and B's rates: the median of ratios (2.0) is not the ratio of medians (1.5).
    values = {"a": iter([10.0, 30.0, 60.0]), "b": iter([5.0, 20.0, 30.0])}
    calls: list[str] = []

    def run(key: str) -> dict[str, Any]:
        calls.append(key)
        return {"rate": next(values[key])}

    c = Comparison("a", "b", ("rate",), want=3, max_pairs=3)
    while not c.done:
        c.run_pair(run, quiet)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert c.ratios("rate") == [2.0, 1.5, 2.0]
    assert c.cell("rate") == "2.00× (1.50–2.00; 3 pairs)"
    assert [p.first for p in c.pairs] == ["a", "b", "a"]


def test_noisy_pairs_are_discarded_replaced_and_reported() -> None:
    n = {"i": 0}

    def run(key: str) -> dict[str, Any]:
        n["i"] += 1
        # The second and third pairs' B runs are disturbed.
        return {"rate": 2.0 if key == "a" else 1.0, "other": 0.5 if n["i"] in (3, 5) else 0.0}

    def noisy(r: dict[str, Any]) -> str | None:
        return f"other CPU {r['other']:.0%}" if r["other"] > 0.05 else None

    c = Comparison("a", "b", ("rate",), want=2, max_pairs=5)
    while not c.done:
        c.run_pair(run, noisy)
    assert len(c.pairs) == 4 and len(c.kept()) == 2 and len(c.discarded()) == 2
    assert c.discarded()[0].noise == "b: other CPU 50%"
    note = c.discard_note()
    assert note.startswith("2 of 4 pairs discarded as noisy (pair 2: b: other CPU 50%")
    assert c.side_runs("a") == [c.pairs[0].a, c.pairs[3].a]


def test_gives_up_after_max_pairs_and_says_so() -> None:
    c = Comparison("a", "b", ("rate",), want=3, max_pairs=4)
    while not c.done:
        c.run_pair(lambda key: {"rate": 1.0}, lambda r: "always busy")
    assert len(c.pairs) == 4 and not c.kept()
    assert c.cell("rate") == "— (no calm pair)"
    assert c.all_pairs_cell("rate") == "1.00× (1.00–1.00)"


def test_interleave_runs_comparisons_round_robin_and_counts_failures() -> None:
    seen: list[tuple[str, str]] = []

    def run(c: Comparison, key: str) -> dict[str, Any]:
        seen.append((c.tag, key))
        if c.tag == "bad":
            raise RuntimeError("child exited (1)")
        return {"rate": 1.0}

    good = Comparison("x", "base", ("rate",), want=2, max_pairs=2, tag="good")
    bad = Comparison("y", "base", ("rate",), want=2, max_pairs=2, tag="bad")
    pairing.interleave([good, bad], run, quiet, errors=(RuntimeError,))
    assert seen == [
        ("good", "x"),
        ("good", "base"),
        ("bad", "y"),
        ("good", "base"),
        ("good", "x"),
        ("bad", "base"),
    ]
    assert len(good.kept()) == 2 and not bad.pairs and len(bad.errors) == 2
    assert "2 failed: child exited (1)" in bad.discard_note()


def test_zero_base_gives_no_ratio_and_bad_counts_are_refused() -> None:
    assert pairing.ratios_of({"r": 1.0, "s": 2}, {"r": 0.0, "s": 4}, ("r", "s", "t")) == {"s": 0.5}
    with pytest.raises(ValueError, match="pairs to keep"):
        Comparison("a", "b", ("rate",), want=3, max_pairs=2)


def test_uneven_pairs_are_discarded() -> None:
    loads = iter([0.50, 0.55, 0.10, 0.40])  # pair 1: 5 points apart; pair 2: 30 points apart

    def run(key: str) -> dict[str, Any]:
        return {"rate": 1.0, "other": next(loads)}

    c = Comparison("a", "b", ("rate",), want=2, max_pairs=2)
    uneven = pairing.uneven_by("other", 0.10, "other CPU")
    while not c.done:
        c.run_pair(run, quiet, uneven)
    assert c.pairs[0].noise is None
    assert c.pairs[1].noise == "other CPU differs by 30 points between the runs"


def test_waiting_for_another_benchmark_is_bounded_when_asked() -> None:
    import subprocess
    import time

    from harness.procs import Contention

    tag = f"vnetio-t-other-bench-{time.monotonic_ns()}"
    other = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(30)  # {tag}"])
    try:
        c = Contention((tag,))
        deadline = time.monotonic() + 5
        while not c.others_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.others_running(), "the stand-in benchmark was not seen"
        t0 = time.monotonic()
        c.wait_calm(max_wait=0)
        assert time.monotonic() - t0 < 2
    finally:
        other.kill()
        other.wait()
    c.wait_calm()  # nothing running: returns at once
