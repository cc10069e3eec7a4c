"""The in-memory reference engine: the engine protocol (base.py) over Python dicts.

``PersistDict(":memory:")`` opens one: a store of its own, in this process only, with nothing
on disk, gone at ``close()``. It keeps the LMDB engine's semantics (TTL and expiry, bounds and
eviction, atomic and isolated ``transaction()`` with savepoints, metadata, check) so it serves
users' tests and ephemeral caches, and it is the reference the conformance suite holds every
engine to. It is simple before it is fast.

Concurrency: one re-entrant lock per store. Every read and write takes it; ``transaction()``
holds it for its whole block, so other threads wait for the block instead of reading an older
snapshot (isolated either way). A write records what it overwrites in an undo log; a write
that fails (bounds) and a block that raises undo back to their mark.
"""

from __future__ import annotations

import bisect
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._accesses import PendingAccesses
from .._codec.record import Record, record_length
from ..exceptions import AlreadyCalledError
from .base import Bounds, Commit, Item, live, written_after
from .memory_housekeeping import MemoryHousekeeping

CHANGES_KEPT = 1024  # commits whose changed keys the feed remembers
_MISSING: Any = object()
_ALL = None  # a commit that changed too much to name: readers empty their caches


class MemoryFeed:
    """The memory engine's change feed: a commit counter readable without a call, and the keys
    the last ``CHANGES_KEPT`` commits changed."""

    def __init__(self) -> None:
        self.clock = [0]
        self.views = (self.clock, self.clock)  # coherence reads max(views[0][0], views[1][0])
        self.txn_holders: list[None] = []
        self.log: deque[tuple[int, set[bytes] | None]] = deque(maxlen=CHANGES_KEPT)
        self.local = threading.local()

    def last_commit(self) -> int:
        return self.clock[0]

    def changes_since(self, since: int) -> tuple[int, set[bytes]] | None:
        now = self.clock[0]
        log = list(self.log)  # a copy: a commit may append meanwhile
        changed: set[bytes] = set()
        wanted = set(range(since + 1, now + 1))
        for clock, lookups in log:
            if clock in wanted:
                if lookups is None:
                    return None
                changed |= lookups
                wanted.discard(clock)
        return None if wanted else (now, changed)

    def in_transaction(self) -> bool:
        return bool(getattr(self.local, "depth", 0))


