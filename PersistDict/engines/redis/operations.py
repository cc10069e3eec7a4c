"""The Redis engine's prefix lookup, store-wide settings, check and operations (backup, export,
import, compaction): the part of RedisEngine that engine.py does not hold.

Redis keeps no files: ``backup`` answers False (the mapping then copies the entries one by one
into a new store on disk, engines/base.py), and ``compact`` has nothing to give back (the server
frees a deleted entry's memory at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..._codec.record import Record
from ..base import Bounds, CheckReport, Commit, Loaded
from .records import unpack_record

if TYPE_CHECKING:
    from ..._accesses import PendingAccesses

PREFIXED_SCRIPT = "prefixed"  # tests/_reads.py counts the records this script reads


def lex_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The ZRANGE ... BYLEX bounds of the members starting with ``prefix``: from the prefix itself
    up to (excluded) the first string after every one that starts with it."""
    if not prefix:
        return b"-", b"+"
    stem = prefix.rstrip(b"\xff")
    if not stem:  # only 0xff bytes: nothing sorts after their extensions
        return b"[" + prefix, b"+"
    return b"[" + prefix, b"(" + stem[:-1] + bytes((stem[-1] + 1,))


class RedisOperations:
    """prefixed, setting/put_setting, check, entries_after, load, backup, compact."""

    accesses: PendingAccesses
    feed: Any

    if TYPE_CHECKING:  # RedisEngine's
        def run_script(self, name: str, keys: Any, args: Any) -> Any: ...
        def command(self, *args: Any) -> Any: ...
        def _tables(self) -> list[bytes]: ...
        def _write(self, name: str, args: Sequence[Any]) -> list[Any]: ...
        def _pending(self, bounds: Bounds) -> list[Any]: ...
        def _limits(self, bounds: Bounds) -> list[int]: ...
        def _ordered(self, now: float) -> list[Record]: ...
        def counts(self) -> tuple[int, int]: ...
        def remove(self, lookup: bytes, now: float, expected: Record | None = None) -> tuple[Record | None, Commit]: ...

    # -- the prefix lookup ---------------------------------------------------------------------

    def prefixed(self, prefix: bytes, now: float) -> list[bytes]:
        """Live entries whose lookup starts with ``prefix``, by lookup (see the protocol): a range
        of the sorted index of lookups (the sorted set ``K``, every member at score 0, ordered by
        bytes), then only those records, all in one script (one snapshot)."""
        tables = self._tables()
        low, high = lex_range(prefix)
        clock, _read, *found = self.run_script(PREFIXED_SCRIPT, [tables[0], tables[5]], [low, high, repr(now)])
        self.feed.saw(int(clock))
        return found

    # -- settings ------------------------------------------------------------------------------

    def setting(self, name: bytes) -> bytes | None:
        return self.command("HGET", self._tables()[4], b"s:" + name)  # type: ignore[no-any-return]

    def put_setting(self, name: bytes, value: bytes, expected: bytes | None) -> bool:
        # a write script: it waits while another client's transaction() holds the namespace, whose
        # commit replaces the meta hash with the block's copy
        result = self._write("put_setting", [name, value, b"" if expected is None else expected,
                                             0 if expected is None else 1])
        return result[4] == b"1"

    # -- check ---------------------------------------------------------------------------------

    def check(self, keys: Any, can_decode: Callable[[Record], bool], repair: bool, drop: bool,
              format_row: bytes, progress: Callable[[int, int], Any] | None = None) -> CheckReport:
        report = CheckReport()
        records = self._ordered(float("-inf"))  # expired ones too: every stored entry
        total = len(records)
        for record in records:
            report.entries += 1
            if progress is not None and (report.entries % 500 == 0 or report.entries == total):
                progress(report.entries, total)
            if can_decode(record):
                continue
            report.note_undecodable(keys, record.lookup, record.exact)
            if drop and self.remove(record.lookup, float("-inf"), record)[1].wrote:
                report.dropped += 1
        if progress is not None:
            progress(report.entries, report.entries)
        records_count, rows = self.counts()
        if records_count != rows:
            report.orphan_order_rows = abs(records_count - rows)
        return report

    # -- operations ----------------------------------------------------------------------------

    def entries_after(self, start_after: int, limit: int, now: float) -> list[tuple[Record, float]]:
        tables = self._tables()
        flat = self.run_script("entries_after", tables[:3], [start_after, limit, repr(now)])
        pending = self.accesses
        out = []
        for at in range(0, len(flat), 3):
            record = unpack_record(flat[at], flat[at + 1])
            stored = float(flat[at + 2]) if flat[at + 2] else 0.0
            out.append((record, max(record.mtime, stored, pending.get(record.seq, 0.0))))
        return out

    def load(self, batch: Sequence[Loaded], now: float, bounds: Bounds) -> Commit:
        flat: list[Any] = []
        for (lookup, exact, kind, payload), ctime, mtime, atime, expires in batch:
            flat += (lookup, exact or b"", kind, payload, repr(ctime), repr(mtime), repr(atime), repr(expires))
        result = self._write("load", [repr(now), *self._limits(bounds), *self._pending(bounds), len(batch), *flat])
        return result[1]  # type: ignore[no-any-return]

    def backup(self, dest: str, compact: bool, progress: Callable[[int, int], Any] | None) -> bool:
        return False  # no files to copy: the mapping writes the entries into a new store on disk

    def compact(self, progress: Callable[[int, int], Any] | None) -> tuple[int, int]:
        if progress is not None:
            progress(0, 0)
        return 0, 0  # nothing to give back: Redis frees a deleted entry's memory at once
