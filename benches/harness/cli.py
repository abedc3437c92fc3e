"""The benchmark scripts' command line: shared options, the rounds of ``--repeat``, the
privilege check, and the entry point that cleans up on SIGTERM and Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from .procs import log

T = TypeVar("T")


def parser(
    doc: str,
    *,
    seconds: float = 3.0,
    repeat: int = 3,
    repeat_help: str = "runs per case; medians are reported",
    sizes: str | None = None,
    benchmarks_md: bool = False,
) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every benchmark shares.

    ``--seconds`` (the timed window of one run), ``--repeat`` (rounds), ``--out`` (the
    Markdown report), ``--json`` (the raw figures); ``--sizes`` (frame sizes, parsed to a
    list of ints) when ``sizes`` gives a default, ``--benchmarks-md`` (rewrite the script's
    marked section of that file) when asked. The description is ``doc``'s first paragraph.
    """
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--seconds", type=float, default=seconds, help=f"timed window per run ({seconds:g})"
    )
    p.add_argument("--repeat", type=int, default=repeat, help=f"{repeat_help} ({repeat})")
    if sizes is not None:
        p.add_argument(
            "--sizes", type=int_list, default=int_list(sizes), help=f"frame sizes, bytes ({sizes})"
        )
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    p.add_argument("--json", type=Path, help="also write the raw figures here (JSON)")
    if benchmarks_md:
        p.add_argument("--benchmarks-md", type=Path, help="also (re)write our section of this file")
    return p


def int_list(text: str) -> list[int]:
    """``"64,1514"`` -> ``[64, 1514]``."""
    return [int(s) for s in text.split(",") if s]


def str_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``."""
    return [s for s in text.split(",") if s]


def rounds(
    repeat: int, items: Sequence[T], *, rotate: bool = False
) -> Iterator[tuple[int, list[T]]]:
    """``(round, items in this round's order)`` for each of ``repeat`` rounds.

    Every item runs once per round, so drift of the machine over time hits all items alike
    and each round gives one ratio per item. ``rotate`` starts each round one item later, so
    no item always runs first or last.
    """
    items = list(items)
    for r in range(repeat):
        k = r % len(items) if rotate and items else 0
        yield r, items[k:] + items[:k]


def require_privileges(prog: str) -> None:
    """Exit (status 2) with the reason unless this process can build namespaces and TAPs."""
    from vnetio import _topology

    ok, why = _topology.have_privileges()
    if not ok:
        log(f"{prog}: {why}")
        raise SystemExit(2)


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a benchmark's ``main`` and exit with its status (130 after Ctrl-C).

    SIGTERM becomes KeyboardInterrupt, so it unwinds through every ``with BridgeLoop`` and
    child as Ctrl-C does: namespaces are deleted and children ended, also when the
    benchmark is stopped from outside.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        status = main()
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(status or 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
