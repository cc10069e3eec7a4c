"""Seeded replays of mixed operations by several processes x threads, and cross-process handoffs."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from _concurrency import replay_oracle

from . import _harness as h

pytestmark = pytest.mark.slow


def test_seeded_replay_matches_every_workers_oracle(tmp_path):
    """A seeded replay by processes x threads matches every oracle; shared keys hold only values a worker wrote."""
    path = str(tmp_path / "db")
    n_procs, owned, shared, n_ops = h.sized(3, 4), h.sized(3, 4), h.sized(1, 2), h.sized(150, 1_500)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n_procs)
    result_paths = [f"{path}.result{p}" for p in range(n_procs)]
    processes = [ctx.Process(target=h.replay_process, args=(path, p, owned, shared, 15, n_ops, barrier,
                                                            result_paths[p]), daemon=True)
                 for p in range(n_procs)]
    for process in processes:
        process.start()
    h.join_all(processes)
    results = [h.load(rp) for rp in result_paths]
    crashed = [c for r in results for c in r["crashed"]]
    assert not crashed, crashed[0]
    owned_results = [r for result in results for r in result["owned"]]
    shared_results = [r for result in results for r in result["shared"]]
    errors = [e for r in owned_results + shared_results for e in r["errors"]]
    h.FIGURES["replayed operations"] += n_procs * (owned + shared) * n_ops
    assert not errors, "\n".join(errors[:10])
    expected = replay_oracle(owned_results)
    written = {value for r in shared_results for value in r["written"]}
    never_written = [v for r in shared_results for v in r["read"] if v not in written]
    assert not never_written, f"read shared values nobody wrote: {never_written[:5]}"
    with h.open_db(path) as d:
        found = d.copy()
        h.assert_consistent(d)
    left = {k: found.pop(k) for k in h.SHARED_KEYS if k in found}
    assert found == expected, "the owned ranges differ from the merged oracles"
    assert set(left.values()) <= written, "a shared key holds a value nobody wrote"


def test_cross_process_handoffs_never_read_stale(tmp_path):
    """Two processes taking turns with front caches on always read the version the other just wrote."""
    path = str(tmp_path / "db")
    rounds = h.sized(5_000, 40_000)
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    result_paths = [f"{path}.handoff{r}" for r in (0, 1)]
    players = [ctx.Process(target=h.handoff_player, args=(path, role, conn, rounds, result_paths[role]),
                           daemon=True) for role, conn in ((0, a), (1, b))]
    for player in players:
        player.start()
    h.join_all(players)
    results = [h.load(rp) for rp in result_paths]
    handoffs = sum(r["handoffs"] for r in results)
    stale = sum(r["stale"] for r in results)
    h.FIGURES["handoffs"] += handoffs
    h.FIGURES["stale reads"] += stale
    assert handoffs == rounds - 1
    assert stale == 0, f"{stale} stale reads in {handoffs} handoffs"
    hits = sum(r["front_cache_hits"] for r in results)
    assert hits > rounds // 4, f"test precondition: reads served by the front cache ({hits})"
