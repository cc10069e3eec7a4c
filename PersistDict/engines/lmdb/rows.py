"""Checked decoding of the rows of the tables that carry no checksum: order, atimes, changes, meta.

Records verify themselves (``_records``); the other tables' rows are small and
unchecksummed, so a damaged one must be told apart from a valid one by its shape.
A row that cannot be what its table holds raises :class:`CorruptedRecordError`
naming the table and the row (by seq, ring position or meta name: never the
bytes it holds), so callers can report it, skip it or repair it.
"""

from __future__ import annotations

import math
import struct

from ..._codec.format import check_format_row
from ...exceptions import CorruptedRecordError

SEQ = struct.Struct(">Q")  # order and atimes keys: big-endian so LMDB's byte order is numeric order
TIME = struct.Struct("<d")  # atimes values
LENGTH = struct.Struct("<I")  # a length inside a change-log row


def row_name(table: str, key: bytes | memoryview) -> str:
    """How a message names a row: by what its key means, never by what it holds."""
    key = bytes(key)
    if not key:
        return "a row"
    if table in ("order", "atimes") and len(key) == SEQ.size:
        return f"row of seq {SEQ.unpack(key)[0]}"
    if table == "changes" and len(key) == 2:
        return f"ring row {int.from_bytes(key, 'big')}"
    if table == "meta" and key.isascii() and key.decode().isidentifier():
        return f"row {key.decode()!r}"
    return f"a row with a {len(key)}-byte key"


def damaged(table: str, key: bytes | memoryview, problem: str) -> CorruptedRecordError:
    return CorruptedRecordError(f"table {table!r}, {row_name(table, key)}, is damaged ({problem}); "
                                "check(repair=True) repairs it")


def seq_of(table: str, key: bytes | memoryview) -> int:
    """The seq an order or atimes key encodes."""
    if len(key) != SEQ.size:
        raise damaged(table, key, f"a key of {len(key)} bytes, not {SEQ.size}")
    return SEQ.unpack(key)[0]  # type: ignore[no-any-return]


def atime_of(key: bytes | memoryview, data: bytes | memoryview) -> float:
    """The access time an atimes row holds."""
    if len(data) == TIME.size:
        when: float = TIME.unpack(data)[0]
        if math.isfinite(when):
            return when
    raise damaged("atimes", key, f"{len(data)} bytes that are not a finite time")


def change_row(key: bytes | memoryview, row: bytes | memoryview) -> tuple[int, list[bytes]]:
    """(txn id, lookups) of a change-log row: the txn id, then each lookup after its length."""
    if len(row) < SEQ.size:
        raise damaged("changes", key, f"{len(row)} bytes, shorter than a txn id")
    lookups, start = [], SEQ.size
    while start < len(row):
        if start + LENGTH.size > len(row):
            raise damaged("changes", key, "a length cut short")
        (length,) = LENGTH.unpack_from(row, start)
        start += LENGTH.size + length
        if start > len(row):
            raise damaged("changes", key, "a length past the end of the row")
        lookups.append(bytes(row[start - length:start]))
    return SEQ.unpack_from(row)[0], lookups


def check_meta(name: bytes, value: bytes) -> None:
    """Raise if the meta row ``name`` cannot hold ``value``; names it does not know pass."""
    if name == b"format":
        check_format_row(value)
    elif name == b"ttl_writes":
        if not value.isdigit():
            raise damaged("meta", name, "not a count")
