"""Integrity check: cross-check records, order rows and atimes; optionally repair.

Structural problems (orphan rows, order rows pointing at the wrong record, a
collision chain with a gap or a key twice) are fixed by ``repair=True``.
Records that fail their checksum or that the current value codec cannot decode
are only reported: deleting them needs the explicit ``drop_unreadable=True``,
because a codec change must never wipe a database. Rows of the other tables that
cannot be what their table holds (see ``_rows``) are reported as damaged and, with
``repair`` or ``drop_unreadable``, removed first (an entry whose order row goes is
indexed again from its record; one whose access time goes falls back to its last
write) or, for the meta rows the store needs, rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import entries
from .entries import TTL_FLAG
from ..._codec.keys import KeyCodec
from .slots import Slots, is_hashed_slot, probe_index, probe_slot
from .housekeeping import LEASE, parse_lease
from ..._codec.record import Record, unpack_record, with_header
from .rows import atime_of, change_row, check_meta, damaged, seq_of
from .env import Storage
from .txn import Txn, change_log_slot
from ...exceptions import CorruptedRecordError
from ..base import REPORTED_EXAMPLES, CheckReport

_REPORTED = REPORTED_EXAMPLES
PROGRESS_EVERY = 1000


def check_database(
    storage: Storage,
    keys: KeyCodec,
    slots: Slots,
    can_decode: Callable[[Record], bool],
    repair: bool,
    drop_unreadable: bool,
    format_row: bytes,
    progress: Callable[[int, int], Any] | None = None,
) -> CheckReport:
    """``format_row``: the meta row ``format`` this instance would write (the repair of a damaged one).
    ``progress(records read, records)``, every ``PROGRESS_EVERY`` records and at the end."""
    report = CheckReport()
    fixes: list[Callable[[Txn], None]] = []
    damaged_fixes: list[Callable[[Txn], None]] = []  # run first: the other fixes read these tables

    def found_damaged(problem: CorruptedRecordError, fix: Callable[[Txn], None]) -> None:
        report.damaged_rows += 1
        if len(report.damaged) < _REPORTED:
            report.damaged.append(str(problem))
        damaged_fixes.append(fix)

    with storage.reading() as txn:
        order: dict[int, bytes] = {}
        damaged_seqs: set[int] = set()  # order rows that go: their entries' access times stay
        for key, row in txn.rows("order"):
            try:
                seq = seq_of("order", key)
                order[seq] = entries.unpack_order(row, seq)[2]
            except CorruptedRecordError as exc:
                if len(key) == 8:
                    damaged_seqs.add(seq_of("order", key))
                found_damaged(exc, _row_remover("order", key, row))
        seq_of_slot = {slot: seq for seq, slot in order.items()}
        record_seq: dict[bytes, int] = {}
        corrupted_slots: set[bytes] = set()
        chained: set[bytes] = set()  # lookups of the records in collision chains
        corrupted_drops: list[Callable[[Txn], None]] = []  # in slot order
        broken_chains: set[bytes] = set()  # bases of collision chains with a gap or a key twice
        total = txn.count()
        for done, (slot, data) in enumerate(txn.iter_records(), 1):
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done, max(done, total))
            try:
                record = unpack_record(data)
            except CorruptedRecordError:
                corrupted_slots.add(slot)
                report.corrupted_records += 1
                if len(report.corrupted) < _REPORTED:
                    report.corrupted.append(slot.hex())
                if drop_unreadable:
                    corrupted_drops.append(_dropper(slot, seq_of_slot.get(slot), slots.hash_bytes))
                    report.dropped += 1
                continue
            record_seq[slot] = record.seq
            hashed = is_hashed_slot(slot)
            moved = False
            if not _in_place(slots, slot, record.lookup, txn) or (hashed and record.lookup in chained):
                report.misplaced_records += 1
                own = slots.slot(record.lookup)
                if hashed:
                    broken_chains.add(own)
                elif not is_hashed_slot(own) and txn.record(own) is None and order.get(record.seq, own) == own:
                    # a damaged database key: the record goes back under its own key, where its order row points
                    fixes.append(_mover(slot, own, record.seq, record.expires, record.exact is None))
                    record_seq[own] = record_seq.pop(slot)
                    moved = True
            if hashed:
                chained.add(record.lookup)
            if not can_decode(record):
                report.note_undecodable(keys, record.lookup, record.exact)
                if drop_unreadable:
                    fixes.append(_dropper(slot, record.seq, slots.hash_bytes))
                    report.dropped += 1
                    continue
            if order.get(record.seq) != slot and not moved:
                report.orphan_records += 1
                fixes.append(_reindexer(slot, record.seq, record.expires, record.exact is None
                                        and slot == record.lookup, record.seq in order))
        for seq, slot in order.items():
            if slot in corrupted_slots:
                continue
            if record_seq.get(slot) != seq:
                report.orphan_order_rows += 1
                fixes.append(_order_row_remover(seq))
        for key, value in txn.rows("atimes"):
            try:
                seq = seq_of("atimes", key)
                atime_of(key, value)
            except CorruptedRecordError as exc:
                found_damaged(exc, _row_remover("atimes", key, value))
                continue
            if seq not in order and seq not in damaged_seqs:
                report.orphan_atimes += 1
                fixes.append(_atime_remover(seq))
        for key, value in txn.rows("meta"):
            try:
                check_meta(key, value)
                if key == LEASE:
                    parse_lease(value)
            except CorruptedRecordError as exc:
                found_damaged(exc, _meta_repairer(key, value, format_row))
        for key, row in txn.rows("changes"):
            try:
                txn_id, _ = change_row(key, row)
                if change_log_slot(txn_id) != key:
                    raise damaged("changes", key, "the txn id of another ring row")
            except CorruptedRecordError as exc:
                found_damaged(exc, _row_remover("changes", key, row))
        report.entries = txn.count()
    # first the chains, then the corrupted records from the last slot back (closing a chain's gap
    # moves the record at its end, which must not be one that cannot be parsed), then the rest:
    # each fix checks again what it fixes
    fixes[:0] = [_chain_rewriter(base) for base in broken_chains] + corrupted_drops[::-1]
    if not repair:  # drop_unreadable alone applies only the drops
        fixes = [fix for fix in fixes if getattr(fix, "drops", False)]
    if repair or drop_unreadable:  # the drops too read the order table
        fixes[:0] = damaged_fixes
    if fixes:
        def work(txn: Txn) -> None:
            for fix in fixes:
                fix(txn)

        storage.write(work)
        report.repaired = len(fixes) - report.dropped
    if progress is not None:
        progress(report.entries, report.entries)
    return report


def _in_place(slots: Slots, slot: bytes, lookup: bytes, txn: Txn) -> bool:
    base = slots.slot(lookup)
    if not is_hashed_slot(base):
        return slot == base
    if not slot.startswith(base):
        return False
    index = probe_index(slot, base)
    return index == 0 or txn.record(probe_slot(base, index - 1)) is not None  # no gap before it


# Repairs run in a later write transaction than the scan that found the
# problem: each one checks again that the problem is still there.

def _order_row_remover(seq: int) -> Callable[[Txn], None]:
    def fix(txn: Txn) -> None:
        row = txn.order_row(seq)
        if row is None:
            return
        data = txn.record(entries.unpack_order(row)[2])
        if data is None or _seq_of(data) != seq:
            txn.delete_order(seq)
    return fix


def _row_remover(table: str, key: bytes, value: bytes) -> Callable[[Txn], None]:
    """Remove a damaged row of ``table`` (not records), unless it was rewritten meanwhile."""
    def fix(txn: Txn) -> None:
        if txn.row(table, key) == value:
            txn.delete_row(table, key)
    return fix


def _meta_repairer(name: bytes, value: bytes, format_row: bytes) -> Callable[[Txn], None]:
    """Rewrite a damaged meta row the store needs (its format; the TTL flag, kept set so that the
    next full sweep decides), or remove it (the maintenance lease: the next pass takes it)."""
    def fix(txn: Txn) -> None:
        if txn.meta(name) != value:
            return  # rewritten meanwhile
        if name == b"format":
            txn.put_meta(name, format_row)
        elif name == TTL_FLAG:
            txn.put_meta(name, b"1")
        else:
            txn.delete_meta(name)
    return fix


def _atime_remover(seq: int) -> Callable[[Txn], None]:
    def fix(txn: Txn) -> None:
        if txn.order_row(seq) is None:
            txn.delete_atime(seq)
    return fix


def _seq_of(data: bytes | memoryview) -> int | None:
    try:
        return unpack_record(data).seq
    except CorruptedRecordError:
        return None


def _dropper(slot: bytes, seq: int | None, hash_bytes: int) -> Callable[[Txn], None]:
    def fix(txn: Txn) -> None:
        if seq is not None and txn.order_row(seq) is None:  # removed or moved by an earlier fix
            data = txn.record(slot)
            if data is None or _seq_of(data) != seq:
                return  # whatever is at ``slot`` now is another entry
        entries.drop_slot(txn, slot, seq, hash_bytes)
    fix.drops = True  # type: ignore[attr-defined]
    return fix


def _chain_rewriter(base: bytes) -> Callable[[Txn], None]:
    """Rewrite the collision chain at ``base`` from its first position, without gaps or a key
    twice. Reads walk a chain from its start and stop at a gap, so the records after a lost one
    are unreachable, and writing one of their keys adds a second record for it in the first gap:
    of the two, the first in the chain (that newer write) stays. A chain holding a record that
    fails its checksum is left to drop_unreadable."""
    def fix(txn: Txn) -> None:
        try:
            chain = [(slot, data, unpack_record(data)) for slot, data in txn.records_under(base)]
        except CorruptedRecordError:
            return
        kept: dict[bytes, int] = {}  # lookup -> position in the chain of the record that stays
        for position, (_, _, record) in enumerate(chain):
            kept.setdefault(record.lookup, position)
        for slot, _, record in chain:
            txn.delete_record(slot, record.lookup)
        index = 0
        for position, (slot, data, record) in enumerate(chain):
            row = txn.order_row(record.seq)
            indexed_here = row is not None and entries.unpack_order(row)[2] == slot
            if kept[record.lookup] != position:  # the older of a key's two records
                if indexed_here:
                    txn.delete_order(record.seq)
                    txn.delete_atime(record.seq)
                continue
            new_slot = probe_slot(base, index)
            index += 1
            seq = record.seq
            if row is not None and not indexed_here:  # its seq indexes another record: a new one
                seq = entries.SeqAllocator(txn).take()
                data = with_header(record, seq=seq)
            txn.put_record(new_slot, data, record.lookup)
            txn.put_order(seq, entries.pack_order(record.expires, False, new_slot))
    return fix


def _mover(slot: bytes, own: bytes, seq: int, expires: float, key_in_slot: bool) -> Callable[[Txn], None]:
    """Move the record ``seq`` from ``slot`` to ``own``, the exact slot of its key, if that is free."""
    def fix(txn: Txn) -> None:
        data = txn.record(slot)
        if data is None or _seq_of(data) != seq or txn.record(own) is not None:
            return  # removed, rewritten or its slot taken meanwhile
        row = txn.order_row(seq)
        if row is not None and entries.unpack_order(row)[2] != own:
            return
        txn.put_record(own, bytes(data), own)
        txn.delete_record(slot, None)
        txn.put_order(seq, entries.pack_order(expires, key_in_slot, own))
    return fix


def _reindexer(slot: bytes, seq: int, expires: float, key_in_slot: bool, seq_taken: bool) -> Callable[[Txn], None]:
    """Give an orphan record its order row back (a new seq if its own is taken)."""
    def fix(txn: Txn) -> None:
        data = txn.record(slot)
        if data is None or _seq_of(data) != seq:
            return  # removed or rewritten meanwhile
        row = txn.order_row(seq)
        if row is not None and entries.unpack_order(row)[2] == slot:
            return  # indexed meanwhile
        new_seq = seq
        if seq_taken or row is not None:
            new_seq = entries.SeqAllocator(txn).take()
            record = unpack_record(data)
            txn.put_record(slot, with_header(record, seq=new_seq), record.lookup)
        txn.put_order(new_seq, entries.pack_order(expires, key_in_slot, slot))
    return fix
