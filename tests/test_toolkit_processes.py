"""The toolkit across processes (LMDB): counters with exact totals."""

from __future__ import annotations

import multiprocessing as mp

import _toolkit_workers as tw
import pytest

from _concurrency import CONTEXTS, join_all, start_process


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_incr_from_4_processes_x_500_is_exact(path, opened, start_method):
    """4 processes each calling incr 500 times (int and float counters) leave exact totals."""
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(8)
    workers = [start_process(ctx, tw.incr_worker, path, "ints", 500, 1, barrier) for _ in range(4)]
    workers += [start_process(ctx, tw.incr_worker, path, "floats", 500, 0.5, barrier) for _ in range(4)]
    join_all(workers)
    d = opened(path)
    assert d["ints"] == 2000
    assert d["floats"] == 1000.0
