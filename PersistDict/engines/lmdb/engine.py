"""The LMDB engine: the engine protocol (engines/base.py) over one shared LMDB environment.

Every write the mapping asks for is one transaction script here (``work(txn)``), run by
``_write``: the script only touches the database, since a write that outgrows the map is
aborted, the map grown and the script run again (see ``Storage.write``). The entry layer
(``entries``) composes the tables; slots, pages and transactions stay below this line.
The reads are reads.py's (LmdbReads).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..._accesses import PendingAccesses
from ..._codec.record import Record, record_length
from ...exceptions import AlreadyCalledError
from ..base import Bounds, CheckReport, Commit, Item, Loaded, live
from . import copies, entries
from .bounds import enforce_bounds, least_bytes
from .env import Storage
from .housekeeping import release_lease, sweep, try_take_lease
from .integrity import check_database
from .mutex import claim, drop_expired, unclaim
from .reads import LmdbReads
from .slots import Slots, read_as
from .txn import Txn

T = TypeVar("T")

CALLED = b"called"  # meta row: d(...) was called (until clear())
FORMAT = b"format"  # meta row: the store's format record


class LmdbEngine(LmdbReads):
    """One store's handle on the process-wide :class:`Storage` of its directory."""

    def __init__(self, path: str, durability: str, map_size: int, key_size_limit: int) -> None:
        self.storage = Storage.acquire(path, durability, map_size)
        self.feed = self.storage  # the meta-page clock and the change-log ring (see Storage)
        self.path = path
        self.durability = durability
        self.slots = Slots(key_size_limit)
        self.limit = key_size_limit  # lookups up to this long are their own slot: one get
        self.accesses = PendingAccesses()
        self._rng = random.Random()

    # -- writes ---------------------------------------------------------------------------------

    def _write(self, work: Callable[[Txn], T], savepoint: bool = False) -> tuple[T, Commit]:
        """Run ``work`` in a write transaction: its result and the commit (see Storage.write)."""
        storage = self.storage

        def run(txn: Txn) -> tuple[T, int, bool]:
            return work(txn), txn.id, txn.wrote

        tracked = storage.current_write_txn() is None  # not inside transaction()
        result, txn_id, wrote = storage.write(run, savepoint)
        return result, Commit(txn_id, wrote, tracked, [])

    def footprint(self, items: Sequence[Item]) -> int:
        """The fewest bytes of database pages ``items`` take in an otherwise empty store."""
        sizes = {item.lookup: (len(self.slots.slot(item.lookup)),
                               record_length(item.lookup, item.exact, item.payload)) for item in items}
        return least_bytes(list(sizes.values()), self.storage.page_size)

    def _evict(self, txn: Txn, bounds: Bounds, written: set[int]) -> list[bytes]:
        if bounds.max_items is None and bounds.max_bytes is None:
            return []
        return enforce_bounds(txn, bounds.max_items, bounds.max_bytes, written, self.accesses,
                              self.slots.hash_bytes, self._rng)

    def put(self, items: Sequence[Item], now: float, expires: float, bounds: Bounds,
            once: bytes | None = None) -> Commit:
        bounded = bounds.max_items is not None or bounds.max_bytes is not None
        put, slot_of, limit = entries.put, self.slots.slot, self.limit

        def work(txn: Txn) -> list[bytes]:
            if once is not None:
                if txn.meta(once) is not None:
                    raise AlreadyCalledError(
                        "The __call__ method of PersistDict can only be called once. Just like a regular dict."
                    )
                txn.put_meta(once, b"1")
            seqs = entries.SeqAllocator(txn)
            if not bounded:
                for lookup, exact, kind, payload in items:  # a lookup that fits is its own slot: no call
                    put(txn, seqs, lookup, exact, lookup if len(lookup) <= limit else slot_of(lookup), kind,
                        payload, now, expires)
                return []
            written = {put(txn, seqs, lookup, exact, lookup if len(lookup) <= limit else slot_of(lookup), kind,
                           payload, now, expires)[0] for lookup, exact, kind, payload in items}
            return self._evict(txn, bounds, written)

        evicted, commit = self._write(work, savepoint=bounded)  # eviction raises if the write cannot fit
        return commit._replace(evicted=evicted)

    def put_if_absent(self, item: Item, now: float, bounds: Bounds, refuse: BaseException | None = None
                      ) -> tuple[tuple[int, Any] | None, Commit]:
        lookup, exact, kind, payload = item
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> tuple[int, bytes] | list[bytes]:
            record = entries.find(txn, lookup, base).record
            if record is not None and live(record.expires, now):
                return record.kind, bytes(record.payload)
            if refuse is not None:
                raise refuse
            seq, _ = entries.put(txn, entries.SeqAllocator(txn), lookup, exact, base, kind, payload, now, 0.0)
            return self._evict(txn, bounds, {seq})  # put replaces an expired entry

        bounded = bounds.max_items is not None or bounds.max_bytes is not None
        outcome, commit = self._write(work, savepoint=bounded)
        if isinstance(outcome, list):  # stored: the entries evicted to make room
            return None, commit._replace(evicted=outcome)
        return outcome, commit

    def replace(self, item: Item, expected: Record | None, now: float, expires: float, bounds: Bounds,
                keep_key: bool = True) -> tuple[bool, Commit]:
        lookup, exact, kind, payload = item
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> list[bytes] | None:
            record = entries.find(txn, lookup, base).record
            current = record if record is not None and live(record.expires, now) else None
            if not (current is None if expected is None else current is not None and same_version(current, expected)):
                return None
            seq, _ = entries.put(txn, entries.SeqAllocator(txn), lookup, exact, base, kind, payload, now, expires,
                                 keep_key)
            return self._evict(txn, bounds, {seq})

        bounded = bounds.max_items is not None or bounds.max_bytes is not None
        evicted, commit = self._write(work, savepoint=bounded)
        return (False, commit) if evicted is None else (True, commit._replace(evicted=evicted))

    def remove(self, lookup: bytes, now: float, expected: Record | None = None) -> tuple[Record | None, Commit]:
        """Remove the entry; returns its record if it was live (and, given ``expected``, still that
        version). CorruptedRecordError if its slot holds another key's record: nothing removed."""
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> Record | None:
            found = entries.find(txn, lookup, base)
            record = found.record
            if record is None or (expected is not None and not same_version(record, expected)):
                return None
            removed = entries.remove(txn, found, base)
            return removed if live(removed.expires, now) else None

        return self._write(work)

    def remove_at(self, where: bytes, expected: Record) -> tuple[Record | None, bytes, Commit]:
        """Remove the entry ``newest`` found at ``where`` if it is still that version: its record,
        the lookup it is read by, the commit."""

        def work(txn: Txn) -> Record | None:
            current = entries.record_at_or_none(txn, where)  # by slot: a misplaced record is removed too
            if current is None or not same_version(current, expected):
                return None
            return entries.remove_slot(txn, where, self.slots.hash_bytes)

        removed, commit = self._write(work)
        return removed, read_as(where, expected.lookup), commit

    def retime(self, lookup: bytes, now: float, expires: float) -> tuple[bool, Commit]:
        base = self.slots.slot(lookup)

        def work(txn: Txn) -> bool:
            found = entries.find(txn, lookup, base)
            record = found.record
            if record is None or not live(record.expires, now):
                return False
            entries.set_expiry(txn, found, expires, now)
            txn.put_atime(record.seq, now)
            return True

        return self._write(work)

    def clear(self) -> Commit:
        def work(txn: Txn) -> None:
            txn.clear_all()
            txn.delete_meta(CALLED)

        return self._write(work)[1]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.storage.transaction():
            yield

    # -- housekeeping ---------------------------------------------------------------------------

    def write_atimes(self, batch: list[tuple[int, float]]) -> tuple[int, Commit]:
        return self._write(lambda txn: txn.raise_atimes(batch))

    def sweep(self, now: float, idle_cutoff: float | None, start_after: int, deadline: float,
              monotonic: Callable[[], float], alert: Callable[[Exception], None]) -> tuple[int, int | None]:
        if not start_after:  # once per pass: the named locks whose holders' time ran out
            drop_expired(self.storage, now)
        return sweep(self.storage, self.slots.hash_bytes, now, idle_cutoff, self.accesses, start_after,
                     deadline, monotonic, alert)

    def take_lease(self, holder: str, now: float, seconds: float, days: float | None) -> bool:
        return try_take_lease(self.storage, holder, now, seconds, days)

    def release_lease(self, holder: str) -> None:
        release_lease(self.storage, holder)

    def claim(self, name: bytes, holder: bytes, now: float, until: float) -> bool:
        return claim(self.storage, name, holder, now, until)

    def unclaim(self, name: bytes, holder: bytes) -> bool:
        return unclaim(self.storage, name, holder)

    def check(self, keys: Any, can_decode: Callable[[Record], bool], repair: bool, drop: bool,
              format_row: bytes, progress: Callable[[int, int], Any] | None = None) -> CheckReport:
        return check_database(self.storage, keys, self.slots, can_decode, repair, drop, format_row, progress)

    def setting(self, name: bytes) -> bytes | None:
        with self.storage.reading() as txn:
            return txn.meta(name)

    def put_setting(self, name: bytes, value: bytes, expected: bytes | None) -> bool:
        def work(txn: Txn) -> bool:
            if txn.meta(name) != expected:
                return False
            txn.put_meta(name, value)
            return True

        return self.storage.write(work)

    def format(self, wanted: bytes) -> bytes | None:
        """The stored format record; ``wanted`` is stored first if there is none and the store is
        empty (then None). A store that holds entries but no record stays without one."""
        storage = self.storage

        def work(txn: Txn) -> bytes | None:
            stored = txn.meta(FORMAT)
            if stored is None and txn.count() == 0:
                txn.put_meta(FORMAT, wanted)
                return None
            return stored

        with storage.reading() as txn:
            raw = txn.meta(FORMAT)
        stored = storage.write(work) if raw is None else raw
        storage.mark_initialised()
        return stored

    # -- operations -------------------------------------------------------------------------------

    def entries_after(self, start_after: int, limit: int, now: float) -> list[tuple[Record, float]]:
        found: list[tuple[Record, float]] = []
        pending = self.accesses
        with self.storage.reading() as txn:
            for entry in entries.iter_order(txn, start_after=start_after):
                if len(found) >= limit:
                    break
                if not live(entry.expires, now):
                    continue
                record = entries.record_at(txn, entry.slot)
                atime = max(entries.atime_of(txn, record), pending.get(record.seq, 0.0))
                found.append((record._replace(payload=bytes(record.payload)), atime))
        return found

    def load(self, batch: Sequence[Loaded], now: float, bounds: Bounds) -> Commit:
        slot_of = self.slots.slot

        def work(txn: Txn) -> list[bytes]:
            seqs = entries.SeqAllocator(txn)
            written = {entries.load(txn, seqs, item, slot_of(item.item.lookup), now) for item in batch}
            return self._evict(txn, bounds, written)

        evicted, commit = self._write(work, savepoint=True)
        return commit._replace(evicted=evicted)

    def backup(self, dest: str, compact: bool, progress: Callable[[int, int], Any] | None) -> bool:
        copies.backup(self.storage, dest, compact, progress)
        return True

    def compact(self, progress: Callable[[int, int], Any] | None) -> tuple[int, int]:
        return copies.compact(self.storage, progress)

    def info(self) -> dict[str, int]:
        with self.storage.reading() as txn:
            records_bytes = txn.records_bytes()
        info = self.storage.info()
        return {"records_bytes": records_bytes, "bytes_on_disk": self.storage.file_size(),
                "map_size": info["map_size"], "readers_in_use": info["readers_in_use"]}

    def sync(self) -> None:
        self.storage.sync()

    def close(self) -> None:
        self.storage.release()


def same_version(record: Record, expected: Record) -> bool:
    """Whether ``record`` is still the version of its entry that ``expected`` was read as."""
    return (record.seq == expected.seq and record.mtime == expected.mtime and record.expires == expected.expires
            and record.kind == expected.kind and record.payload == expected.payload)
