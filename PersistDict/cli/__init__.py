"""The ``persistdict`` command line (also ``python -m PersistDict``), on the public API only.

Needs the ``cli`` extra (click, tqdm): ``pip install 'PersistDict[cli]'``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns its exit code (see cli/app.py: EXIT_*)."""
    try:
        from .app import run
    except ImportError as exc:  # click or tqdm missing: say how to get them, in one line
        print(f"persistdict: error: the command line needs the 'cli' extra ({exc.name} is missing): "
              "pip install 'PersistDict[cli]'", file=sys.stderr)
        return 1
    return run(argv)


def console_script() -> None:  # the console script's entry point
    sys.exit(main())
