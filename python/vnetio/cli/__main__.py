"""``python -m vnetio.cli``: the ``vnetio`` command without its console script."""

import contextlib
import sys

from vnetio.cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
