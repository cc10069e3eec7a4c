"""Operating a store: backup and restore, export and import (JSON lines, _api/jsonlines.py) and
compaction. The copies of files are the engine's (``Engine.backup``, ``Engine.compact``); what is
written entry by entry (export, import, the backup of an engine without files) is here, in
batches of ``BATCH`` entries, so memory stays bounded whatever the store's size."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from . import jsonlines, lifecycle
from .options import encode_format, stored_format
from .._redact import describe
from ..engines.base import Item, Loaded, StoredEntry
from ..engines.registry import MEMORY, is_redis, restore_store, store_path
from ..exceptions import CodecMismatchError, DestinationNotEmptyError, ExportFormatError, TransactionError
from .state import StoreState, typechecked

Progress = Callable[[int, int], Any] | None
TextFile = Any  # a text file (io.TextIOBase, typing.IO[str]...): checked by _opened, not by the type
BATCH = 500  # entries read or written per engine call
BATCH_BYTES = 8 << 20  # ... or fewer, once their payloads reach this
SERVER_OPTIONS = ("namespace", "strict_reads")  # a Redis store's: not options of the copy on disk


class Operations(StoreState):
    """backup, restore, export, import_from, compact."""

    def _refuse_in_transaction(self, what: str) -> None:
        if self._feed.in_transaction():
            raise TransactionError(f"{what} inside transaction(): leave the block first")

    # -- backup and restore -----------------------------------------------------------------------

    @typechecked
    def backup(self, dest: str | os.PathLike[str], *, compact: bool = True, progress: Progress = None) -> None:
        """Copy the store into ``dest`` (a new or empty directory) as one consistent snapshot, while
        other threads and processes go on reading and writing. The copy opens as a store of its own
        (``PersistDict(dest)`` with the same codecs): entries, order, times and TTLs. ``compact``:
        leave out the free pages (a smaller copy, written a little slower). ``progress(done,
        total)``: bytes written (entries for ``':memory:'``, whose copy is written entry by entry)."""
        engine = self._check_open()
        self._refuse_in_transaction("backup()")
        target = os.path.abspath(os.fspath(dest))
        if self.path != MEMORY and (target == self.path or target.startswith(self.path + os.sep)):
            raise ValueError(f"backup destination {target!r} is inside the store it copies")
        self.flush_atimes()  # the copy carries the reads made so far
        if not engine.backup(target, compact, progress):
            self._backup_entries(target, progress)

    def _backup_entries(self, target: str, progress: Progress) -> None:
        if os.path.isdir(target) and os.listdir(target):
            raise DestinationNotEmptyError(f"backup destination {target!r} is not empty: "
                                                         "give a new or empty directory")
        total = len(self)
        done = 0
        settings = {name: value for name, value in self._settings.items() if name not in SERVER_OPTIONS}
        with type(self)(target, **settings) as copy:  # type: ignore[call-arg,attr-defined]
            for batch in self._stored_batches():
                copy._load([Loaded(Item(record.lookup, record.exact, record.kind, bytes(record.payload)),
                                   record.ctime, record.mtime, atime, record.expires) for record, atime in batch])
                done += len(batch)
                if progress is not None:
                    progress(done, max(done, total))
        if progress is not None:
            progress(done, done)

    @classmethod
    def restore(cls, backup: str | os.PathLike[str], path: str | os.PathLike[str], *, overwrite: bool = False,
                progress: Progress = None) -> None:
        """Put the backup at ``backup`` (a directory ``backup()`` wrote, or a closed store) in place
        of the store at ``path``. Refused (StoreInUseError) while any process, this one included,
        has that store open, and (DestinationNotEmptyError) when it holds entries, unless
        ``overwrite``. ``progress(done, total)``: bytes written."""
        target = store_path(path)
        if target == MEMORY:
            raise ValueError("cannot restore into ':memory:': open the backup itself, or restore it into a directory")
        if is_redis(target):  # the URL is not repeated: it may carry a password
            raise ValueError("cannot restore into a Redis store: restore() replaces a store's files; to fill a "
                             "Redis namespace, export() the backup and import_from() that file")
        source = os.path.abspath(os.fspath(backup))
        if source == target:
            raise ValueError(f"restore of {source!r} into itself")
        restore_store(source, target, overwrite, progress)

    # -- what a store is -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What the store is (the ``persistdict info`` command): its path, engine, format record
        (layout version, key encoding, the value codec it was written with) and figures."""
        engine = self._check_open()
        stored, _ = stored_format(engine.format(encode_format(self._format())))
        record = stored or self._format()
        return {"path": self.path, "engine": _engine_name(self.path),
                "format": record.get("format"), "keys": record.get("keys"),
                "key_size_limit": record.get("key_size_limit"), "values": record.get("values"),
                "opened_with_values": self._values.description, "entries": len(self), **engine.info()}

    # -- compaction -----------------------------------------------------------------------------

    @typechecked
    def compact(self, *, progress: Progress = None) -> dict[str, int]:
        """Give the space of deleted entries back to the file system: the data file is replaced by
        a compact copy. LMDB cannot swap the file under another process that has it mapped, so this
        is refused (StoreInUseError) while another process has the store open; this process's other
        threads wait meanwhile, so no write is lost. Returns ``{"bytes_before": ..., "bytes_after": ...}``;
        ``progress(done, total)``: bytes written."""
        engine = self._check_open()
        self._refuse_in_transaction("compact()")
        self.flush_atimes()
        before, after = engine.compact(progress)
        # The copy's commit clock starts again: a front cache valid at a clock the store reaches again
        # would be taken as current. Empty every cache of this store in this process.
        for store in lifecycle.stores_at(self.path):
            front = getattr(store, "_front", None)
            if front is not None:
                with store._lock:  # type: ignore[attr-defined]
                    front.clear()
        self._log("compacted: {} -> {} bytes", before, after)
        return {"bytes_before": before, "bytes_after": after}

    # -- export and import ------------------------------------------------------------------------

    def _stored_batches(self) -> Iterator[list[tuple[StoredEntry, float]]]:
        """The live entries in insertion order with their access times, a batch (one snapshot) at a time."""
        engine = self._check_open()
        after = 0
        while True:
            batch = engine.entries_after(after, BATCH, self._clock())
            if not batch:
                return
            yield batch
            after = batch[-1][0].seq

    @typechecked
    def export(self, file: str | os.PathLike[str] | TextFile, *, progress: Progress = None) -> int:
        """Write every live entry, in insertion order, with its times and TTL, as JSON lines (the
        format is in the README, "Export and import") to ``file`` (a path or a text file); returns
        how many. Streams: a batch of entries at a time, each batch one snapshot (an entry written
        meanwhile may or may not be in the file). ``progress(done, total)``: entries."""
        self._check_open()
        total = len(self)
        keys, values = self._keys, self._values
        done = 0
        with _opened(file, "w") as out:
            out.write(jsonlines.header(keys.description, values.description, total) + "\n")
            for batch in self._stored_batches():
                lines = []
                for record, atime in batch:
                    key = keys.decode(record.lookup, record.exact)
                    try:
                        value, readable = values.decode(record.kind, record.payload, key), True
                    except Exception:  # noqa: BLE001 - carried as stored, in the store's own codec
                        value, readable = None, False
                    lines.append(jsonlines.entry_line(
                        jsonlines.encode_key(key, record.exact or record.lookup),
                        jsonlines.encode_value(value, readable, record.kind, bytes(record.payload)),
                        record.ctime, record.mtime, atime, record.expires))
                out.write("\n".join(lines) + "\n")
                done += len(batch)
                if progress is not None:
                    progress(done, max(done, total))
        if progress is not None:
            progress(done, done)
        return done

    @typechecked
    def import_from(self, file: str | os.PathLike[str] | TextFile, *, progress: Progress = None) -> int:
        """Store the entries of an export (``export``) with their times and TTLs; returns how many.
        A key not in the store goes last, in the file's order; a key present keeps its place and
        takes the file's value and times. Entries already expired are skipped. The whole file is
        checked first (ExportFormatError naming the line, nothing written) when it can be read
        twice (a path or a seekable file); then it is written a batch at a time.
        ``progress(done, total)``: entries."""
        self._check_open()
        self._refuse_in_transaction("import_from()")
        with _opened(file, "r") as source:
            start = source.tell() if source.seekable() else None
            if start is not None:
                for _ in self._parsed(source, file):
                    pass
                source.seek(start)
            total = 0
            done = 0
            batch: list[Loaded] = []
            size = 0
            for total, loaded in self._parsed(source, file):
                if loaded is None:
                    continue
                batch.append(loaded)
                size += len(loaded.item.payload)
                if len(batch) >= BATCH or size >= BATCH_BYTES:
                    done += self._load(batch)
                    batch, size = [], 0
                    if progress is not None:
                        progress(done, max(done, total))
            if batch:
                done += self._load(batch)
        if progress is not None:
            progress(done, done)
        return done

    def _parsed(self, source: IO[str], file: Any) -> Iterator[tuple[int, Loaded | None]]:
        """(entries the header announces, each entry ready to load, None if expired) of an export."""
        name = file if isinstance(file, (str, os.PathLike)) else getattr(file, "name", "export")
        first = source.readline()
        head = jsonlines.check_header(first, f"{os.fspath(name)!s}: line 1")
        announced = head.get("entries")
        total: int = announced if type(announced) is int else 0
        same_keys = head.get("keys") == self._keys.description
        same_values = head.get("values") == self._values.description
        now = self._clock()
        for number, line in enumerate(source, 2):
            if not line.strip():
                continue
            where = f"{os.fspath(name)!s}: line {number}"
            (key_form, key), (value_form, value), ctime, mtime, atime, expires = jsonlines.parse_line(line, where)
            if key_form == "key":
                if not same_keys:
                    raise CodecMismatchError(f"{where}: a key in key encoding {head.get('keys')!r}; this store "
                                             f"uses {self._keys.description!r}")
                try:
                    key = self._keys.decode(key, None)
                except Exception as exc:  # noqa: BLE001 - a damaged line
                    raise ExportFormatError(f"{where}: a $key this key codec cannot decode ({describe(exc)})") from None
            if value_form == "stored":
                if not same_values:
                    raise CodecMismatchError(f"{where}: a value stored with codec {head.get('values')!r}; this "
                                             f"store uses {self._values.description!r}")
                kind, payload = value
            else:
                try:
                    kind, payload = self._encode_value(value)
                except Exception as exc:
                    # described, never chained: a codec's own exception can quote the value
                    raise ExportFormatError(f"{where}: this store's value codec cannot take the value "
                                            f"({describe(exc)})") from None
            lookup, exact = self._keys.encode(key)
            if expires and expires <= now:
                yield total, None
                continue
            yield total, Loaded(Item(lookup, exact, kind, payload), ctime, mtime, atime, expires)

    def _load(self, batch: list[Loaded]) -> int:
        engine = self._check_open()
        commit = engine.load(batch, self._clock(), self._write_bounds())
        self.counters["sets"] += len(batch)
        if commit.evicted:
            self.counters["evicted"] += len(commit.evicted)
        self._after_commit([loaded.item.lookup for loaded in batch] + commit.evicted, commit)
        return len(batch)


def _engine_name(path: str) -> str:
    return "memory" if path == MEMORY else "redis" if is_redis(path) else "lmdb"


@contextmanager
def _opened(file: Any, mode: str) -> Iterator[IO[str]]:
    """``file`` itself if it is a file, else the file at that path (closed after)."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, mode, encoding="utf-8", newline="\n" if mode == "w" else None) as handle:
            yield handle
        return
    needed = "write" if mode == "w" else "readline"
    if not callable(getattr(file, needed, None)) or isinstance(file, (io.RawIOBase, io.BufferedIOBase)):
        raise TypeError(f"expected a path or a text file, not {type(file).__name__!r}")
    yield file

