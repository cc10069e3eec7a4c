"""Named mutexes (``PersistDict.lock``): one claim row per held name in the meta table,
``mutex:<name>`` -> ``<holder token>|<until>``, taken in one write transaction if absent, expired,
damaged or already the holder's (a renewal), and deleted only by its holder. Not entries: they
are not counted, listed or evicted, and ``clear()`` keeps them."""

from __future__ import annotations

import math

from .env import Storage
from .txn import Txn

PREFIX = b"mutex:"


def _holder(txn: Txn, row: bytes, now: float) -> bytes | None:
    """The token holding the claim row ``row`` at ``now``; None if free (absent, expired or damaged)."""
    value = txn.meta(row)
    if value is None:
        return None
    holder, _, until = bytes(value).rpartition(b"|")
    try:
        ends = float(until)
    except ValueError:
        return None  # a damaged row: free, the next claim rewrites it
    return holder if math.isfinite(ends) and ends > now else None


def claim(storage: Storage, name: bytes, holder: bytes, now: float, until: float) -> bool:
    """Take (or renew) the mutex ``name`` for ``holder`` until ``until``; False if another holds it."""
    row = PREFIX + name
    with storage.reading() as txn:  # a held mutex is refused without the writer lock (waiters poll)
        current = _holder(txn, row, now)
    if current is not None and current != holder:
        return False

    def work(txn: Txn) -> bool:
        current = _holder(txn, row, now)
        if current is not None and current != holder:
            return False
        txn.put_meta(row, holder + b"|" + repr(until).encode())
        return True

    return storage.write(work)


def drop_expired(storage: Storage, now: float) -> int:
    """Delete the claim rows whose time ran out (maintenance): a holder that died leaves its row,
    and the locks of get_or_set and memoize are named per key, so the rows would pile up. A holder
    whose time ran out has lost its claim anyway (its release() returns False either way)."""
    with storage.reading() as txn:  # no writer lock when nothing ran out
        stale = [row for row in txn.meta_names_under(PREFIX) if _holder(txn, row, now) is None]
    if not stale:
        return 0

    def work(txn: Txn) -> int:
        dropped = 0
        for row in stale:
            if txn.meta(row) is not None and _holder(txn, row, now) is None:  # not taken again meanwhile
                txn.delete_meta(row)
                dropped += 1
        return dropped

    return storage.write(work)


def unclaim(storage: Storage, name: bytes, holder: bytes) -> bool:
    """Free the mutex ``name`` if ``holder`` still holds it (expired included); whether it did."""
    row = PREFIX + name

    def work(txn: Txn) -> bool:
        value = txn.meta(row)
        if value is None or bytes(value).rpartition(b"|")[0] != holder:
            return False
        txn.delete_meta(row)
        return True

    return storage.write(work)
