"""Entry-level operations on one transaction: find, put, delete, iterate.

An entry is a record (``records`` table, keyed by slot) and an ``order`` row
(seq -> slot, which gives dict iteration order), plus an ``atimes`` row once
it has been read. They change together, in the caller's single write
transaction.

An order row is just the slot in the common case (no TTL, and the slot is the
key's exact encoding, so ``keys()`` decodes it without reading the record);
otherwise it is ``\\x00`` + expires (f64) + flags (u8) + slot. Slots never
start with ``\\x00``.

Hashed slots form probe chains: ``base``, ``base+1``, ``base+2``... with no
gaps. Deleting from the middle moves the chain's last record into the hole,
so a lookup can stop at the first empty probe position.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import NamedTuple

from .slots import is_hashed_slot, probe_index, probe_slot
from ..._accesses import PendingAccesses
from ..._codec.record import WRONG_KEY, Record, overwrite_fields, pack_record, record_mtime, unpack_record, with_header
from ..base import Loaded, written_after
from .rows import damaged
from .txn import Txn, encode_seq
from ...exceptions import CorruptedRecordError

_EXTENDED = struct.Struct("<xdB")  # \x00 marker, expires, flags
# meta key: present while some entry may carry a TTL (so the sweep can skip full
# scans); its value counts TTL writes, so a sweep only clears it if none happened meanwhile
TTL_FLAG = b"ttl_writes"


def note_ttl_write(txn: Txn) -> None:
    current = txn.meta(TTL_FLAG) or b"0"
    # a damaged count restarts at 1: any value other than the one a running sweep saw will do
    txn.put_meta(TTL_FLAG, str(int(current) + 1 if current.isdigit() else 1).encode())
_KEY_IN_SLOT = 1


class Found(NamedTuple):
    slot: bytes
    probe: int  # position in the probe chain (0 for exact slots)
    record: Record | None  # None: not present; ``slot`` is where it would go


class OrderedEntry(NamedTuple):
    seq: int
    expires: float
    slot: bytes
    key_in_slot: bool


def pack_order(expires: float, key_in_slot: bool, slot: bytes) -> bytes:
    if not expires and key_in_slot:
        return slot
    return _EXTENDED.pack(expires, _KEY_IN_SLOT if key_in_slot else 0) + slot


def unpack_order(value: bytes, seq: int | None = None) -> tuple[float, bool, bytes]:
    """(expires, key_in_slot, slot) of an order row; CorruptedRecordError naming the row (by
    ``seq`` when given) if it cannot be one."""
    if value:
        if value[0]:
            return 0.0, True, value
        if len(value) > _EXTENDED.size:
            expires, flags = _EXTENDED.unpack_from(value, 0)
            if flags <= _KEY_IN_SLOT and -math.inf < expires < math.inf:  # a clock set before 1970 writes < 0
                return expires, bool(flags), value[_EXTENDED.size :]
    where = b"" if seq is None else encode_seq(seq)
    raise damaged("order", where, f"{len(value)} bytes that are not an entry's row")


def damaged_order_row(txn: Txn, value: bytes) -> CorruptedRecordError:
    """The error naming the damaged order row ``value`` by its seq (found again: the error path)."""
    for seq, row in txn.iter_order(damaged=[]):
        if row == value:
            return damaged("order", encode_seq(seq), f"{len(value)} bytes that are not an entry's row")
    return damaged("order", b"", f"{len(value)} bytes that are not an entry's row")


def base_of(slot: bytes, hash_bytes: int) -> bytes:
    """The first probe position of the chain ``slot`` belongs to."""
    return slot[: 1 + hash_bytes] if is_hashed_slot(slot) else slot


def find(txn: Txn, lookup: bytes, base: bytes) -> Found:
    """Locate the entry whose lookup encoding is ``lookup``."""
    if not is_hashed_slot(base):
        data = txn.record(base)
        if data is None:
            return Found(base, 0, None)
        record = unpack_record(data)
        if record.lookup != lookup:  # a damaged database key led to another key's record
            raise CorruptedRecordError(WRONG_KEY)
        return Found(base, 0, record)
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


class SeqAllocator:
    """Hands out insertion sequence numbers within one write transaction
    (the newest seq is looked up once, however many entries are inserted)."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn
        self.next: int | None = None

    def take(self) -> int:
        if self.next is None:
            self.next = self.txn.next_seq_value()
        seq = self.next
        self.next += 1
        return seq


