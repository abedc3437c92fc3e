"""The README's Python examples run as written.

Each ```python block in README.md is preceded by a marker comment saying how to run it:
``<!-- test: as is -->`` runs in this process; ``<!-- test: in a network namespace -->``
runs in a subprocess inside a fresh private namespace (it creates adapters and adds
addresses, which must never touch the host's namespace); ``<!-- test: skip (...) -->``
names the test that covers it instead. A block without a marker fails this test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netutil import Netns

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(?:<!-- test: (?P<how>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    found = [(m["how"] or "", m["code"]) for m in BLOCK.finditer(README.read_text())]
    assert found, "README.md has no python examples"
    return found


def test_every_example_says_how_it_is_tested() -> None:
    for how, code in blocks():
        assert how.startswith(("as is", "in a network namespace", "skip (")), code[:80]


@pytest.mark.parametrize(
    "code", [c for how, c in blocks() if how == "as is"], ids=lambda c: c.splitlines()[0][:40]
)
def test_example_runs_as_is(code: str) -> None:
    # Running the documented example is the point of this test.
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})  # noqa: S102


@pytest.mark.parametrize(
    "code",
    [c for how, c in blocks() if how == "in a network namespace"],
    ids=lambda c: c.splitlines()[0][:40],
)
def test_example_runs_in_a_namespace(netns: Netns, code: str, tmp_path: Path) -> None:
    # vnetio's adapter records (see vnetio.hygiene) go to a temporary state directory.
    env = {**os.environ, "VNETIO_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        ["ip", "netns", "exec", netns.name, sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
