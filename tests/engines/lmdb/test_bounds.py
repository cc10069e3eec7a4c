"""Bounds measured in LMDB pages: writes the bounds cannot hold are refused, eviction finds room the page
layout hides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import PersistDict

from ._lmdb_access import eviction_rng


ROOT = str(Path(__file__).resolve().parents[3])


def test_a_write_the_bounds_cannot_hold_is_refused_and_the_store_left_as_it_was(
        make_db: Callable[..., PersistDict], tmp_path: Path) -> None:
    """More distinct keys than max_items in one write, a value whose pages exceed max_bytes, and a
    batch whose pages only turn out too many inside the transaction: ValueError, nothing written,
    inside transaction() too (the rest of the transaction stays)."""
    items = make_db(tmp_path / "items", max_items=3)
    items.update({"a": 1, "b": 2})
    with pytest.raises(ValueError, match="4 entries, more than max_items=3"):
        items.set_many({f"k{i}": i for i in range(4)})
    items.set_many([("k", 1), ("k", 2), ("k", 3), ("k", 4)])  # one key given four times: one entry
    assert sorted(items.items()) == [("a", 1), ("b", 2), ("k", 4)]

    pages = make_db(tmp_path / "pages", max_bytes=8192)
    pages["small"] = b"s"
    with pytest.raises(ValueError, match=r"key 'x' needs at least 12288 bytes .* max_bytes=8192"):
        pages["x"] = bytes(8000)  # two overflow pages and a leaf page
    with pytest.raises(ValueError, match="these 2 entries need"):
        pages.set_many({"p": bytes(3000), "q": bytes(3000)})
    batch = {f"k{i}": "x" * 100 for i in range(24)}  # fits the estimate (2 leaf pages), not the tree (+ a branch)
    with pytest.raises(ValueError, match="alone take 24 entries and 12288 bytes"):
        pages.set_many(batch)
    assert list(pages.items()) == [("small", b"s")] and pages.stats()["records_bytes"] <= 8192
    with pages.transaction():
        pages["t"] = b"t"
        with pytest.raises(ValueError, match="alone take"):
            pages.set_many(batch)
    assert sorted(pages) == ["small", "t"] and pages.stats()["records_bytes"] <= 8192


def test_eviction_finds_room_that_sampling_or_page_layout_hides(
        make_db: Callable[..., PersistDict], tmp_path: Path) -> None:
    """A write that fits is never refused: not when every sampled entry is the write's own (a seq
    gap leads each sample to the next row), nor when the entries left after evicting the rest sit on
    half-empty pages (written afresh they fit)."""
    gap = make_db(tmp_path / "gap")
    gap["old"] = 0
    gap.set_many({f"k{i}": i for i in range(998)})
    gap["target"] = 0
    gap.set_many({f"n{i}": i for i in range(100)})
    for i in range(998):
        del gap[f"k{i}"]  # 102 entries: "old", then a gap of seqs, "target" and n0..n99 at its end
    gap.close()
    for seed in range(20):  # a sample misses "old" with probability (999/1100)**16 = 0.21
        bounded = make_db(tmp_path / "gap", max_items=101)
        eviction_rng(bounded).seed(seed)
        bounded["target"] = seed  # one eviction: the least recently used entry that is not "target"
        assert len(bounded) == 101 and bounded["target"] == seed
        bounded.close()
        refill = make_db(tmp_path / "gap")
        refill[f"again{seed}"] = seed
        refill.close()

    full = make_db(tmp_path / "full", max_bytes=64 * 1024)
    for i in range(600):
        full[f"{i:04d}a"] = bytes(60)  # LRU keeps the store at 64 KiB
    batch = {f"{i:04d}b": bytes(500) for i in range(0, 600, 12)}  # 44 KiB in an empty table; in key order
    full.set_many(batch)  # between the old entries: once they are evicted, one or two per leaf page
    assert set(batch) <= set(full) and full.stats()["records_bytes"] <= 64 * 1024
    assert full.check().ok
