"""The capture and filter benchmarks' reports come from paired runs: one ratio per pair, the
median with its range, the base row made of the base's runs, and the machine's other CPU
taken from /proc without the measured processes' own time. No root: the runs are made up."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
import capture_loop
import filter_loop
from harness import procs
from harness.pairing import Comparison


def quiet(run: dict[str, Any]) -> str | None:
    return None


def test_other_cpu_leaves_out_the_measured_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 102.0])  # 2 s
    busy = iter([1000, 1000 + 300])  # 300 ticks busy on the whole machine meanwhile
    own = {11: iter([50, 150]), 12: iter([0, 100])}  # 200 of them ours
    monkeypatch.setattr(procs.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(procs, "busy_ticks", lambda: next(busy))
    monkeypatch.setattr(procs, "cpu_ticks", lambda pid: next(own[pid]))
    monkeypatch.setattr(procs.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(procs.os, "cpu_count", lambda: 2)
    watch = procs.OtherCpu([11, 12])
    # 100 other ticks over 2 s × 100 Hz × 2 CPUs = 400 ticks of capacity: 25 %.
    assert watch.share() == pytest.approx(0.25)


def capture_run(impl: str, rate: float, loss: float = 0.0) -> dict[str, Any]:
    return {
        "impl": impl,
        "queue": 1000,
        "size": 64,
        "seconds": 3.0,
        "sent": 900_000,
        "kept": rate * 3,
        "rate": rate,
        "loss": loss,
        "kernel_dropped": int(loss * 900_000),
        "other_cpu": 0.02,
    }


def test_capture_report_is_the_median_of_per_pair_ratios() -> None:
    rates = {"vnetio": iter([300e3, 200e3, 330e3]), "vnetio-none": iter([300e3, 100e3, 300e3])}
    c = Comparison("vnetio", "vnetio-none", ("rate",), want=3, max_pairs=3, tag=(1000, 64))
    while not c.done:
        c.run_pair(lambda k: capture_run(k, next(rates[k]), 0.001), quiet)
    assert c.ratios("rate") == pytest.approx([1.0, 2.0, 1.1])
    lines = capture_loop.table([c], 1000, 64)
    base = next(line for line in lines if line.startswith("| vnetio-none"))
    mine = next(line for line in lines if line.startswith("| vnetio `Writer.capture`"))
    assert "1 (baseline)" in base and "300 k" in base  # median of the base's own runs
    assert "1.10× (1.00–2.00; 3 pairs)" in mine  # not 300 k / 300 k
    assert "3 / 3" in mine and "0.10%" in mine
    args = argparse.Namespace(
        seconds=3.0,
        dir=None,
        queues=[1000],
        sizes=[64],
        max_other_cpu=0.05,
        max_other_cpu_diff=0.1,
        max_pairs=3,
        repeat=3,
    )
    text = capture_loop.render(args, "python benches/capture_loop.py", [c], ("L0", "L1"))
    assert "load (`uptime`) at the start L0, at the end L1" in text
    assert "0 of 3 pairs were discarded" in text


def filter_run(method: str, written: float, delivered: float) -> dict[str, Any]:
    return {
        "method": method,
        "sent": int(written * 3),
        "seconds": 3.0,
        "written_per_s": written,
        "delivered_per_s": delivered,
        "matches_sent": 100,
        "matches_delivered": 100,
        "match_loss": 0.0,
        "rx_filtered": None if method == "none" else 1000,
        "rx_dropped": 0,
        "other_cpu": 0.5,
    }


def test_filter_report_pairs_each_method_with_its_base() -> None:
    runs = {
        "kernel": iter([(520e3, 5e3), (480e3, 4.8e3)]),
        "none": iter([(400e3, 4e3), (600e3, 3e3)]),
        "idle-kernel": iter([(510e3, 0.0), (490e3, 0.0)]),
        "idle": iter([(500e3, 0.0), (500e3, 0.0)]),
    }
    comps = [
        Comparison(m, filter_loop.BASE_OF[m], filter_loop.METRICS, 2, 2, tag=m)
        for m in ("kernel", "idle-kernel")
    ]
    for c in comps:
        while not c.done:
            c.run_pair(lambda k: filter_run(k, *next(runs[k])), quiet)
    assert comps[0].ratios("written_per_s") == pytest.approx([1.3, 0.8])
    assert comps[1].ratios("delivered_per_s") == []  # nothing delivered when idle
    args = argparse.Namespace(
        seconds=3.0, max_other_cpu=0.9, max_other_cpu_diff=0.1, max_pairs=2, repeat=2
    )
    text = filter_loop.render(args, "python benches/filter_loop.py", comps, ("L0", "L1"))
    kernel = next(line for line in text.splitlines() if line.startswith("| kernel"))
    idle_kernel = next(line for line in text.splitlines() if line.startswith("| idle-kernel"))
    assert "1.05× (0.80–1.30; 2 pairs)" in kernel  # written/s
    assert "1.43× (1.25–1.60; 2 pairs)" in kernel  # matches delivered/s: 5/4, 4.8/3
    assert "1.00× (0.98–1.02; 2 pairs)" in idle_kernel
    assert "| none" in text and "| idle:" in text
