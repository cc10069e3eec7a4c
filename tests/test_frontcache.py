"""The front cache's coherence rule, step by step: which commits it may pass, and what it must evict."""

from __future__ import annotations

from _internals import KIND_STR, FrontCache


def _cache_with(key: str, value: bytes, valid_at: int) -> FrontCache:
    """A cache valid at ``valid_at`` holding ``key`` (filled on its second miss, as reads do)."""
    front = FrontCache(100, 1 << 20, lambda hits: None)
    front.validate(valid_at)
    front.fill(key, KIND_STR, value, 1, 0.0, valid_at)
    front.fill(key, KIND_STR, value, 1, 0.0, valid_at)
    assert key in front.hot
    return front


def test_an_own_write_keeps_the_rest_of_the_cache() -> None:
    """An own commit that took the next txn id and is still the last one evicts its keys only."""
    front = _cache_with("x", b"x", 6)
    front.after_write(["k"], 7, True, 7)
    front.validate(7)
    assert front.valid_at == 7 and "x" in front.hot


def test_an_own_write_that_changed_nothing_does_not_vouch_for_the_next_commit() -> None:
    """A write transaction that changed nothing takes no txn id: the next commit (someone else's) empties the cache."""
    front = _cache_with("k", b"old", 6)
    front.after_write([], 7, False, 7)  # ours changed nothing; 7 was someone else's commit
    assert front.valid_at == 6
    front.validate(7)
    assert "k" not in front.hot and front.valid_at == 7


def test_a_foreign_commit_between_own_commits_empties_the_cache() -> None:
    """Own 7, someone else's 8, own 9: the cache cannot vouch for 8, so the next lookup empties it."""
    front = _cache_with("x", b"x", 6)
    front.after_write([], 7, True, 7)
    assert front.valid_at == 7 and "x" in front.hot
    front.after_write([], 9, True, 9)
    front.validate(9)
    assert "x" not in front.hot and front.valid_at == 9


def test_logged_commits_evict_only_the_keys_they_changed() -> None:
    """validate() with the keys the commits since valid_at changed evicts those, keeps the rest, and
    moves valid_at to the snapshot the log was read in."""
    front = _cache_with("x", b"x", 6)
    front.fill("y", KIND_STR, b"y", 2, 0.0, 6)
    front.fill("y", KIND_STR, b"y", 2, 0.0, 6)
    front.validate(9, (6, 8, []))  # 7 and 8 changed no entry; 9 is not checked yet
    assert front.valid_at == 8 and {"x", "y"} <= front.hot.keys()
    front.validate(9, (8, 9, ["y", ("sy",)]))
    assert front.valid_at == 9 and "x" in front.hot and "y" not in front.hot


def test_a_changed_key_that_missed_once_must_miss_twice_again() -> None:
    """A logged change also forgets the key's first miss: the admission hint was about the old value."""
    front = FrontCache(100, 1 << 20, lambda hits: None)
    front.validate(6)
    assert front.note_miss("k", 6) is False
    front.validate(7, (6, 7, ["k"]))
    front.fill("k", KIND_STR, b"new", 1, 0.0, 7)
    assert "k" not in front.hot


def test_a_check_made_from_an_older_valid_at_does_not_keep_the_cache() -> None:
    """A check made before the cache moved (from another valid_at) proves nothing: the cache is emptied."""
    front = _cache_with("x", b"x", 6)
    front.validate(9, (5, 9, []))
    assert "x" not in front.hot and front.valid_at == 9
