"""The SIGKILL loop: a writer killed at random moments, again and again, on one store."""

from __future__ import annotations

import random

import pytest

from ._harness import sigkill_round, sized

pytestmark = pytest.mark.slow


def test_sigkill_loop_loses_no_acknowledged_write_and_no_batch_half(tmp_path):
    """Writers SIGKILLed at random moments lose no acknowledged write, leave no half batch, and check() stays clean."""
    path = str(tmp_path / "db")
    rng = random.Random(15)
    state: dict = {}
    for round_ in range(sized(20, 120)):
        durability = ("safe", "full", "fast")[round_ % 3]
        state = sigkill_round(path, state, seed=1500 + round_, durability=durability, rng=rng)
