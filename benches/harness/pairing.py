"""Paired, interleaved comparisons: the one place a benchmark gets a ratio "A / B" from.

A *pair* is one run of A and one run of B, back to back. The order alternates from one pair
to the next (pair 1: A then B, pair 2: B then A, ...), so neither side always runs first
(warm caches, a machine that slows down or speeds up within a pair). Each pair gives one
ratio per figure, A's value over B's; a comparison reports the **median of those ratios with
their min–max range**. Two medians taken separately (of different runs, or of one side's
block of runs and then the other's) are never divided.

Noise. Every run says how busy the machine was with work other than the measurement while
it ran (each benchmark measures that its own way and passes a ``noisy`` function that
returns a reason, or None). A pair is *noisy* when either of its runs is, and is then
discarded: its ratio is left out of the median and another pair is run in its place, up to
``max_pairs`` pairs in all. Discarded pairs stay in the raw data, the report says how many
were discarded and why (``Comparison.discard_note``), and the median over all pairs, noisy
ones included, is reported next to the kept one (``Comparison.all_pairs_cell``) so the
reader sees what the filter changed.

``interleave`` runs several comparisons round-robin, one pair of each in turn, so the
comparisons of one invocation share the machine's drift too.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A run's figures, as the benchmark reports them (JSON-compatible).
Run = dict[str, Any]


def order(index: int, a: str, b: str) -> tuple[str, str]:
    """Who runs first in pair ``index`` (0-based): A first in even pairs, B in odd ones."""
    return (a, b) if index % 2 == 0 else (b, a)


def loadavg() -> float:
    """The 1-minute load average (what ``uptime`` shows first)."""
    return os.getloadavg()[0]


@dataclass
class Pair:
    """One pair: both runs, who ran first, the ratio of each figure, and why it was
    discarded (None when kept)."""

    index: int
    first: str
    a: Run
    b: Run
    ratios: dict[str, float]
    noise: str | None
    load: tuple[float, float]  # 1-minute load average before and after the pair

    def to_json(self) -> dict[str, Any]:
        return {
            "pair": self.index + 1,
            "first": self.first,
            "a": self.a,
            "b": self.b,
            "ratios": self.ratios,
            "discarded": self.noise,
            "loadavg_before_after": list(self.load),
        }


def ratios_of(
    a: Mapping[str, Any], b: Mapping[str, Any], metrics: Iterable[str]
) -> dict[str, float]:
    """``a[m] / b[m]`` for each metric both runs have, with a non-zero base."""
    out = {}
    for m in metrics:
        va, vb = a.get(m), b.get(m)
        if isinstance(va, int | float) and isinstance(vb, int | float) and vb:
            out[m] = va / vb
    return out


def cell(ratios: Sequence[float], unit: str = "×") -> str:
    """``1.13× (0.97–1.21)``: the median and the range of ``ratios``; ``—`` when empty."""
    if not ratios:
        return "—"
    text = f"{statistics.median(ratios):.2f}{unit}"
    if len(ratios) > 1:
        text += f" ({min(ratios):.2f}–{max(ratios):.2f})"
    return text


@dataclass
class Comparison:
    """A against B, for the figures ``metrics`` (keys of the run dicts).

    ``want`` pairs are kept at most; pairs are run until that many were kept or ``max_pairs``
    were run. ``tag`` is the caller's (a frame size, a stream count, ...).
    """

    a: str
    b: str
    metrics: tuple[str, ...]
    want: int
    max_pairs: int
    tag: Any = None
    pairs: list[Pair] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.want < 1 or self.max_pairs < self.want:
            raise ValueError(
                f"pairs to keep ({self.want}) must be at least 1 and at most the pairs to "
                f"run ({self.max_pairs})"
            )

    @property
    def done(self) -> bool:
        return len(self.kept()) >= self.want or len(self.pairs) + len(self.errors) >= self.max_pairs

    def kept(self) -> list[Pair]:
        return [p for p in self.pairs if p.noise is None]

    def discarded(self) -> list[Pair]:
        return [p for p in self.pairs if p.noise is not None]

    def run_pair(
        self,
        run: Callable[[str], Run],
        noisy: Callable[[Run], str | None],
        uneven: Callable[[Run, Run], str | None] | None = None,
    ) -> Pair:
        """Run the next pair: ``run(key)`` for both sides in this pair's order.

        It is noisy when ``noisy`` finds a reason in either run, or ``uneven`` one in the two
        runs together (say, one run saw much more other work than the other)."""
        index = len(self.pairs) + len(self.errors)
        first, second = order(index, self.a, self.b)
        load0 = loadavg()
        runs = {first: run(first), second: run(second)}
        load1 = loadavg()
        a, b = runs[self.a], runs[self.b]
        reasons = [f"{k}: {why}" for k in (first, second) if (why := noisy(runs[k]))]
        if uneven is not None and (why := uneven(runs[first], runs[second])):
            reasons.append(why)
        pair = Pair(
            index,
            first,
            a,
            b,
            ratios_of(a, b, self.metrics),
            "; ".join(reasons) or None,
            (load0, load1),
        )
        self.pairs.append(pair)
        return pair

    def ratios(self, metric: str, *, noisy_too: bool = False) -> list[float]:
        """The per-pair ratios of ``metric``: of the kept pairs, or of all with ``noisy_too``."""
        pairs = self.pairs if noisy_too else self.kept()
        return [p.ratios[metric] for p in pairs if metric in p.ratios]

    def cell(self, metric: str) -> str:
        """Median ratio of the kept pairs with its range and the pair count:
        ``1.13× (0.97–1.21; 5 pairs)``."""
        r = self.ratios(metric)
        if not r:
            return "— (no calm pair)"
        text = cell(r)
        n = f"{len(r)} pair{'s' * (len(r) != 1)}"
        return text[:-1] + f"; {n})" if text.endswith(")") else f"{text} ({n})"

    def all_pairs_cell(self, metric: str) -> str:
        """The same over every pair, noisy ones included."""
        return cell(self.ratios(metric, noisy_too=True))

    def side_runs(self, key: str) -> list[Run]:
        """The runs of side ``key`` in the kept pairs (all pairs when none was kept)."""
        pairs = self.kept() or self.pairs
        return [p.a if key == self.a else p.b for p in pairs]

    def discard_note(self) -> str:
        """``2 of 7 pairs discarded as noisy (pair 3: native: other CPU 12%; ...)``."""
        d = self.discarded()
        text = f"{len(d)} of {len(self.pairs)} pairs discarded as noisy"
        if d:
            text += " (" + "; ".join(f"pair {p.index + 1}: {p.noise}" for p in d) + ")"
        if self.errors:
            text += f"; {len(self.errors)} failed: " + "; ".join(self.errors)
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "tag": self.tag,
            "metrics": list(self.metrics),
            "pairs_wanted": self.want,
            "max_pairs": self.max_pairs,
            "median_ratio_kept": {
                m: statistics.median(r) for m in self.metrics if (r := self.ratios(m))
            },
            "pairs": [p.to_json() for p in self.pairs],
            "errors": self.errors,
        }


def interleave(
    comparisons: Sequence[Comparison],
    run: Callable[[Comparison, str], Run],
    noisy: Callable[[Run], str | None],
    *,
    errors: tuple[type[BaseException], ...] = (),
    progress: Callable[[Comparison, Pair], None] | None = None,
    uneven: Callable[[Run, Run], str | None] | None = None,
) -> None:
    """Run the comparisons round-robin, one pair each per turn, until each is done.

    ``run(comparison, key)`` measures one side once; ``noisy`` and ``uneven`` are as in
    ``Comparison.run_pair``. A run raising one of ``errors`` counts
    as a failed pair of that comparison (the message is kept; it also ends the comparison
    once ``max_pairs`` attempts were used).
    """
    while pending := [c for c in comparisons if not c.done]:
        for c in pending:
            try:
                pair = c.run_pair(functools.partial(run, c), noisy, uneven)
            except errors as exc:
                c.errors.append(" ".join(str(exc).split())[:200])
                continue
            if progress is not None:
                progress(c, pair)


def uneven_by(key: str, limit: float, what: str) -> Callable[[Run, Run], str | None]:
    """A pair test: the runs' ``key`` figures differ by more than ``limit`` (the machine was
    not the same for both sides). ``what`` names the figure, with percent shown."""

    def test(x: Run, y: Run) -> str | None:
        gap = abs(float(x[key]) - float(y[key]))
        if gap > limit:
            return f"{what} differs by {gap * 100:.0f} points between the runs"
        return None

    return test


def criterion_line(rule: str, comparisons: Iterable[Comparison]) -> str:
    """The pairing, the noise criterion (``rule``: "when ...") and what it discarded, for a
    report's closing notes."""
    comps = list(comparisons)
    total = sum(len(c.pairs) for c in comps)
    dropped = sum(len(c.discarded()) for c in comps)
    return (
        "Pairs: each ratio is one pair of back-to-back runs, A then B or B then A (alternating); "
        "shown is the median of the per-pair ratios with their range. Noise criterion: a pair "
        f"is discarded, and another run in its place, {rule}. {dropped} of {total} pairs were "
        "discarded."
    )


