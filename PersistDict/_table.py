"""Entry-level operations on one transaction: find, put, delete, iterate.

An entry is a record (``records`` table, keyed by slot), an ``order`` row
(seq -> expiry + slot, which gives dict iteration order) and an ``atimes``
row (seq -> last access). All three change together, in the caller's single
write transaction.

Hashed slots form probe chains: ``base``, ``base+1``, ``base+2``... with no
gaps. Deleting from the middle moves the chain's last record into the hole,
so a lookup can stop at the first empty probe position.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from ._keys import is_hashed_slot, probe_slot
from ._records import Record, pack_record, unpack_record, with_header
from ._storage import Txn
from .exceptions import CorruptedRecordError

# order row value: expires (f64, 0 = never) | flags (u8) | slot
_ORDER = struct.Struct("<dB")
ORDER_KEY_IN_SLOT = 1  # the slot is the key's exact encoding: keys() needs no record read


class Found(NamedTuple):
    slot: bytes
    index: int  # position in the probe chain (0 for exact slots)
    record: Record | None  # None: not present; ``slot`` is where it would go


def pack_order(expires: float, key_in_slot: bool, slot: bytes) -> bytes:
    return _ORDER.pack(expires, ORDER_KEY_IN_SLOT if key_in_slot else 0) + slot


def unpack_order(value: bytes) -> tuple[float, bool, bytes]:
    expires, flags = _ORDER.unpack_from(value, 0)
    return expires, bool(flags & ORDER_KEY_IN_SLOT), value[_ORDER.size :]


def find(txn: Txn, lookup: bytes, base: bytes) -> Found:
    """Locate the entry whose lookup encoding is ``lookup``."""
    if not is_hashed_slot(base):
        data = txn.record(base)
        return Found(base, 0, None if data is None else unpack_record(data))
    index = 0
    while True:
        slot = probe_slot(base, index)
        data = txn.record(slot)
        if data is None:
            return Found(slot, index, None)
        record = unpack_record(data)
        if record.lookup == lookup:
            return Found(slot, index, record)
        index += 1


def put(
    txn: Txn,
    lookup: bytes,
    exact: bytes | None,
    base: bytes,
    kind: int,
    payload: bytes,
    now: float,
    expires: float,
) -> tuple[int, bool]:
    """Insert or overwrite; an overwrite keeps ctime and order. Returns (seq, inserted)."""
    found = find(txn, lookup, base)
    old = found.record
    if old is None:
        seq, ctime = txn.next_seq(), now
    else:
        seq, ctime = old.seq, old.ctime
    if old is None or old.expires != expires:
        key_in_slot = exact is None and found.slot == lookup
        txn.put_order(seq, pack_order(expires, key_in_slot, found.slot))
    txn.put_record(found.slot, pack_record(seq, ctime, expires, kind, lookup, exact, payload))
    txn.put_atime(seq, now)
    return seq, old is None


def delete(txn: Txn, lookup: bytes, base: bytes) -> Record | None:
    """Remove the entry; returns its record (payload copied out) or None."""
    found = find(txn, lookup, base)
    if found.record is None:
        return None
    return remove(txn, found, base)


def remove(txn: Txn, found: Found, base: bytes) -> Record:
    """Remove a found entry, keeping its probe chain gap-free."""
    record = found.record
    assert record is not None
    # copy the payload out: its memory may be reused by the writes below
    record = record._replace(payload=memoryview(bytes(record.payload)))
    txn.delete_order(record.seq)
    txn.delete_atime(record.seq)
    if is_hashed_slot(base):
        _close_chain_gap(txn, base, found.index)
    else:
        txn.delete_record(found.slot)
    return record


def _close_chain_gap(txn: Txn, base: bytes, hole: int) -> None:
    last = hole
    while txn.record(probe_slot(base, last + 1)) is not None:
        last += 1
    hole_slot, last_slot = probe_slot(base, hole), probe_slot(base, last)
    if last != hole:
        moved = unpack_record(txn.record(last_slot))  # type: ignore[arg-type]
        txn.put_record(hole_slot, with_header(moved))
        txn.put_order(moved.seq, pack_order(moved.expires, False, hole_slot))
        hole_slot = last_slot
    txn.delete_record(hole_slot)


def set_expiry(txn: Txn, found: Found, expires: float) -> None:
    """Change an existing entry's expiry time (record header and order row)."""
    record = found.record
    assert record is not None
    txn.put_record(found.slot, with_header(record, expires=expires))
    key_in_slot = record.exact is None and found.slot == record.lookup
    txn.put_order(record.seq, pack_order(expires, key_in_slot, found.slot))


class OrderedEntry(NamedTuple):
    seq: int
    expires: float
    slot: bytes
    key_in_slot: bool


def iter_order(txn: Txn, newest_first: bool = False, start_after: int = 0) -> Iterator[OrderedEntry]:
    """Entries in insertion order (from ``start_after``), without reading their records."""
    for seq, value in txn.iter_order(newest_first, start_after):
        expires, key_in_slot, slot = unpack_order(value)
        yield OrderedEntry(seq, expires, slot, key_in_slot)


def record_at(txn: Txn, slot: bytes) -> Record:
    data = txn.record(slot)
    if data is None:
        raise CorruptedRecordError("order index points to a missing record")
    return unpack_record(data)
