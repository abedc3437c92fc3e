"""Writing what a benchmark measured: number formats, ratios per round, the command line for
the report, and the outputs (stdout, ``--out``, ``--json``, a section of BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .procs import ROOT, log


def table_head(columns: Sequence[str], align: str = "") -> list[str]:
    """The header and alignment lines of a Markdown table.

    ``align`` has a letter per column, ``l`` or ``r`` (right-aligned, for figures); columns
    past its end are left-aligned.
    """
    marks = ["---:" if a == "r" else "---" for a in align.ljust(len(columns), "l")]
    return [table_row(columns), "|" + "|".join(marks) + "|"]


def table_row(cells: Iterable[object]) -> str:
    """One Markdown table row: ``| a | b |``."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def per_round_ratios(
    runs: Iterable[Mapping[str, Any]],
    base_runs: Iterable[Mapping[str, Any]],
    value: str,
    round_key: str = "round",
) -> list[float]:
    """``run[value] / base[value]`` for each run and the base run of the same round.

    A ratio within one round compares two measurements taken minutes apart at most, so it
    keeps its meaning on a machine whose speed drifts between rounds. Rounds without a base
    run (or with a zero base) are left out.
    """
    base = {b[round_key]: b[value] for b in base_runs}
    return [r[value] / base[r[round_key]] for r in runs if base.get(r[round_key])]


def ratio_cell(ratios: Sequence[float]) -> str:
    """The median ratio, and its range when there is more than one: ``0.98x (0.95-1.02)``."""
    if not ratios:
        return ""
    cell = f"{statistics.median(ratios):.2f}x"
    if len(ratios) > 1:
        cell += f" ({min(ratios):.2f}-{max(ratios):.2f})"
    return cell


def command_line(python: str = "python", script: str | None = None) -> str:
    """How this benchmark was started, for the report: ``python benches/NAME.py ARGS``."""
    if script is None:
        script = f"benches/{Path(sys.argv[0]).name}"
    return shlex.join([python, script, *sys.argv[1:]])


def run_record(command: str, load_start: str, load_end: str) -> dict[str, Any]:
    """The fields a benchmark's raw JSON starts with: how, when and on what it ran."""
    return {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "load_start": load_start,
        "load_end": load_end,
    }


def relative(path: str) -> str:
    """``path`` relative to the repository when inside it (for a reproducible command)."""
    p = Path(path).absolute()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def emit(
    text: str, out: Path | None = None, json_path: Path | None = None, data: Any = None
) -> None:
    """Print the report; also write it to ``out`` and ``data`` as JSON to ``json_path``."""
    print(text)
    if out is not None:
        _write(out, text if text.endswith("\n") else text + "\n")
    if json_path is not None:
        _write(json_path, json.dumps(data, indent=1) + "\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log(f"wrote {path}")


def write_section(path: Path, section: str, script: str) -> None:
    """Replace the section of ``path`` (BENCHMARKS.md) that ``script`` writes.

    The section sits between ``<!-- NAME:begin (benches/SCRIPT writes this section) -->``
    and ``<!-- NAME:end -->``, NAME being the script's name with dashes; other sections are
    left alone, and a missing one is appended.
    """
    script = Path(script).name
    name = Path(script).stem.replace("_", "-")
    begin = f"<!-- {name}:begin (benches/{script} writes this section) -->"
    end = f"<!-- {name}:end -->"
    block = f"{begin}\n{section}{end}\n"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
    path.write_text(text)
    log(f"wrote our section of {path}")