def put(
    txn: Txn,
    seqs: SeqAllocator,
    lookup: bytes,
    exact: bytes | None,
    base: bytes,
    kind: int,
    payload: bytes,
    now: float,
    expires: float,
    keep_key: bool = True,
) -> tuple[int, bool]:
    """Insert or overwrite; an overwrite keeps ctime and order, and the exact key unless not ``keep_key``
    (an encrypted store's rotation re-seals it). Returns (seq, inserted).

    An entry past its TTL, or whose record is corrupted, is replaced by a new entry.
    """
    if expires:
        note_ttl_write(txn)
    if is_hashed_slot(base):
        found = find(txn, lookup, base)
        slot, old = found.slot, found.record
        fields = None if old is None else (old.seq, old.ctime, old.mtime, old.expires, old.exact)
    else:  # the common case: one lookup, and only the header fields an overwrite keeps
        slot = base
        data = txn.record(slot)
        fields = None if data is None else overwrite_fields(data, lookup)  # damaged: replaced as new
    if fields is not None and fields[3] and fields[3] <= now:  # past its TTL: a new entry
        txn.delete_order(fields[0])
        txn.delete_atime(fields[0])
        fields = None
    if fields is None:
        seq, ctime, mtime = seqs.take(), now, now
        txn.put_order(seq, pack_order(expires, exact is None and slot == lookup, slot))
    else:  # like a dict, an overwrite keeps the first key object (1 stays 1 after d[True] = ...)
        seq, ctime, old_mtime, old_expires, old_exact = fields
        mtime = written_after(old_mtime, now)
        if keep_key or (exact is None) != (old_exact is None):
            exact = old_exact
        if old_expires != expires:
            txn.put_order(seq, pack_order(expires, exact is None and slot == lookup, slot))
    txn.put_record(slot, pack_record(seq, ctime, mtime, expires, kind, lookup, exact, payload), lookup)
    return seq, fields is None


def load(txn: Txn, seqs: SeqAllocator, loaded: Loaded, base: bytes, now: float) -> int:
    """Store an exported entry with its own times (``Engine.load``); its seq."""
    (lookup, exact, kind, payload), ctime, mtime, atime, expires = loaded
    found = find(txn, lookup, base)
    if found.record is not None and not (not found.record.expires or found.record.expires > now):
        remove(txn, found, base)  # expired: replaced by a new entry, as put does
        found = find(txn, lookup, base)
    if expires:
        note_ttl_write(txn)
    old = found.record
    if old is None:
        seq = seqs.take()
        txn.put_order(seq, pack_order(expires, exact is None and found.slot == lookup, found.slot))
    else:
        seq, exact = old.seq, old.exact  # like a dict, an overwrite keeps the first key object
        if old.expires != expires:
            txn.put_order(seq, pack_order(expires, exact is None and found.slot == lookup, found.slot))
    txn.put_record(found.slot, pack_record(seq, ctime, mtime, expires, kind, lookup, exact, payload), lookup)
    if atime > mtime:
        txn.put_atime(seq, atime)
    else:
        txn.delete_atime(seq)
    return seq


def remove(txn: Txn, found: Found, base: bytes) -> Record:
    """Remove a found entry, keeping its probe chain gap-free."""
    record = found.record
    assert record is not None
    # copy the payload out: its memory may be reused by the writes below
    record = record._replace(payload=memoryview(bytes(record.payload)))
    txn.delete_order(record.seq)
    txn.delete_atime(record.seq)
    if is_hashed_slot(base):
        _close_chain_gap(txn, base, found.probe, record.lookup)
    else:
        txn.delete_record(found.slot, record.lookup)
    return record


