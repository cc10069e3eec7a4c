"""The engine boundary: what the mapping (``PersistDict``) asks of a store, and nothing more.

Derived from what the mapping does: its nine write transactions (set/set_many/update and
``d(...)``, delete, pop, popitem, setdefault, touch, clear, the atime flush), its reads
(``d[k]``, ``in``, ``get_many``, iteration, ``len``, ``metadata``, ``readable_items``) and its
housekeeping (sweep, maintenance lease, check, format record, stats, sync, close).

Keys cross as canonical bytes: ``lookup`` (the key codec's lookup encoding, equal for keys that
are equal) and ``exact`` (the exact encoding when it differs, else None: ``1`` and ``True`` share
a lookup but not an exact form). Values cross as ``(kind, payload)``: the value codec's kind byte
(``_codec.record.KIND_*``) and its bytes. The mapping never sees a slot, a table, a page or an
engine transaction; an engine never sees a Python key or value and runs no user code (but the
key decoder and ``can_decode`` the mapping hands to ``keys`` and ``check``).

An entry has an ``id``: a number the engine gives it when it is created, kept by overwrites and
not reused while the entry lives (LMDB's insertion seq). Reads note ``id -> time`` in the
engine's :class:`PendingAccesses` (``engine.accesses``) without a call; the engine stores those
notes (``write_atimes``) and reads them back for eviction and the idle-entry sweep.

Time is the mapping's clock, passed in as ``now`` (tests replace it).

Engines: engines/lmdb (the store on disk, shared by processes) and engines/memory.py (one
process, nothing on disk). engines/registry.py picks one from the path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .._codec.record import Record

if TYPE_CHECKING:
    from .._accesses import PendingAccesses

# An entry with everything the engine keeps (pop, popitem, metadata): id (``seq``), ctime,
# mtime, expires (0.0: never), kind, lookup, exact, payload.
StoredEntry = Record

# What the cold read gets: (id, expires, kind, payload, snapshot clock), id -1 if absent. A plain
# tuple: a NamedTuple's constructor is a Python frame, and this is the read path.
ReadResult = tuple[int, float, int, Any, int]

# No maintenance lease lasts longer than this, on any engine: a holder whose passes are further
# apart lets others sweep between them.
LONGEST_LEASE = 3600.0

REPORTED_EXAMPLES = 20  # at most this many examples per problem kind in a CheckReport; counts are totals


class Item(NamedTuple):
    """One entry to write: its key's encodings and its value's."""

    lookup: bytes
    exact: bytes | None
    kind: int
    payload: bytes


class Loaded(NamedTuple):
    """One entry to store as it was exported: its key and value, and its times."""

    item: Item
    ctime: float
    mtime: float
    atime: float
    expires: float  # 0.0: never


class Bounds(NamedTuple):
    """``max_items`` / ``max_bytes``; None: unbounded. Eviction removes the least recently used
    entries (stored access time, pending notes included), never those the write itself stores."""

    max_items: int | None
    max_bytes: int | None


class Commit(NamedTuple):
    """What the front cache needs after a write."""

    clock: int  # the commit's value of the feed's clock (LMDB: its txn id)
    wrote: bool  # it changed something, so it moved the clock to ``clock``
    tracked: bool  # its own commit, not a write inside transaction() (committed, or not, with the block)
    evicted: list[bytes]  # lookups the bounds evicted in the same commit


@dataclass
class CheckReport:
    """What :meth:`PersistDict.check` found (and fixed, with ``repair=True``)."""

    entries: int = 0
    orphan_records: int = 0  # records no order row points to
    orphan_order_rows: int = 0  # order rows whose record is missing or belongs to another entry
    orphan_atimes: int = 0  # access times of entries that no longer exist
    misplaced_records: int = 0  # records stored under a slot their key does not map to
    corrupted_records: int = 0  # records failing their checksum (all of them)
    undecodable_records: int = 0  # records the value codec cannot decode (all of them)
    corrupted: list[str] = field(default_factory=list)  # slots (hex) failing their checksum: the first 20
    undecodable: list[str] = field(default_factory=list)  # keys (repr) the value codec cannot decode: the first 20
    damaged_rows: int = 0  # rows of the order, atimes, meta and changes tables that cannot be parsed (all of them)
    damaged: list[str] = field(default_factory=list)  # what is wrong with the first 20 of them (table and row)
    repaired: int = 0
    dropped: int = 0

    @property
    def ok(self) -> bool:
        return not (self.orphan_records or self.orphan_order_rows or self.orphan_atimes
                    or self.misplaced_records or self.corrupted_records or self.undecodable_records or self.damaged_rows)

    def __getitem__(self, name: str) -> Any:  # report["ok"] reads like a dict too
        return getattr(self, name)

    def note_undecodable(self, keys: Any, lookup: bytes, exact: bytes | None) -> None:
        """Count a record the value codec cannot decode, naming its key (``keys``: the key codec)
        among the first REPORTED_EXAMPLES."""
        self.undecodable_records += 1
        if len(self.undecodable) < REPORTED_EXAMPLES:
            try:
                text = repr(keys.decode(lookup, exact))
            except Exception:  # noqa: BLE001 - a key the codec cannot decode: still reported
                text = "<undecodable key>"
            self.undecodable.append(text if len(text) <= 80 else text[:77] + "...")


class ChangeFeed(Protocol):
    """The commit clock and the changed keys, as the front cache's coherence rule reads them
    (_frontcache/coherence.py); one per open store.

    ``views`` and ``txn_holders`` are attributes so that a hot read checks coherence without a
    call: the cache is valid while ``max(views[0][0], views[1][0])`` is the clock it was filled
    at and no thread of this process is inside ``transaction()``.
    """

    views: Any  # the clock without a call: two 1-item sequences of ints (None: call last_commit)
    txn_holders: list[None]  # non-empty while a thread of this process is inside transaction()

    def last_commit(self) -> int:
        """The clock of the last commit by anyone."""

    def changes_since(self, since: int) -> tuple[int, set[bytes]] | None:
        """(snapshot clock, lookups changed after ``since`` up to it), or None when the feed cannot
        vouch for every commit in between (the reader then empties its cache)."""

    def in_transaction(self) -> bool:
        """Whether this thread is inside ``transaction()`` (its reads bypass the front cache)."""


class Engine(Protocol):
    """One open store. Every method is thread-safe; the mapping calls them outside its lock.

    Errors are translated at the engine's boundary into :mod:`PersistDict.exceptions`
    (``StorageError``, ``StorageFullError``, ``CorruptedRecordError``...), which are also builtins.
    A ``CorruptedRecordError`` names no key: the mapping adds it.
    """

    @property
    def feed(self) -> ChangeFeed:
        """The commit clock and changed keys (an attribute in engines: the hot read reads it)."""

    @property
    def accesses(self) -> PendingAccesses:
        """id -> time of reads not yet stored (noted by the mapping, without a call or a lock)."""

    # -- reads: each one snapshot; inside transaction() they see its writes ----------------------

    def get(self, lookup: bytes) -> ReadResult:
        """The entry (expired ones too: the caller compares ``expires`` with its clock). Bound
        once by the mapping: the cold read path, so no Python call inside but the engine's own."""

    def expires(self, lookup: bytes) -> float | None:
        """The entry's expiry (0.0: never) or None if absent: what ``in`` needs."""

    def get_many(self, lookups: Sequence[bytes], known_at: int = -1, known: frozenset[int] = frozenset()
                 ) -> tuple[list[Any], int]:
        """For each lookup (id, expires, kind, payload), None (absent) or the CorruptedRecordError
        of a damaged entry, and the snapshot's clock. Positions in ``known`` are not read (None)
        if the snapshot's clock is ``known_at`` (the front cache holds them at that clock)."""

    def count(self) -> int:
        """Entries stored, expired ones included until swept."""

    def counts(self) -> tuple[int, int]:
        """Two counts of the entries that must agree (LMDB: records, order rows)."""

    def keys(self, now: float, decode_many: Callable[[list[bytes]], list[Any]],
             decode_str_keys: Callable[[list[bytes]], list[str] | None] | None) -> list[Any]:
        """Live keys in insertion order, decoded by the mapping's decoder within the snapshot."""

    def prefixed(self, prefix: bytes, now: float) -> list[bytes]:
        """The exact encodings (the lookup when the same) of the live entries whose lookup starts
        with ``prefix``, ordered by lookup bytes, one snapshot (``keys(prefix=...)``). Reads the
        matching entries only, not every entry; an engine that must read more (LMDB: lookups too
        long for a slot, stored under hashes) says so in its docstring."""

    def items(self, now: float) -> list[tuple[bytes, bytes | None, int, Any]]:
        """(lookup, exact, kind, payload) of every live entry in insertion order, one snapshot."""

    def readable(self, lookups: Sequence[bytes] | None, now: float) -> list[tuple[Any, ...] | None]:
        """Reads past damage (``readable_items``): per entry (lookup, exact, kind, payload, id), or
        (the lookup its place spells or None, the CorruptedRecordError); None: absent or expired."""

    def find(self, lookup: bytes, now: float) -> StoredEntry | None:
        """The live entry of ``lookup`` (``pop``)."""

    def times(self, lookup: bytes, now: float) -> tuple[float, float] | None:
        """(ctime, atime) of the live entry, pending reads included (``metadata``)."""

    def newest(self, now: float) -> tuple[StoredEntry, Any] | None:
        """The most recently inserted live entry and an opaque place for ``remove_at`` (``popitem``)."""

    # -- writes: each atomic; inside transaction() they join it -----------------------------------

    def footprint(self, items: Sequence[Item]) -> int:
        """The fewest bytes ``items`` take in an otherwise empty store (what ``max_bytes`` must allow)."""

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        """Insert or overwrite ``items``; an overwrite keeps the entry's id, ctime and position, an
        expired entry is replaced by a new one. Then evict until ``bounds`` hold (ValueError,
        nothing written, if the items alone do not fit). ``once``: a name this write claims
        atomically (``AlreadyCalledError`` if claimed since the last ``clear``: ``d(...)``).

        Retry contract: a write that outgrows the store (LMDB's map) is rolled back, the store
        grown and the whole operation run again from the start. So an engine's operation body
        does only database work: no user code, no counters, no side effect outside the store,
        nothing that cannot run twice. Inside ``transaction()`` it is not retried:
        ``StorageFullError`` after the rollback has grown the store; the caller runs the block again.
        """

    def put_if_absent(self, item: Item, now: float, bounds: Bounds, refuse: BaseException | None = None
                      ) -> tuple[tuple[int, Any] | None, Commit]:
        """``setdefault``: ((kind, payload) of the live entry found, or None if ``item`` was
        stored), atomically. ``refuse``: raised instead of storing (the default did not encode)."""

    def replace(self, item: Item, expected: StoredEntry | None, now: float, expires: float, bounds: Bounds,
                keep_key: bool = True) -> tuple[bool, Commit]:
        """Write ``item`` (expiring at ``expires``) only if the live entry is still ``expected``
        (as ``find`` returned it; None: only if absent or expired), then evict as ``put``; whether
        it wrote (``incr``, ``compare_and_set``). An overwrite keeps the entry's exact key unless
        not ``keep_key`` (an encrypted store's key rotation re-seals it)."""

    def remove(self, lookup: bytes, now: float, expected: StoredEntry | None = None
               ) -> tuple[StoredEntry | None, Commit]:
        """Remove the entry; returns it if it was live (and, given ``expected``, still that version)."""

    def remove_at(self, where: Any, expected: StoredEntry) -> tuple[StoredEntry | None, bytes, Commit]:
        """Remove what ``newest`` found at ``where`` if it is still that version; (it, its lookup, commit)."""

    def retime(self, lookup: bytes, now: float, expires: float) -> tuple[bool, Commit]:
        """Set a live entry's expiry and access time (``touch``); False if absent or expired."""

    def clear(self) -> Commit:
        """Remove every entry and the ``once`` claims."""

    def transaction(self) -> AbstractContextManager[None]:
        """This thread's writes and reads as one atomic, isolated transaction; nested blocks are
        savepoints. Other writers wait. Rolled back if the block raises."""

    # -- housekeeping -----------------------------------------------------------------------------

    def write_atimes(self, batch: list[tuple[int, float]]) -> tuple[int, Commit]:
        """Store access times (id, time) of entries that exist, each only if later; how many."""

    def sweep(self, now: float, idle_cutoff: float | None, start_after: int, deadline: float,
              monotonic: Callable[[], float], alert: Callable[[Exception], None]) -> tuple[int, int | None]:
        """Remove entries past their expiry or not accessed since ``idle_cutoff``, in short writes,
        until ``deadline`` (on ``monotonic``): (removed, id to resume after or None when done).
        A damaged entry is skipped and passed to ``alert``. A pass (``start_after`` 0) also drops
        the named mutexes whose time ran out (their holders died, or lost them)."""

    def take_lease(self, holder: str, now: float, seconds: float, days: float | None) -> bool:
        """Claim the store-wide maintenance lease (one sweeper at a time)."""

    def release_lease(self, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""

    def claim(self, name: bytes, holder: bytes, now: float, until: float) -> bool:
        """Take the named mutex ``name`` for ``holder`` until ``until``, atomically, if it is free,
        expired (``until <= now``) or already ``holder``'s (a renewal); whether it did. Not an entry:
        not counted, listed, evicted or cleared. Never called inside ``transaction()``."""

    def unclaim(self, name: bytes, holder: bytes) -> bool:
        """Free the named mutex if ``holder`` still has it; whether it did."""

    def check(self, keys: Any, can_decode: Callable[[Record], bool], repair: bool, drop: bool,
              format_row: bytes, progress: Callable[[int, int], Any] | None = None) -> CheckReport:
        """Cross-check every entry; with ``repair`` fix structure, with ``drop`` delete entries that
        fail their checksum or ``can_decode(record)`` (whether its value, and on an encrypted
        store its sealed key, can be read). ``keys``: the key codec
        (``decode``), to name keys. ``progress(entries checked, entries)`` now and then, and at the end."""

    def setting(self, name: bytes) -> bytes | None:
        """A store-wide setting row (``encryption``: the key record), outside the entries; None if absent."""

    def put_setting(self, name: bytes, value: bytes, expected: bytes | None) -> bool:
        """Store ``value`` as the setting ``name`` if it is still ``expected`` (None: absent), atomically;
        whether it did. Kept by ``clear()``. Never called inside ``transaction()``."""

    def format(self, wanted: bytes) -> bytes | None:
        """The stored format record; ``wanted`` is stored first if none is and the store is empty."""

    # -- operations (_api/operations.py: backup, export, import, compaction) ------------------------

    def entries_after(self, start_after: int, limit: int, now: float) -> list[tuple[StoredEntry, float]]:
        """Up to ``limit`` live entries with ids after ``start_after``, in insertion order (ids
        only grow), each with its access time (pending reads included), payloads copied; one
        snapshot per call, so a caller holds nothing open between calls."""

    def load(self, batch: Sequence[Loaded], now: float, bounds: Bounds) -> Commit:
        """Store ``batch``'s entries with their own times (``import_from``): a key not present (or
        expired at ``now``) becomes a new entry, last in order; a present one keeps its id and
        place and takes the value and times given. Then evict as ``put``."""

    def backup(self, dest: str, compact: bool, progress: Callable[[int, int], Any] | None) -> bool:
        """Copy the store into the new or empty directory ``dest`` as one consistent snapshot
        while others go on reading and writing, reporting bytes to ``progress``. False: this
        engine keeps no files (the mapping then writes the copy entry by entry)."""

    def compact(self, progress: Callable[[int, int], Any] | None) -> tuple[int, int]:
        """Give the space of deleted entries back: (bytes on disk before, after).
        ``StoreInUseError`` if the engine cannot while other processes use the store."""

    def info(self) -> dict[str, int]:
        """Figures for ``stats()``: records_bytes, bytes_on_disk, map_size, readers_in_use."""

    def sync(self) -> None:
        """Make deferred writes durable ('fast' durability)."""

    def close(self) -> None:
        """Release this handle."""


def live(expires: float, now: float) -> bool:
    """Whether an entry with expiry ``expires`` (0.0: never) is live at ``now``."""
    return not expires or expires > now


def written_after(mtime: float, now: float) -> float:
    """The mtime of an overwrite at ``now`` of an entry last written at ``mtime``: later than it
    even if the clock did not move (or went back), so that every write changes the entry's version
    (``PersistDict.version``)."""
    return now if now > mtime else math.nextafter(mtime, math.inf)
