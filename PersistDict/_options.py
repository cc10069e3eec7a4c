"""The one check of every numeric option (constructor settings, ``ttl``, ``batch``).

A NaN passes every ``<`` and ``<=`` test written for it, so each option is
checked here for what it is: a real number (never a bool), finite unless
infinity has a meaning, and inside its range. Called before anything is opened,
so a refused option leaves the store as it was.
"""

from __future__ import annotations

import math
from typing import Any


def check_number(name: str, value: Any, rule: str, minimum: float = 0.0, *, strict: bool = True,
                 maximum: float = math.inf) -> Any:
    """``value`` itself if it is a finite int or float above ``minimum`` (or equal to it unless
    ``strict``) and at most ``maximum``; TypeError for a bool or a non-number, else ValueError
    saying ``rule`` (what ``name`` must be)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__} {value!r}")
    finite = isinstance(value, int) or math.isfinite(value)  # an int is finite, however large
    if not finite or not (value > minimum if strict else value >= minimum) or value > maximum:
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    return value
