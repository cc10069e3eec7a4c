"""Background maintenance: atime flushes, expiry, and syncing in 'fast' mode.

``background_thread=True`` runs it in a daemon thread (at open, then every
``maintenance_interval`` seconds; atimes every ``atime_flush_interval``);
``False`` runs one pass in the constructor; ``"disabled"`` runs nothing.
Work is done in short write transactions so foreground calls never wait long.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from ._core import PersistDict


class Maintenance:
    """Schedules the maintenance of one PersistDict instance."""

    def __init__(self, owner: PersistDict, mode: Any, timeout: float, interval: float,
                 atime_interval: float) -> None:
        self._owner = weakref.ref(owner)
        self.mode = mode
        self.timeout = timeout
        self.interval = interval
        self.atime_interval = atime_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.mode == "disabled":
            return
        if self.mode is False:
            owner = self._owner()
            if owner is not None:
                owner.run_maintenance()
            return
        self._thread = threading.Thread(target=self._loop, name="PersistDict-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.timeout + 5)
        self._thread = None

    def _loop(self) -> None:
        since_pass = self.interval  # run a full pass at open
        while not self._stop.is_set():
            owner = self._owner()
            if owner is None or owner.closed:
                return
            try:
                if since_pass >= self.interval:
                    owner.run_maintenance()
                    since_pass = 0.0
                else:
                    owner.flush_atimes()
            except Exception as exc:  # keep the thread alive; report once per failure
                logger.warning("[{}] maintenance pass failed: {!r}", owner.name, exc)
            del owner  # do not keep the instance alive while sleeping
            self._stop.wait(self.atime_interval)
            since_pass += self.atime_interval


def sweep(storage: Any, hash_bytes: int, now: float, atime_cutoff: float | None,
          touched: dict[int, float], deadline: float, clock: Any, batch: int = 256) -> int:
    """Remove entries whose TTL passed or whose atime is older than ``atime_cutoff``.

    Works through the order table in short write transactions of ``batch``
    rows, so writers in other threads and processes interleave. Stops at
    ``deadline``; returns how many entries it removed.
    """
    from . import _table
    from ._keys import is_hashed_slot

    removed = 0
    after = 0
    while clock() < deadline:
        def work(txn: Any) -> tuple[int, int | None]:
            count = 0
            last: int | None = None
            for n, entry in enumerate(_table.iter_order(txn, start_after=after)):
                if n >= batch:
                    break
                last = entry.seq
                expired = bool(entry.expires) and entry.expires <= now
                if not expired and atime_cutoff is not None:
                    atime = max(txn.atime(entry.seq) or 0.0, touched.get(entry.seq, 0.0))
                    expired = atime < atime_cutoff
                if expired:
                    slot = entry.slot
                    base = slot[: 1 + hash_bytes] if is_hashed_slot(slot) else slot
                    record = _table.record_at(txn, slot)
                    _table.remove(txn, _table.find(txn, record.lookup, base), base)
                    count += 1
            return count, last

        count, last = storage.write(work)
        removed += count
        if last is None:
            break
        after = last
    return removed
