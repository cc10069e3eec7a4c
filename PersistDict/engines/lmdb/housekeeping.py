"""Housekeeping of the stored entries: the expiry sweep and the maintenance lease.

The sweep removes entries past their TTL or idle for ``expiration_days`` in
short write transactions, so foreground writers interleave; the lease lets one
process at a time sweep. The scheduler that calls them is ``_maintenance``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

from loguru import logger

from . import entries
from ..._accesses import PendingAccesses
from .rows import damaged
from .env import Storage
from .txn import Txn
from .entries import TTL_FLAG, last_access
from ...exceptions import CorruptedRecordError
from ..base import LONGEST_LEASE


class _Unremovable(Exception):
    """An expired entry whose rows turned out damaged while it was being removed."""

    def __init__(self, seq: int, cause: CorruptedRecordError) -> None:
        super().__init__(seq)
        self.seq, self.cause = seq, cause


def sweep(storage: Storage, hash_bytes: int, now: float, atime_cutoff: float | None,
          touched: PendingAccesses, start_after: int, deadline: float,
          clock: Callable[[], float], alert: Callable[[Exception], None], chunk: int = 500) -> tuple[int, int | None]:
    """Remove entries past their TTL, or not accessed since ``atime_cutoff``.

    Scans the order table in read transactions of ``chunk`` rows and deletes
    what it found in a short write transaction per chunk, so other writers
    interleave. Stops at ``deadline``. Returns (removed, seq to resume after,
    or None once the whole table was scanned). An entry with a damaged row is
    left alone and passed to ``alert`` (once per sweep), and the sweep goes on.
    """
    alerted: set[str] = set()

    def skip(problem: CorruptedRecordError) -> None:
        if str(problem) not in alerted:
            alerted.add(str(problem))
            alert(problem)

    def expired(txn: Txn, seq: int, row: bytes) -> tuple[bool, float, bytes]:
        """(whether the entry of order row ``row`` is to go, its expiry time, its slot)."""
        expires, _, slot = entries.unpack_order(row, seq)
        return bool((expires and expires <= now) or (
            atime_cutoff is not None and last_access(txn, seq, slot, touched) < atime_cutoff)), expires, slot

    removed = 0
    after = start_after
    with storage.reading() as txn:
        ttl_writes = txn.meta(TTL_FLAG)
    if atime_cutoff is None and ttl_writes is None:
        return 0, None  # no entry may have a TTL: nothing to scan
    found_ttl = False
    while True:
        if clock() >= deadline:
            return removed, after
        time.sleep(0)  # let foreground threads take the GIL between chunks
        candidates: list[int] = []
        last: int | None = None
        damaged_keys: list[CorruptedRecordError] = []
        with storage.reading() as txn:
            for n, (seq, row) in enumerate(txn.iter_order(False, after, damaged_keys)):
                if n >= chunk:
                    break
                last = seq
                if row and row[0] and atime_cutoff is None:
                    continue  # plain row: no TTL, and no age limit to check
                try:
                    is_expired, expires, _ = expired(txn, seq, row)
                except CorruptedRecordError as exc:
                    skip(exc)
                    continue
                found_ttl = found_ttl or bool(expires)  # the flag goes only after a scan that sees none
                if is_expired:
                    candidates.append(seq)
        for exc in damaged_keys:
            skip(exc)

        def work(txn: Txn, candidates: list[int] = candidates) -> int:
            count = 0
            for seq in candidates:  # check again: another process may have changed it
                row = txn.order_row(seq)
                if row is None:
                    continue
                try:  # the entry's current slot: removing a chain neighbour may have moved it
                    is_expired, _, slot = expired(txn, seq, row)
                    if is_expired:
                        count += entries.remove_slot(txn, slot, hash_bytes) is not None
                except CorruptedRecordError as exc:  # undo this chunk (a removal may be half done): again without it
                    raise _Unremovable(seq, exc) from exc
            return count

        while candidates:
            try:
                removed += storage.write(work, savepoint=True)
                break
            except _Unremovable as exc:
                candidates.remove(exc.seq)
                skip(exc.cause)
        if last is None:
            if start_after == 0 and not found_ttl and ttl_writes is not None:
                storage.write(lambda txn: _clear_ttl_flag(txn, ttl_writes))
            return removed, None
        after = last


def _clear_ttl_flag(txn: Txn, seen: bytes) -> None:
    """A full scan found no live TTL: later passes may skip it, unless a TTL was written meanwhile."""
    if txn.meta(TTL_FLAG) == seen:
        txn.delete_meta(TTL_FLAG)


class _Lease(NamedTuple):
    holder: str
    until: float
    expiration_days: float | None  # the holder's: its sweeps remove entries unused for this long


def read_lease(txn: Txn) -> _Lease | None:
    """The lease, None if nobody holds it; CorruptedRecordError if its row is damaged."""
    # "holder#days|until": the days inside the holder part, which readers before them compared whole
    value = txn.meta(LEASE)
    return None if value is None else parse_lease(value)


def parse_lease(value: bytes) -> _Lease:
    try:
        owner, _, until = value.decode().rpartition("|")
        holder, tagged, days = owner.partition("#")
        # written by a version that did not record its setting (no "#"): never taken over as laxer
        lease = _Lease(holder, float(until), (float(days) if days else None) if tagged else 0.0)
    except ValueError:  # UnicodeDecodeError included
        lease = None
    if lease is None or not math.isfinite(lease.until) or not (
            lease.expiration_days is None or 0 <= lease.expiration_days < math.inf):
        raise damaged("meta", LEASE, "not a maintenance lease")
    return lease


def _lease_or_free(txn: Txn, warn: bool) -> _Lease | None:
    """The lease, or None if nobody holds it or its row is damaged (which the next holder replaces)."""
    try:
        return read_lease(txn)
    except CorruptedRecordError as exc:
        if warn:
            logger.warning("{}: taken over", exc)
        return None


def _stricter(ours: float | None, theirs: float | None) -> bool:
    """Whether a sweep with ``ours`` expiration_days removes entries that one with ``theirs`` keeps."""
    return ours is not None and (theirs is None or ours < theirs)


def try_take_lease(storage: Storage, holder: str, now: float, duration: float,
                   expiration_days: float | None = None) -> bool:
    """Claim the database-wide maintenance lease, so one process at a time sweeps.

    A holder renews it only once half of it has run out: every commit costs an
    fsync and a check in the other processes' front caches, so maintenance writes as little as it can.
    An instance whose ``expiration_days`` is stricter than the holder's takes the lease over:
    instances that disagree sweep with the strictest setting among them, not with whoever came first.
    A lease that ends later than any lease taken now could (``LONGEST_LEASE`` plus ``CLOCK_SLACK``)
    was taken by a process whose clock ran ahead: it is taken over, or expiry would stop until then.
    """
    def free_for_us(lease: _Lease | None) -> bool:
        return (lease is None or lease.holder == holder or lease.until <= now
                or lease.until > now + LONGEST_LEASE + CLOCK_SLACK
                or _stricter(expiration_days, lease.expiration_days))

    with storage.reading() as txn:
        lease = _lease_or_free(txn, False)
    if lease is not None and lease.holder == holder and lease.until - now > duration / 2:
        return True
    if not free_for_us(lease):
        return False

    def work(txn: Txn) -> bool:
        if not free_for_us(_lease_or_free(txn, True)):  # again: another process may have taken it meanwhile
            return False
        days = "" if expiration_days is None else repr(float(expiration_days))
        txn.put_meta(LEASE, f"{holder}#{days}|{now + duration}".encode())
        return True

    return storage.write(work)


def release_lease(storage: Storage, holder: str) -> None:
    """Give the lease up (at close), so the next instance to open sweeps at once with its own settings."""
    with storage.reading() as txn:
        lease = _lease_or_free(txn, False)
    if lease is None or lease.holder != holder:
        return

    def work(txn: Txn) -> None:
        lease = _lease_or_free(txn, False)
        if lease is not None and lease.holder == holder:
            txn.delete_meta(LEASE)

    storage.write(work)


LEASE = b"maintenance_lease"
# A lease ending later than now + LONGEST_LEASE (base.py) + CLOCK_SLACK comes from a clock that
# ran ahead; CLOCK_SLACK allows for clocks of one host that disagree a little.
CLOCK_SLACK = 60.0
