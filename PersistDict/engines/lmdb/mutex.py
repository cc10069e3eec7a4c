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
