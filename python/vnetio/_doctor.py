"""``python -m vnetio._doctor``: the old way to run ``vnetio doctor``, kept for scripts and
tests that call it; the doctor itself is :mod:`vnetio.cli.doctor`."""

import sys

from vnetio.cli.doctor import Finding, main, run_checks

__all__ = ["Finding", "main", "run_checks"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