def uptime_line() -> str:
    """``uptime``'s load averages and the time, for a report."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} at {time.strftime('%H:%M:%S %Z')}"


def add_pairing_arguments(p: argparse.ArgumentParser) -> None:
    """``--max-pairs`` and the other-CPU noise criterion (``--max-other-cpu``,
    ``--max-other-cpu-diff``) of a benchmark built on pairs; see :class:`OtherCpuRule`."""
    p.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        help="pairs run at most per comparison, noisy ones included (2 × --repeat)",
    )
    p.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.05,
        help="a pair is noisy, and discarded, when during either of its runs other work used "
        "more than this share of all CPUs (0.05)",
    )
    p.add_argument(
        "--max-other-cpu-diff",
        type=float,
        default=0.10,
        help="... or when that share differs between the pair's two runs by more than this (0.10)",
    )


def check_pairing_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--max-pairs`` defaults to 2 × ``--repeat``; refuse what cannot keep ``--repeat``."""
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.max_pairs = args.max_pairs or 2 * args.repeat
    if args.max_pairs < args.repeat:
        p.error(f"--max-pairs ({args.max_pairs}) must be at least --repeat ({args.repeat})")


@dataclass(frozen=True)
class OtherCpuRule:
    """The noise criterion of a benchmark whose runs report ``other_cpu`` (the share of all
    CPUs that work other than the measurement used while the run ran): a run is noisy above
    ``max_share``, a pair uneven when its runs' shares differ by more than ``max_diff``."""

    max_share: float
    max_diff: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OtherCpuRule:
        return cls(args.max_other_cpu, args.max_other_cpu_diff)

    def noisy(self, run: Run) -> str | None:
        other = run["other_cpu"]
        return f"other CPU {other * 100:.0f}%" if other > self.max_share else None

    def uneven(self) -> Callable[[Run, Run], str | None]:
        return uneven_by("other_cpu", self.max_diff, "other CPU")

    def report_line(
        self,
        other_work: str,
        comparisons: Iterable[Comparison],
        args: argparse.Namespace,
        *,
        why_uneven: str = "",
    ) -> str:
        """:func:`criterion_line` for this rule; ``other_work`` says what "other" work is."""
        rule = (
            f"when, during either of its runs, {other_work} used more than "
            f"{self.max_share * 100:.0f}% of the machine's CPUs, or when that share differed "
            f"between its two runs by more than {self.max_diff * 100:.0f} points{why_uneven}"
        )
        return (
            criterion_line(rule, comparisons)
            + f" At most {args.max_pairs} pairs were run per comparison to keep {args.repeat}."
        )
