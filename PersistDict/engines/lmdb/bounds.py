"""Size bounds: evict least-recently-used entries when max_items or max_bytes is exceeded.

Eviction runs inside the writing transaction, so the bound holds when the
write returns. The entries just written are never candidates: a write whose own
entries do not fit raises ValueError and is undone (callers refuse what they
can before the transaction, with ``least_bytes``). Finding the exact LRU entry
would need an index rewritten on every read; instead each eviction samples
``SAMPLES`` random entries (by insertion seq) and removes the one with the
oldest atime, like Redis' approximated LRU. The cost per write is
O(SAMPLES * log n), independent of the store size in practice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from . import entries
from ..._accesses import PendingAccesses
from .slots import read_as
from .txn import Txn
from ...exceptions import CorruptedRecordError

SAMPLES = 16
_PAGE_HEADER = 16  # bytes of an LMDB page header
_NODE_HEADER = 8  # bytes of an LMDB leaf node header, before its key


def least_bytes(entries: list[tuple[int, int]], page_size: int) -> int:
    """The fewest bytes of records pages that entries of (LMDB key length, record length) can
    take in a table holding nothing else: what ``max_bytes`` must allow for one write to fit.

    LMDB puts a node larger than about half a page (key, record and 10 bytes of headers) on
    overflow pages of its own, and keeps a pointer to them in a leaf page.
    """
    node_max = (((page_size - _PAGE_HEADER) // 2) & ~1) - 2  # LMDB's me_nodemax
    overflow_pages = 0
    leaf_bytes = 0
    for key_len, record_len in entries:
        if _NODE_HEADER + key_len + record_len > node_max:
            overflow_pages += -(-(record_len + _PAGE_HEADER) // page_size)
            leaf_bytes += _NODE_HEADER + key_len + 8 + 2  # the node points to its first overflow page
        else:
            leaf_bytes += _NODE_HEADER + key_len + record_len + 2  # and its 2-byte index in the page
    leaf_pages = max(1, -(-leaf_bytes // (page_size - _PAGE_HEADER)))
    return (overflow_pages + leaf_pages) * page_size


def enforce_bounds(
    txn: Txn,
    max_items: int | None,
    max_bytes: int | None,
    protected: set[int],
    touched: PendingAccesses,
    hash_bytes: int,
    rng: random.Random,
) -> list[bytes]:
    """Evict until the bounds hold; returns the lookup encodings of the entries evicted."""
    evicted: list[bytes] = []
    compacted = False
    while (max_items is not None and txn.count() > max_items) or (
            max_bytes is not None and txn.records_bytes() > max_bytes):
        victim = _pick_victim(txn, protected, touched, rng)
        if victim is None and not compacted:
            # only this write's entries are left, on pages emptied around them (LMDB merges a
            # page only below a quarter full): written afresh they may fit
            txn.rewrite_records()
            compacted = True
            continue
        if victim is None:  # they do not fit: the caller undoes the write
            limits = (("max_items", max_items), ("max_bytes", max_bytes))
            bounds = " / ".join(f"{name}={value}" for name, value in limits if value is not None)
            raise ValueError(f"this write's entries alone take {txn.count()} entries and {txn.records_bytes()} "
                             f"bytes of database pages, more than {bounds}; it was not made")
        seq, slot = victim
        record = entries.remove_slot(txn, slot, hash_bytes)
        if record is None:  # an order row whose record is gone (damaged store): it would be picked forever
            txn.delete_order(seq)
            txn.delete_atime(seq)
        else:
            evicted.append(read_as(slot, record.lookup))
    return evicted


def _pick_victim(txn: Txn, protected: set[int], touched: PendingAccesses,
                 rng: random.Random) -> tuple[int, bytes] | None:
    """(seq, slot) of the least recently used unprotected entry (exact when small, sampled when large)."""
    if txn.count() > SAMPLES * 4:
        try:
            first, last = txn.seq_range()  # type: ignore[misc]
            sampled = [txn.order_row_at_or_after(rng.randint(first, last)) for _ in range(SAMPLES)]
        except CorruptedRecordError:  # an order key that is not a seq: the full scan skips it
            sampled = []
        victim = _least_recent(txn, dict(row for row in sampled if row is not None).items(), protected, touched)
        if victim is not None:
            return victim
        # every sample was the write's own (seq gaps lead to the next row): look at every entry
    return _least_recent(txn, list(txn.iter_order(damaged=[])), protected, touched)


def _least_recent(txn: Txn, rows: Iterable[tuple[int, bytes]], protected: set[int],
                  touched: PendingAccesses) -> tuple[int, bytes] | None:
    """(seq, slot) of the least recently used entry of ``rows`` (seq, order row) not in ``protected``."""
    best: tuple[float, int, bytes] | None = None
    for seq, row in rows:
        if seq in protected:
            continue
        try:
            slot = entries.unpack_order(row, seq)[2]
            atime = entries.last_access(txn, seq, slot, touched)
        except CorruptedRecordError:
            continue  # a damaged row is no candidate: check() reports it, repair fixes it
        if best is None or atime < best[0]:
            best = (atime, seq, slot)
    return None if best is None else best[1:]
