"""The ``bonychat`` command's entry point: what must happen before the code loads.

A ``serve`` of followers only lowers its CPU priority first
(:func:`services.runtime.priority.lower_at_start`), then the command line is loaded
and run (:func:`services.cli.main.main`). Only the standard library is imported
before that.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from services.runtime.priority import lower_at_start

    lower_at_start(sys.argv[1:], os.environ)
    from services.cli.main import main as run  # the command line's ~0.4 s of imports

    return run()


if __name__ == "__main__":
    sys.exit(main())