def remove_slot(txn: Txn, slot: bytes, hash_bytes: int) -> Record | None:
    """Remove the entry stored at ``slot`` (found through the order table); its record, or None."""
    data = txn.record(slot)
    if data is None:
        return None
    record = unpack_record(data)
    base = base_of(slot, hash_bytes)
    return remove(txn, find(txn, record.lookup, base), base)


def drop_slot(txn: Txn, slot: bytes, seq: int | None, hash_bytes: int) -> None:
    """Delete the entry ``seq`` (or, when it is unknown, whatever is at ``slot``, even a record too
    damaged to read), keeping its probe chain gap-free."""
    if seq is not None:
        row = txn.order_row(seq)
        if row is not None:  # its current slot: an earlier drop may have moved it along the chain
            slot = unpack_order(row)[2]
        txn.delete_order(seq)
        txn.delete_atime(seq)
    # the record may be unreadable: its key is not known (the change log names an exact slot by itself)
    if is_hashed_slot(slot):
        base = base_of(slot, hash_bytes)
        _close_chain_gap(txn, base, probe_index(slot, base), None)
    else:
        txn.delete_record(slot, None)


def _close_chain_gap(txn: Txn, base: bytes, hole: int, lookup: bytes | None) -> None:
    """Delete the record of ``lookup`` at probe position ``hole``."""
    last = hole
    while txn.record(probe_slot(base, last + 1)) is not None:
        last += 1
    hole_slot, last_slot = probe_slot(base, hole), probe_slot(base, last)
    if last != hole:
        moved = unpack_record(txn.record(last_slot))  # type: ignore[arg-type]
        txn.put_record(hole_slot, with_header(moved), moved.lookup)
        txn.put_order(moved.seq, pack_order(moved.expires, False, hole_slot))
        hole_slot = last_slot
    txn.delete_record(hole_slot, lookup)


def set_expiry(txn: Txn, found: Found, expires: float, now: float) -> None:
    """Change an existing entry's expiry time (record header and order row); a new expiry is a
    write at ``now`` (a new version: see written_after), the same one is not."""
    record = found.record
    assert record is not None
    if expires:
        note_ttl_write(txn)
    if expires == record.expires:
        return
    txn.put_record(found.slot, with_header(record, expires=expires, mtime=written_after(record.mtime, now)),
                   record.lookup)
    key_in_slot = record.exact is None and found.slot == record.lookup
    txn.put_order(record.seq, pack_order(expires, key_in_slot, found.slot))


def iter_order(txn: Txn, newest_first: bool = False, start_after: int = 0) -> Iterator[OrderedEntry]:
    """Entries in insertion order (from ``start_after``), without reading their records."""
    for seq, value in txn.iter_order(newest_first, start_after):
        expires, key_in_slot, slot = unpack_order(value)
        yield OrderedEntry(seq, expires, slot, key_in_slot)


def record_at_or_none(txn: Txn, slot: bytes) -> Record | None:
    data = txn.record(slot)
    return None if data is None else unpack_record(data)


def record_at(txn: Txn, slot: bytes) -> Record:
    data = txn.record(slot)
    if data is None:
        raise CorruptedRecordError("order index points to a missing record")
    return unpack_record(data)


def atime_of(txn: Txn, record: Record) -> float:
    """Last access: the later of the last write and the last recorded read."""
    read = txn.atime(record.seq)
    return record.mtime if read is None or read < record.mtime else read


def last_access(txn: Txn, seq: int, slot: bytes, touched: PendingAccesses) -> float:
    """An entry's atime: the latest of its last write, its stored read time and an unflushed read.
    CorruptedRecordError if its record is too short for a header or its atimes row is damaged."""
    data = txn.record(slot)
    mtime = record_mtime(data) if data is not None else 0.0
    read = txn.atime(seq) or 0.0
    pending = touched.get(seq, 0.0)
    return max(mtime, read, pending)