class MemoryEngine(MemoryHousekeeping):
    """One in-memory store."""

    def __init__(self) -> None:
        self.feed = MemoryFeed()
        self.accesses = PendingAccesses()
        self.records: dict[bytes, Record] = {}  # lookup -> entry
        self.order: dict[int, bytes] = {}  # id -> lookup, in insertion order (ids only grow)
        self.atimes: dict[int, float] = {}  # id -> last stored read
        self.meta: dict[bytes, bytes] = {}
        self.records_bytes = 0
        self._next_id = 1
        self._lock = threading.RLock()
        self.claims: dict[bytes, tuple[bytes, float]] = {}  # named mutexes: name -> (holder, until)
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []  # (table, key, old value or _MISSING)
        self._changed: set[bytes] | None = set()  # lookups written since the last commit
        self._wrote = False
        # the lookups in byte order, for prefixed(): built by the first one, then kept up to date
        self._sorted: list[bytes] | None = None
        _live.add(self)

    # -- the tables, with undo ---------------------------------------------------------------------

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        old = table.get(key, _MISSING)
        self._undo.append((table, key, old))
        table[key] = value
        self._wrote = True
        if old is _MISSING and table is self.records:
            self._index_add(key)

    def _delete(self, table: dict[Any, Any], key: Any) -> None:
        if key in table:
            self._undo.append((table, key, table.pop(key)))
            self._wrote = True
            if table is self.records:
                self._index_discard(key)

    def _index_add(self, lookup: bytes) -> None:
        if self._sorted is not None:
            bisect.insort(self._sorted, lookup)

    def _index_discard(self, lookup: bytes) -> None:
        index = self._sorted
        if index is not None:
            at = bisect.bisect_left(index, lookup)
            if at < len(index) and index[at] == lookup:
                del index[at]

    def _put_record(self, record: Record) -> None:
        old = self.records.get(record.lookup)
        if old is not None:
            self.records_bytes -= record_length(old.lookup, old.exact, old.payload)
        self.records_bytes += record_length(record.lookup, record.exact, record.payload)
        self._set(self.records, record.lookup, record)
        self._note(record.lookup)

    def _remove(self, record: Record) -> None:
        self.records_bytes -= record_length(record.lookup, record.exact, record.payload)
        self._delete(self.records, record.lookup)
        self._delete(self.order, record.seq)
        self._delete(self.atimes, record.seq)
        self._note(record.lookup)

    def _note(self, lookup: bytes) -> None:
        if self._changed is not None:
            self._changed.add(lookup)

    def _rollback(self, mark: int) -> None:
        reorder = False
        while len(self._undo) > mark:
            table, key, old = self._undo.pop()
            if table is self.records:
                current = table.get(key)
                if current is not None:
                    self.records_bytes -= record_length(current.lookup, current.exact, current.payload)
                if old is not _MISSING:
                    self.records_bytes += record_length(old.lookup, old.exact, old.payload)
            if old is _MISSING:
                if table.pop(key, _MISSING) is not _MISSING and table is self.records:
                    self._index_discard(key)
            else:
                if table is self.records and key not in table:
                    self._index_add(key)
                table[key] = old
                reorder = reorder or table is self.order
        if reorder:  # a restored id went to the end: insertion order is id order
            self.order = dict(sorted(self.order.items()))

    @contextmanager
    def _writing(self, savepoint: bool = True) -> Iterator[list[Commit]]:
        """One write: committed (the clock moves if it changed something) unless inside
        transaction(), whose end commits it; undone if it raises. Yields a list that receives
        the Commit."""
        with self._lock:
            mark = len(self._undo)
            outer = not self.feed.in_transaction()
            out: list[Commit] = []
            try:
                yield out
            except BaseException:
                self._rollback(mark)
                if outer:
                    self._undo.clear()
                    self._changed, self._wrote = set(), False
                raise
            if outer:
                out.append(self._commit())
            else:
                out.append(Commit(self.feed.clock[0] + 1, self._wrote, False, []))

    def _commit(self) -> Commit:
        wrote = self._wrote
        if wrote:
            self.feed.clock[0] += 1
            self.feed.log.append((self.feed.clock[0], self._changed))
        self._undo.clear()
        self._changed, self._wrote = set(), False
        return Commit(self.feed.clock[0], wrote, True, [])

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, lookup: bytes) -> tuple[int, float, int, Any, int]:
        with self._lock:
            record = self.records.get(lookup)
            if record is None:
                return -1, 0.0, 0, b"", self.feed.clock[0]
            return record.seq, record.expires, record.kind, record.payload, self.feed.clock[0]

    def expires(self, lookup: bytes) -> float | None:
        with self._lock:
            record = self.records.get(lookup)
            return None if record is None else record.expires

    def get_many(self, lookups: Sequence[bytes], known_at: int = -1, known: frozenset[int] = frozenset()
                 ) -> tuple[list[Any], int]:
        with self._lock:
            snapshot = self.feed.clock[0]
            skip = known if snapshot == known_at else frozenset()
            out: list[Any] = []
            for index, lookup in enumerate(lookups):
                record = None if index in skip else self.records.get(lookup)
                out.append(None if record is None else (record.seq, record.expires, record.kind, record.payload))
            return out, snapshot

    def count(self) -> int:
        with self._lock:  # a transaction writes into records: len() waits for it, as every read does
            return len(self.records)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self.records), len(self.order)

    def _live_records(self, now: float) -> list[Record]:
        records = self.records
        return [record for record in (records[lookup] for lookup in self.order.values()) if live(record.expires, now)]

    def keys(self, now: float, decode_many: Callable[[list[bytes]], list[Any]],
             decode_str_keys: Callable[[list[bytes]], list[str] | None] | None) -> list[Any]:
        with self._lock:
            encoded = [record.exact or record.lookup for record in self._live_records(now)]
        return decode_many(encoded)

    def prefixed(self, prefix: bytes, now: float) -> list[bytes]:
        """Live entries whose lookup starts with ``prefix``, by lookup (see the protocol): a
        binary search in the sorted lookups, then only the matching records are read. The first
        call sorts the store's lookups; every insert and delete after it keeps them sorted."""
        with self._lock:
            index = self._sorted
            if index is None:
                index = self._sorted = sorted(self.records)
            records = self.records
            out: list[bytes] = []
            for at in range(bisect.bisect_left(index, prefix), len(index)):
                lookup = index[at]
                if not lookup.startswith(prefix):
                    break
                record = records[lookup]
                if live(record.expires, now):
                    out.append(record.exact or lookup)
            return out

    def items(self, now: float) -> list[tuple[bytes, bytes | None, int, Any]]:
        with self._lock:
            return [(r.lookup, r.exact, r.kind, r.payload) for r in self._live_records(now)]

    def readable(self, lookups: Sequence[bytes] | None, now: float) -> list[tuple[Any, ...] | None]:
        with self._lock:
            if lookups is None:
                return [(r.lookup, r.exact, r.kind, r.payload, r.seq) for r in self._live_records(now)]
            found = [self.records.get(lookup) for lookup in lookups]
            return [(r.lookup, r.exact, r.kind, r.payload, r.seq) if r is not None and live(r.expires, now)
                    else None for r in found]

    def find(self, lookup: bytes, now: float) -> Record | None:
        with self._lock:
            record = self.records.get(lookup)
            return record if record is not None and live(record.expires, now) else None

    def _last_access(self, record: Record) -> float:
        return max(record.mtime, self.atimes.get(record.seq, 0.0), self.accesses.get(record.seq, 0.0))

    def times(self, lookup: bytes, now: float) -> tuple[float, float] | None:
        with self._lock:
            record = self.find(lookup, now)
            return None if record is None else (record.ctime, self._last_access(record))

    def newest(self, now: float) -> tuple[Record, int] | None:
        with self._lock:
            for seq in reversed(self.order):
                record = self.records[self.order[seq]]
                if live(record.expires, now):
                    return record, seq
            return None

    # -- writes --------------------------------------------------------------------------------------

    def footprint(self, items: Sequence[Item]) -> int:
        sizes = {item.lookup: record_length(item.lookup, item.exact, item.payload) for item in items}
        return sum(sizes.values())

    def _new_entry(self, lookup: bytes) -> int:
        """A new entry's id, last in insertion order."""
        seq = self._next_id
        self._next_id += 1
        self._set(self.order, seq, lookup)
        return seq

    def _store(self, lookup: bytes, exact: bytes | None, kind: int, payload: bytes, now: float,
               expires: float, keep_key: bool = True) -> int:
        """Insert or overwrite one entry (an expired one is replaced by a new entry); its id."""
        old = self.records.get(lookup)
        if old is not None and old.expires and old.expires <= now:
            self._remove(old)
            old = None
        if old is None:
            seq = self._new_entry(lookup)
            self._put_record(Record(seq, now, now, expires, kind, lookup, exact, payload))
            return seq
        # like a dict, an overwrite keeps the first key object (1 stays 1 after d[True] = ...)
        self._put_record(Record(old.seq, old.ctime, written_after(old.mtime, now), expires, kind, lookup,
                                old.exact if keep_key or exact is None else exact, payload))
        return old.seq

    def _evict(self, bounds: Bounds, protected: set[int]) -> list[bytes]:
        """Remove least recently used entries until ``bounds`` hold; ValueError if only
        ``protected`` ones are left (the caller's write is undone)."""
        evicted: list[bytes] = []
        max_items, max_bytes = bounds
        while (max_items is not None and len(self.records) > max_items) or (
                max_bytes is not None and self.records_bytes > max_bytes):
            candidates = [self.records[lookup] for seq, lookup in self.order.items() if seq not in protected]
            if not candidates:
                limits = (("max_items", max_items), ("max_bytes", max_bytes))
                text = " / ".join(f"{name}={value}" for name, value in limits if value is not None)
                raise ValueError(f"this write's entries alone take {len(self.records)} entries and "
                                 f"{self.records_bytes} bytes, more than {text}; it was not made")
            victim = min(candidates, key=self._last_access)
            self._remove(victim)
            evicted.append(victim.lookup)
        return evicted

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        with self._writing() as out:
            if once is not None:
                if once in self.meta:
                    raise AlreadyCalledError(
                        "The __call__ method of PersistDict can only be called once. Just like a regular dict."
                    )
                self._set(self.meta, once, b"1")
            written = {self._store(lookup, exact, kind, payload, now, expires)
                       for lookup, exact, kind, payload in items}
            evicted = self._evict(bounds, written)
        return out[0]._replace(evicted=evicted)

    def put_if_absent(self, item: Item, now: float, bounds: Bounds, refuse: BaseException | None = None
                      ) -> tuple[tuple[int, Any] | None, Commit]:
        with self._writing() as out:
            record = self.find(item.lookup, now)
            if record is None:
                if refuse is not None:
                    raise refuse
                evicted = self._evict(bounds, {self._store(*item, now, 0.0)})
        if record is not None:
            return (record.kind, record.payload), out[0]
        return None, out[0]._replace(evicted=evicted)

    def replace(self, item: Item, expected: Record | None, now: float, expires: float, bounds: Bounds,
                keep_key: bool = True) -> tuple[bool, Commit]:
        evicted: list[bytes] | None = None
        with self._writing() as out:
            record = self.find(item.lookup, now)
            if record is None if expected is None else record is not None and _same_version(record, expected):
                evicted = self._evict(bounds, {self._store(*item, now, expires, keep_key)})
        return (False, out[0]) if evicted is None else (True, out[0]._replace(evicted=evicted))

    def remove(self, lookup: bytes, now: float, expected: Record | None = None) -> tuple[Record | None, Commit]:
        with self._writing() as out:
            record = self.records.get(lookup)
            if record is not None and (expected is None or _same_version(record, expected)):
                self._remove(record)
            else:
                record = None
        return (record if record is not None and live(record.expires, now) else None), out[0]

    def remove_at(self, where: int, expected: Record) -> tuple[Record | None, bytes, Commit]:
        with self._writing() as out:
            lookup = self.order.get(where)
            record = None if lookup is None else self.records.get(lookup)
            if record is not None and _same_version(record, expected):
                self._remove(record)
            else:
                record = None
        return record, expected.lookup, out[0]

    def retime(self, lookup: bytes, now: float, expires: float) -> tuple[bool, Commit]:
        with self._writing() as out:
            record = self.find(lookup, now)
            if record is not None:
                if expires != record.expires:  # a new expiry is a write: a new version (see written_after)
                    self._put_record(record._replace(expires=expires, mtime=written_after(record.mtime, now)))
                self._set(self.atimes, record.seq, now)
        return record is not None, out[0]

    def clear(self) -> Commit:
        with self._writing() as out:
            self._sorted = None  # the next prefixed() sorts again: deleting from it one by one is quadratic
            for record in list(self.records.values()):
                self._remove(record)
            self._delete(self.meta, b"called")
            self._changed = _ALL
        return out[0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        feed = self.feed
        with self._lock:
            depth = getattr(feed.local, "depth", 0)
            mark = len(self._undo)
            feed.local.depth = depth + 1
            if depth == 0:
                feed.txn_holders.append(None)
            try:
                yield
            except BaseException:
                self._rollback(mark)
                if depth == 0:
                    self._undo.clear()
                    self._changed, self._wrote = set(), False
                raise
            else:
                if depth == 0:
                    self._commit()
            finally:
                feed.local.depth = depth
                if depth == 0:
                    feed.txn_holders.pop()

    def sync(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self.records.clear()
            self.order.clear()
            self.atimes.clear()
            self.records_bytes = 0
            self._sorted = None
        _live.discard(self)


def _same_version(record: Record, expected: Record) -> bool:
    return (record.seq == expected.seq and record.mtime == expected.mtime and record.expires == expected.expires
            and record.kind == expected.kind and record.payload == expected.payload)


_live: weakref.WeakSet[MemoryEngine] = weakref.WeakSet()


def _reset_after_fork_in_child() -> None:
    # a parent thread may have held a store's lock, or been inside transaction(), at fork
    for engine in list(_live):
        engine._lock = threading.RLock()
        engine.feed.txn_holders = []
        engine.feed.local = threading.local()


os.register_at_fork(after_in_child=_reset_after_fork_in_child)
