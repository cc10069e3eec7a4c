"""The front cache's coherence rule, step by step: which commits it may pass, and what it must evict."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from PersistDict import PersistDict
from PersistDict._frontcache import FrontCache
from PersistDict._records import KIND_STR


def _cache_with(key: str, value: bytes, valid_at: int) -> FrontCache:
    """A cache valid at ``valid_at`` holding ``key`` (filled on its second miss, as reads do)."""
    front = FrontCache(100, 1 << 20, lambda hits: None)
    assert front.validate(valid_at)
    front.fill(key, KIND_STR, value, 1, 0.0, valid_at)
    front.fill(key, KIND_STR, value, 1, 0.0, valid_at)
    assert key in front.hot
    return front


def test_an_own_write_that_changed_nothing_does_not_vouch_for_the_next_commit() -> None:
    """A write transaction that changed nothing takes no txn id: the next commit (someone else's) empties the cache."""
    front = _cache_with("k", b"old", 6)
    front.before_write()
    assert not front.validate(7)  # someone else committed 7 while our write is in flight: not served, not judged
    front.after_write([], 7, False, 7)  # ours changed nothing; 7 is not ours
    assert "k" not in front.hot and front.valid_at == 7


def test_own_commits_reported_out_of_order_evict_their_keys_when_passed() -> None:
    """Own commits 7 (key j) and 8 (key k) reported 8 first: a fill of k from the old snapshot in between is evicted."""
    front = _cache_with("j", b"j-old", 6)
    front.before_write()
    front.before_write()
    front.after_write(["k"], 8, True, 8)  # 7 is not reported yet: the cache may not pass 8
    assert not front.validate(8) and front.valid_at == 6
    front.fill("k", KIND_STR, b"k-old", 2, 0.0, 6)  # a reader still on snapshot 6: allowed, it is valid there
    front.fill("k", KIND_STR, b"k-old", 2, 0.0, 6)
    front.after_write(["j"], 7, True, 8)
    assert front.valid_at == 8 and "j" not in front.hot and "k" not in front.hot


def test_a_foreign_commit_between_own_commits_empties_the_cache() -> None:
    """Own 7, someone else's 8, own 9: the cache cannot pass 8, so it is emptied once no own write is in flight."""
    front = _cache_with("x", b"x", 6)
    front.before_write()
    front.after_write([], 7, True, 7)
    assert front.validate(7) and "x" in front.hot
    front.before_write()
    front.after_write([], 9, True, 9)  # 8 was not ours
    assert "x" not in front.hot and front.valid_at == 9


def test_a_failed_write_empties_the_cache() -> None:
    """A write that raised may or may not have committed: the cache starts over."""
    front = _cache_with("x", b"x", 6)
    front.before_write()
    front.after_write([], -1, False, 7)
    assert "x" not in front.hot and front.valid_at == 7


def test_writes_from_two_threads_keep_the_rest_of_the_cache(make_db: Callable[..., PersistDict]) -> None:
    """Two threads reading hot keys and writing their own keys through one instance: their commits evict only
    what they wrote, so most reads stay front-cache hits (they did not when only in-order commits were passed)."""
    d = make_db(durability="fast")
    hot = [f"hot{i}" for i in range(100)]
    d.set_many({key: "value" for key in hot})
    for _ in range(3):
        for key in hot:
            assert d[key] == "value"
    hits_before = d.stats()["front_cache_hits"]
    reads = [0, 0]

    def worker(index: int) -> None:
        rng = random.Random(index)
        for n in range(4000):
            if rng.random() < 0.8:
                assert d[hot[rng.randrange(100)]] == "value"
                reads[index] += 1
            else:
                d[f"own{index}-{rng.randrange(50)}"] = n

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hits = d.stats()["front_cache_hits"] - hits_before
    assert hits > sum(reads) * 0.6, f"only {hits} of {sum(reads)} reads were front-cache hits"
