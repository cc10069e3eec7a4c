"""The toolkit across processes (LMDB): counters and compare-and-set loops with exact totals, versions."""

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


@pytest.mark.parametrize("start_method", CONTEXTS)
def test_compare_and_set_loops_from_4_processes_count_exactly(path, opened, start_method):
    """4 processes x 100 increments through version/compare_and_set retry loops lose none."""
    opened(path)["n"] = 0
    ctx = mp.get_context(start_method)
    barrier = ctx.Barrier(4)
    join_all([start_process(ctx, tw.cas_worker, path, "n", 100, barrier) for _ in range(4)])
    assert opened(path)["n"] == 400


def test_version_changes_when_another_process_rewrites_the_same_value_at_the_same_instant(path, opened):
    """Another process writing the same bytes at the same clock reading changes the version seen here."""
    d = opened(path, clock=lambda: 1000.0)
    d["k"] = "v"
    before = d.version("k")
    ctx = mp.get_context("spawn")
    join_all([start_process(ctx, tw.write_same_value, path, "k", "v")])
    assert d.version("k") != before
    assert not d.compare_and_set("k", "w", before)
    assert d["k"] == "v"
