"""The front cache's coherence rule, in one place, over any engine's change feed.

The cache is valid as of one commit of the feed's clock (``valid_at``). Any
commit, by any instance or process, moves the clock; the next lookup sees the
change and brings the cache up to it, so a read never returns a value older
than the last commit: each commit logs the keys it changed
(``feed.changes_since``; access-time flushes and the maintenance lease log
none), and the cache evicts those. If a commit in the gap is not in the log
(too large, ``clear()``, more than the log keeps), the cache empties. A value
read in a snapshot is only cached if that snapshot is ``valid_at``. The
owner's own write evicts its keys and keeps the rest of the cache when it took
the very next clock value and is still the last commit (else the log covers
it). Only a commit that changed something moves the clock.

Inside ``transaction()`` this thread's reads bypass the cache: it does not see
uncommitted writes. The two inputs are the engine's: the clock (LMDB: the
meta pages' txn id, readable without a call through ``feed.views``) and the
changed keys (LMDB: the change-log ring). The hot read
(``PersistDict._hot_entry``) inlines :func:`is_current`; every other reader
calls these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..engines.base import ChangeFeed, Commit
from .cache import Changes, FrontCache


def is_current(front: FrontCache, feed: ChangeFeed) -> bool:
    """Whether the cache may answer without the lock: it is valid at the last commit and no
    thread of this process is inside transaction() (inlined in the hot read)."""
    views = feed.views
    if views is None or feed.txn_holders:
        return False
    first, second = views[0][0], views[1][0]
    return bool(front.valid_at == (first if first > second else second))


def bypassed(feed: ChangeFeed) -> bool:
    """Whether this thread is inside transaction(): its reads must not use the cache."""
    return bool(feed.txn_holders) and feed.in_transaction()


def cache_forms(lookup: bytes, plain_keys: bool) -> list[Any]:
    """Every front-cache key under which the entry of ``lookup`` may be cached.

    A str key is cached as itself, and an equal key of another type (a str
    subclass) as (lookup,): a write must evict both.
    """
    forms: list[Any] = [(lookup,)]
    if plain_keys:
        if lookup[0] == 0x73:  # 's': a str key
            forms.append(lookup[1:].decode("utf-8", "surrogatepass"))
        elif lookup[0] == 0x62:  # 'b': a bytes key
            forms.append(lookup[1:])
    return forms


def cache_forms_of(lookups: Iterable[bytes], plain_keys: bool) -> list[Any]:
    return [form for lookup in lookups for form in cache_forms(lookup, plain_keys)]


def changes_since(feed: ChangeFeed, front: FrontCache, plain_keys: bool) -> Changes | None:
    """For ``FrontCache.validate``: (valid_at, snapshot clock, cache keys changed in between) if
    the feed covers every commit since the cache was valid, else None. It reads the engine, so
    it runs before the owner's lock is taken."""
    since = front.valid_at
    if since < 0 or feed.last_commit() == since:
        return None
    logged = feed.changes_since(since)
    if logged is None:
        return None
    snapshot, lookups = logged
    return since, snapshot, cache_forms_of(lookups, plain_keys)


def validate(front: FrontCache, feed: ChangeFeed, changes: Changes | None) -> None:
    """Bring the cache to the last commit (the owner's lock held; ``changes`` from :func:`changes_since`)."""
    front.validate(feed.last_commit(), changes)


def after_commit(front: FrontCache, feed: ChangeFeed, lookups: list[bytes], commit: Commit,
                 plain_keys: bool) -> None:
    """The owner's ``commit`` wrote ``lookups``: evict them; the cache stays valid if that commit
    was the only one (the owner's lock held)."""
    # forms are only worth computing when something may be cached under them
    forms = cache_forms_of(lookups, plain_keys) if front.holds_keys() else []
    front.after_write(forms, commit.clock, commit.wrote, feed.last_commit())
