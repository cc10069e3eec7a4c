"""Prints the reliability figures (the README's "Reliability" section quotes the large run's)."""

from __future__ import annotations

from typing import Any

from ._harness import FIGURES, LARGE

ORDER = ("kills", "acknowledged writes", "lost writes", "replayed operations", "handoffs", "stale reads",
         "damaged-file cases", "bad-argument cases")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    size = "large (PERSISTDICT_STRESS=large)" if LARGE else "default"
    terminalreporter.write_sep("-", f"reliability figures, {size} run")
    for name in ORDER + tuple(sorted(set(FIGURES) - set(ORDER))):
        terminalreporter.write_line(f"{name}: {FIGURES[name]:,}")
