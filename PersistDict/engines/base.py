"""The engine boundary: what the mapping (``PersistDict``) asks of a store, and nothing more.

Derived from what the mapping does today: its nine write transactions (set/set_many/update,
``d(...)``, delete, pop, popitem, setdefault, touch, clear, the atime flush), its reads
(``d[k]``, ``in``, ``get_many``, iteration, ``len``, ``metadata``, ``readable_items``) and its
housekeeping (sweep, maintenance lease, check, format record, stats, sync, close).

Keys cross as canonical bytes: ``lookup`` (the key codec's lookup encoding, equal for keys that
are equal) and ``exact`` (the exact encoding when it differs, else None: ``1`` and ``True`` share
a lookup but not an exact form). Values cross as ``(kind, payload)``: the value codec's kind byte
(``_records.KIND_*``) and its bytes. The mapping never sees a slot, a table, a page or an engine
transaction object; an engine never sees a Python key or value, and runs no user code.

An entry also has an ``id``: a number the engine gives it when it is created, kept by overwrites
and never reused while the store lives (LMDB's insertion seq). Reads note ``id -> time`` in the
engine's :class:`PendingAccesses` (``engine.accesses``) without a call; the engine writes those
notes (``write_atimes``) and reads them back for eviction and the idle-entry sweep.

Time is the mapping's clock, passed in as ``now`` (tests replace it); an engine reads no clock
of its own for entry times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from .._accesses import PendingAccesses
    from .lmdb.integrity import CheckReport


class Entry(NamedTuple):
    """One live entry as a read returns it. ``payload`` may be a view valid only inside the read
    that returned it; engines copy it out for reads that return after their snapshot ends."""

    id: int
    expires: float  # 0.0: never
    kind: int
    payload: bytes | memoryview


class StoredEntry(NamedTuple):
    """An entry with everything the engine keeps: what ``pop``, ``popitem`` and ``metadata`` need."""

    id: int
    lookup: bytes
    exact: bytes | None
    ctime: float
    mtime: float
    expires: float
    kind: int
    payload: bytes


class Item(NamedTuple):
    """One entry to write: its key's encodings and its value's."""

    lookup: bytes
    exact: bytes | None
    kind: int
    payload: bytes


class Bounds(NamedTuple):
    """``max_items`` / ``max_bytes``; None: unbounded. Eviction removes the least recently used
    entries (by stored access time, pending notes included), never those the write itself stores."""

    max_items: int | None
    max_bytes: int | None


class Commit(NamedTuple):
    """What the front cache needs after a write: the commit clock it took and whether it is final."""

    clock: int  # the commit's id on the feed's clock (LMDB: its txn id)
    wrote: bool  # it changed something, so it moved the clock to ``clock``
    tracked: bool  # its own commit, not a write inside transaction() (committed, or not, with the block)
    evicted: list[bytes]  # lookups the bounds evicted in the same commit


class ChangeFeed(Protocol):
    """The commit clock and the changed keys, as the front cache reads them (one per open store).

    ``views`` and ``txn_holders`` are attributes so that a hot read checks coherence without a
    call: the cache is valid while ``max(views[0][0], views[1][0])`` equals the clock it was
    filled at and no thread of this process is inside ``transaction()``.
    """

    views: Any  # the clock without a call: two 1-item sequences of ints (None: call last_commit)
    txn_holders: list[None]  # non-empty while a thread of this process is inside transaction()

    def last_commit(self) -> int:
        """The clock of the last commit by any process."""

    def changes_since(self, since: int) -> tuple[int, set[bytes]] | None:
        """(snapshot clock, lookups changed after ``since`` up to it), or None when the feed cannot
        vouch for every commit in between (the reader then empties its cache)."""

    def in_transaction(self) -> bool:
        """Whether this thread is inside ``transaction()`` (reads then bypass the front cache)."""


class Engine(Protocol):
    """One open store. Every method is thread-safe; reads run outside the mapping's lock.

    Errors are translated at the engine's boundary into :mod:`PersistDict.exceptions`
    (``StorageError``, ``StorageFullError``, ``CorruptedRecordError``...), which are also builtins.
    A ``CorruptedRecordError`` from a read names no key: the mapping adds it.
    """

    feed: ChangeFeed
    accesses: PendingAccesses  # id -> time of reads not yet written (noted by the mapping, no lock)
    page_size: int  # the unit ``max_bytes`` is counted in (LMDB: a database page)

    # -- reads: each one snapshot; inside transaction() they read its uncommitted state ----------

    def get(self, lookup: bytes) -> tuple[Entry | None, int]:
        """(the entry or None, the snapshot's clock). Expired entries are returned: the caller
        compares ``expires`` with its clock. Bound once by the mapping: the cold read path."""

    def expires(self, lookup: bytes) -> float | None:
        """The entry's expiry (0.0: never) or None if absent: what ``in`` needs, without the value."""

    def get_many(self, lookups: Sequence[bytes]) -> tuple[list[Entry | None], int]:
        """Entries (payloads copied) of ``lookups`` in one snapshot, and its clock."""

    def count(self) -> int:
        """Entries stored, expired ones included until swept."""

    def keys(self, now: float) -> list[bytes]:
        """Encodings (exact, else lookup) of live keys, in insertion order, in one snapshot."""

    def items(self, now: float) -> list[StoredEntry]:
        """Every live entry in insertion order (payloads copied), in one snapshot."""

    def newest(self, now: float) -> StoredEntry | None:
        """The most recently inserted live entry (``popitem``)."""

    def find(self, lookup: bytes, now: float) -> StoredEntry | None:
        """The live entry of ``lookup`` with its times (``pop``, ``metadata``), payload copied."""

    def last_access(self, entry: StoredEntry) -> float:
        """The entry's stored access time: the later of its last write and last stored read."""

    # -- writes: each atomic and durable as configured; inside transaction() they join it ------

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        """Insert or overwrite ``items``; an overwrite keeps the entry's id, ctime and position.
        Then evict until ``bounds`` hold (ValueError, nothing written, if the items alone do not
        fit). ``once``: a name this write claims, atomically (``AlreadyCalledError`` if claimed
        since the last ``clear``: ``d(...)``).

        Retry contract: a write that outgrows the store (LMDB's map) is rolled back, the store
        grown, and the whole operation run again from the start. So the operation's body does
        only database work: no user code, no counters, no side effect outside the store, nothing
        that cannot run twice. Inside ``transaction()`` it is not retried: ``StorageFullError``
        after the rollback has grown the store, and the caller runs the block again.
        """

    def put_if_absent(self, item: Item, now: float, bounds: Bounds,
                      refuse: BaseException | None = None) -> tuple[tuple[int, bytes] | None, Commit]:
        """``setdefault``: ((kind, payload) of the live entry found, or None if ``item`` was
        stored), atomically. ``refuse``: raised instead of storing (the default did not encode)."""

    def remove(self, lookup: bytes, now: float, expected: StoredEntry | None = None
               ) -> tuple[StoredEntry | None, Commit]:
        """Remove the entry; returns it if it was live (and, given ``expected``, still that version)."""

    def remove_newest(self, expected: StoredEntry) -> tuple[StoredEntry | None, Commit]:
        """Remove ``expected`` (read by ``newest``) if it is still that version (``popitem``)."""

    def retime(self, lookup: bytes, now: float, expires: float) -> tuple[bool, Commit]:
        """Set a live entry's expiry and access time (``touch``); False if absent or expired."""

    def clear(self) -> Commit:
        """Remove every entry and every ``once`` claim."""

    def transaction(self) -> AbstractContextManager[None]:
        """Group the writes and reads of this thread into one atomic, isolated transaction; nested
        blocks are savepoints. Other writers wait. Rolled back if the block raises."""

    # -- housekeeping -----------------------------------------------------------------------------

    def write_atimes(self, batch: list[tuple[int, float]]) -> tuple[int, Commit]:
        """Store access times (id, time), each only if later than the stored one; how many."""

    def sweep(self, now: float, idle_cutoff: float | None, start_after: int, deadline: float,
              monotonic: Callable[[], float], alert: Callable[[Exception], None]) -> tuple[int, int | None]:
        """Remove entries past their expiry or not accessed since ``idle_cutoff``, in short writes,
        until ``deadline`` (on ``monotonic``); (removed, where to resume or None when done). A
        damaged entry is skipped and passed to ``alert``."""

    def take_lease(self, holder: str, now: float, seconds: float, days: float | None) -> bool:
        """Claim the store-wide maintenance lease (one sweeper at a time across processes)."""

    def release_lease(self, holder: str) -> None:
        """Give the lease up if ``holder`` has it."""

    def counts(self) -> tuple[int, int]:
        """(entries, index rows): unequal means damage that ``check(repair=True)`` fixes."""

    def check(self, decode_key: Callable[[bytes, bytes | None], Any], describe_keys: str,
              can_decode: Callable[[int, Any], bool], repair: bool, drop: bool,
              format_row: bytes) -> CheckReport:
        """Cross-check every entry and index; with ``repair`` fix structure, with ``drop`` delete
        entries that fail their checksum or ``can_decode``."""

    def format(self) -> bytes | None:
        """The stored format record (codec names, layout version), None if none is stored."""

    def set_format(self, record: bytes) -> bytes | None:
        """Store ``record`` if none is stored and the store is empty; returns the stored one."""

    def info(self) -> dict[str, int]:
        """Engine figures for ``stats()``: ``records_bytes``, ``bytes_on_disk`` and its own."""

    def sync(self) -> None:
        """Make deferred writes durable ('fast' durability)."""

    def close(self) -> None:
        """Release this handle (the store stays open while other handles in the process use it)."""


def live(expires: float, now: float) -> bool:
    """Whether an entry with expiry ``expires`` (0.0: never) is live at ``now``."""
    return not expires or expires > now

