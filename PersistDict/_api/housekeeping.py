"""The mapping's housekeeping: the atime flush, expiry, a maintenance pass, check and stats.
What runs them when is _maintenance.py's."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from loguru import logger

from ..engines.base import CheckReport
from .options import check_number, encode_format
from .state import StoreState, typechecked

_PROGRESS_SECONDS = 0.2  # expire(progress=...) reports at least this often


class Housekeeping(StoreState):
    """flush_atimes, check, expire, run_maintenance, stats."""

    @typechecked
    def flush_atimes(self, batch: int = 500) -> int:
        """Write the access times kept in memory; returns how many were written.

        Written in transactions of ``batch`` entries so writers never wait long,
        and our own front cache stays valid (access times change no value).
        Python work between two LMDB calls stays short: a background thread that
        holds the GIL makes every foreground read wait for it (up to 5 ms each time).
        """
        check_number("batch", batch, "a positive count of entries")
        self._hand_over_hits()
        if self._closed:
            return 0
        return sum(self._write_atimes(chunk) for chunk in self._touched.drain(batch))

    def _write_atimes(self, chunk: list[tuple[int, float]]) -> int:
        count, commit = self._engine.write_atimes(chunk)
        self._after_commit([], commit)
        time.sleep(0)
        return count

    @typechecked
    def check(self, repair: bool = False, drop_unreadable: bool = False, *,
              progress: Callable[[int, int], Any] | None = None) -> CheckReport:
        """Cross-check the database; with ``repair`` fix structural problems.

        Entries that fail their checksum or that the current value codec cannot
        decode are reported, and deleted only with ``drop_unreadable=True``.
        ``progress(done, total)``: entries checked.
        """
        values = self._values
        report = self._check_open().check(self._keys, lambda record: values.can_decode(record.kind, record.payload),
                                          repair, drop_unreadable,
                                          encode_format(self._format()), progress)
        if repair or drop_unreadable:
            with self._lock:
                if self._front is not None:
                    self._front.clear()
        self._log("check: {}", report)
        return report

    @typechecked
    def expire(self, *, progress: Callable[[int, int], Any] | None = None) -> int:
        """Remove entries past their TTL or unused for ``expiration_days``, now; returns how many.
        ``progress(done, total)``: how far the scan is, in entry ids (insertion order)."""
        if progress is None:
            return self._sweep(start_after=0, deadline=float("inf"))[0]
        newest = self._check_open().newest(self._clock())
        total = newest[0].seq if newest is not None else 0
        removed, resume = 0, 0  # type: int, int | None
        while True:  # short sweeps, so that progress is told between them
            count, resume = self._sweep(resume or 0, time.monotonic() + _PROGRESS_SECONDS)
            removed += count
            if resume is None:
                progress(total, total)
                return removed
            progress(min(resume, total), max(resume, total))

    def _sweep(self, start_after: int, deadline: float) -> tuple[int, int | None]:
        engine = self._check_open()
        now = self._clock()
        cutoff = now - self.expiration_days * 86400 if self.expiration_days else None
        self._hand_over_hits()
        removed, resume = engine.sweep(now, cutoff, start_after, deadline, time.monotonic, self._alert)
        if removed:
            self.counters["expired"] += removed
            self._log("expired {} entries", removed)
        return removed, resume

    def _alert(self, problem: Exception) -> None:
        """A damaged row a maintenance pass skipped: count it and warn; the pass goes on without it."""
        self.counters["integrity_alerts"] += 1
        logger.warning("[{}] maintenance skipped a damaged row: {}", self.name, problem)

    def run_maintenance(self) -> None:
        """One maintenance pass: flush access times; if this process holds the lease, check that
        records and order rows agree (O(1)) and expire entries (within ``background_timeout``,
        resuming where the last pass stopped); sync in 'fast' mode."""
        self.flush_atimes()
        maintenance = self._maintenance
        engine = self._check_open()
        if engine.take_lease(maintenance.holder, self._clock(), maintenance.lease_seconds,
                             self.expiration_days or None):
            records, rows = engine.counts()
            if records != rows:  # the full check reads every record: only point to it
                self.counters["integrity_alerts"] += 1
                message = (f"database {self.path!r} has {records} records but {rows} order rows: "
                           "run check(repair=True)")
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning("[{}] {}", self.name, message)
            _, maintenance.resume_after = self._sweep(maintenance.resume_after or 0,
                                                      time.monotonic() + maintenance.timeout)
        if self._settings["durability"] == "fast":
            engine.sync()

    def stats(self) -> dict[str, int]:
        """Counters of this instance and figures of the database."""
        engine = self._check_open()
        with self._lock:
            front = self._front
            counters = dict(self.counters, hits=self._hits, misses=self._misses)
            front_hits = front.hits if front is not None else 0
            cached = (len(front), front.bytes_used) if front is not None else (0, 0)
        entries = engine.count()
        info = engine.info()
        counters["hits"] += front_hits
        return {
            **counters,
            "front_cache_hits": front_hits,
            "front_cache_entries": cached[0],
            "front_cache_bytes": cached[1],
            "entries": entries,
            **info,
        }
