"""The in-memory engine's housekeeping (access times, sweeps, leases, named mutexes, check,
settings) and operations (export batches, import, backup, compaction): the part of
memory.py's MemoryEngine that runs beside the mapping's reads and writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._codec.record import Record
from .base import Bounds, CheckReport, Commit, Loaded, live


class MemoryHousekeeping:
    """Mixed into MemoryEngine (memory.py), whose tables and undo log it uses."""

    if TYPE_CHECKING:  # MemoryEngine's
        records: dict[bytes, Record]
        order: dict[int, bytes]
        atimes: dict[int, float]
        claims: dict[bytes, tuple[bytes, float]]
        meta: dict[bytes, bytes]
        records_bytes: int
        _lock: Any
        _next_id: int

        def _writing(self, savepoint: bool = True) -> Any: ...
        def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None: ...
        def _delete(self, table: dict[Any, Any], key: Any) -> None: ...
        def _remove(self, record: Record) -> None: ...
        def _put_record(self, record: Record) -> None: ...
        def _new_entry(self, lookup: bytes) -> int: ...
        def _evict(self, bounds: Bounds, protected: set[int]) -> list[bytes]: ...
        def _last_access(self, record: Record) -> float: ...

    # -- housekeeping --------------------------------------------------------------------------------

    def write_atimes(self, batch: list[tuple[int, float]]) -> tuple[int, Commit]:
        count = 0
        with self._writing() as out:
            for seq, when in batch:
                if seq in self.order and self.atimes.get(seq, -1.0) < when:
                    self._set(self.atimes, seq, when)
                    count += 1
        return count, out[0]

    def sweep(self, now: float, idle_cutoff: float | None, start_after: int, deadline: float,
              monotonic: Callable[[], float], alert: Callable[[Exception], None]) -> tuple[int, int | None]:
        removed = 0
        with self._lock:  # the named locks whose holders' time ran out (a dead holder leaves its claim)
            for name, (_, until) in list(self.claims.items()):
                if until <= now:
                    del self.claims[name]
        with self._writing():
            for seq, lookup in list(self.order.items()):
                if seq <= start_after:
                    continue
                record = self.records[lookup]
                if (record.expires and record.expires <= now) or (
                        idle_cutoff is not None and self._last_access(record) < idle_cutoff):
                    self._remove(record)
                    removed += 1
        return removed, None

    def take_lease(self, holder: str, now: float, seconds: float, days: float | None) -> bool:
        return True  # one process, one store per instance: nobody to share the sweeping with

    def release_lease(self, holder: str) -> None:
        pass

    def claim(self, name: bytes, holder: bytes, now: float, until: float) -> bool:
        with self._lock:
            current = self.claims.get(name)
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self.claims[name] = (holder, until)
            return True

    def unclaim(self, name: bytes, holder: bytes) -> bool:
        with self._lock:
            current = self.claims.get(name)
            if current is None or current[0] != holder:
                return False
            del self.claims[name]
            return True

    def check(self, keys: Any, can_decode: Callable[[Record], bool], repair: bool, drop: bool,
              format_row: bytes, progress: Callable[[int, int], Any] | None = None) -> CheckReport:
        report = CheckReport()
        with self._writing():
            records = list(self.records.values())
            for record in records:
                report.entries += 1
                if progress is not None:
                    progress(report.entries, len(records))
                if can_decode(record):
                    continue
                report.note_undecodable(keys, record.lookup, record.exact)
                if drop:
                    self._remove(record)
                    report.dropped += 1
        if progress is not None:
            progress(report.entries, report.entries)
        return report

    def setting(self, name: bytes) -> bytes | None:
        with self._lock:
            return self.meta.get(name)

    def put_setting(self, name: bytes, value: bytes, expected: bytes | None) -> bool:
        with self._lock:
            if self.meta.get(name) != expected:
                return False
            self.meta[name] = value
            return True

    def format(self, wanted: bytes) -> bytes | None:
        with self._lock:
            stored = self.meta.get(b"format")
            if stored is None and not self.records:
                self.meta[b"format"] = wanted
            return stored

    # -- operations -----------------------------------------------------------------------------------

    def entries_after(self, start_after: int, limit: int, now: float) -> list[tuple[Record, float]]:
        found: list[tuple[Record, float]] = []
        with self._lock:
            for seq, lookup in self.order.items():  # in id order: ids only grow
                if seq <= start_after:
                    continue
                if len(found) >= limit:
                    break
                record = self.records[lookup]
                if live(record.expires, now):
                    found.append((record, self._last_access(record)))
        return found

    def load(self, batch: Sequence[Loaded], now: float, bounds: Bounds) -> Commit:
        with self._writing() as out:
            written = set()
            for (lookup, exact, kind, payload), ctime, mtime, atime, expires in batch:
                old = self.records.get(lookup)
                if old is not None and not live(old.expires, now):
                    self._remove(old)
                    old = None
                if old is None:
                    seq = self._new_entry(lookup)
                else:
                    seq, exact = old.seq, old.exact  # an overwrite keeps the first key object
                self._put_record(Record(seq, ctime, mtime, expires, kind, lookup, exact, payload))
                if atime > mtime:
                    self._set(self.atimes, seq, atime)
                else:
                    self._delete(self.atimes, seq)
                written.add(seq)
            evicted = self._evict(bounds, written)
        return out[0]._replace(evicted=evicted)

    def backup(self, dest: str, compact: bool, progress: Callable[[int, int], Any] | None) -> bool:
        return False  # nothing on disk to copy: the mapping writes the entries into a new store

    def compact(self, progress: Callable[[int, int], Any] | None) -> tuple[int, int]:
        if progress is not None:
            progress(0, 0)
        return 0, 0  # a deleted entry's memory is freed at once

    def info(self) -> dict[str, int]:
        # map_size and readers_in_use are the LMDB engine's figures: none here
        return {"records_bytes": self.records_bytes, "bytes_on_disk": 0, "map_size": 0, "readers_in_use": 0}
