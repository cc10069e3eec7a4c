"""A clock for the ``clock=`` option that a test moves by hand."""

from __future__ import annotations


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
