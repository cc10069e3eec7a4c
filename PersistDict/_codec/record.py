"""On-disk record layout: header, keys, value payload and checksum.

    version u8 | kind u8 | pad u16 | seq u64 | ctime f64 | mtime f64 | expires f64
    | lookup_len u32 | exact_len u32 | lookup key | exact key | payload | crc32 u32

The CRC-32 (little-endian) covers everything before it, so a flipped byte
anywhere in a record is detected on read instead of being returned as a wrong
value. Placing it last lets the read path verify a record without slicing it:
the CRC of a message followed by its own CRC is the constant ``_CRC_RESIDUE``.

``seq`` is the entry's position in insertion order (the ``order`` table's key).
``mtime`` is the last write; reads are recorded apart (the ``atimes`` table)
so that a read never rewrites a record. ``expires`` is a UNIX time, 0.0 for
"never" (per-key TTL).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import NamedTuple

from ..exceptions import CorruptedRecordError

RECORD_VERSION = 1

KIND_SERIALIZED = 0  # payload made by the value serializer
KIND_STR = 1  # raw str (utf-8), for value_serializer=None
KIND_BYTES = 2  # raw bytes, for value_serializer=None
KIND_SERIALIZED_TEXT = 3  # the value serializer returned str (e.g. json.dumps): stored as utf-8

_HEADER = struct.Struct("<BBHQdddII")
_READ_HEADER = struct.Struct("<BBxxQ16xdII")  # the fields the read path needs
_EXPIRES_KEY_LEN = struct.Struct("<28xdI")  # what ``in`` needs: expires, lookup_len
_CRC = struct.Struct("<I")
_crc32 = zlib.crc32  # records' checksum on write and in unpack_record: the compiled one when built (end of file)
_CRC_RESIDUE = 0x2144DF1C
HEADER_SIZE = _HEADER.size
_LARGE = 4096  # above this, parse through a memoryview instead of copying slices
WRONG_KEY = "record belongs to another key (a damaged database key)"  # _speedups.c says it too


class Record(NamedTuple):
    seq: int
    ctime: float
    mtime: float
    expires: float
    kind: int
    lookup: bytes
    exact: bytes | None
    payload: bytes | memoryview


def pack_record(
    seq: int,
    ctime: float,
    mtime: float,
    expires: float,
    kind: int,
    lookup: bytes,
    exact: bytes | None,
    payload: bytes | memoryview,
) -> bytes:
    exact_bytes = exact or b""
    header = _HEADER.pack(RECORD_VERSION, kind, 0, seq, ctime, mtime, expires, len(lookup), len(exact_bytes))
    body = b"".join((header, lookup, exact_bytes, payload))
    return body + _CRC.pack(_crc32(body))


def record_length(lookup: bytes, exact: bytes | None, payload: bytes | memoryview) -> int:
    """The length of the record pack_record makes of these."""
    return HEADER_SIZE + len(lookup) + len(exact or b"") + len(payload) + _CRC.size


def _verify(data: bytes | memoryview) -> None:
    if len(data) < HEADER_SIZE + 4 or _crc32(data) != _CRC_RESIDUE:
        raise CorruptedRecordError("record checksum mismatch")
    if data[0] != RECORD_VERSION:
        raise CorruptedRecordError(f"unknown record version {data[0]}")


def unpack_record(data: bytes | memoryview) -> Record:
    """Parse and verify a record; raise CorruptedRecordError if it is damaged."""
    _verify(data)
    _, kind, _, seq, ctime, mtime, expires, lookup_len, exact_len = _HEADER.unpack_from(data)
    start = HEADER_SIZE
    lookup = bytes(data[start : start + lookup_len])
    start += lookup_len
    exact = bytes(data[start : start + exact_len]) if exact_len else None
    view = memoryview(data) if len(data) > _LARGE else data
    return Record(seq, ctime, mtime, expires, kind, lookup, exact, view[start + exact_len : -4])


def unpack_value(data: bytes | memoryview, lookup: bytes) -> tuple[int, float, int, bytes | memoryview]:
    """Verify a record, and that it is the record of ``lookup``, and return (seq, expires, kind,
    payload): the read path's fast parse (``_verify`` inlined: one call less per read).

    The checksum covers the record's own copy of its lookup key, not LMDB's key: a damaged
    database key can lead a read to another key's record, which the key comparison refuses.
    """
    if zlib.crc32(data) != _CRC_RESIDUE or len(data) < HEADER_SIZE + 4:
        raise CorruptedRecordError("record checksum mismatch")
    version, kind, seq, expires, lookup_len, exact_len = _READ_HEADER.unpack_from(data)
    if version != RECORD_VERSION:
        raise CorruptedRecordError(f"unknown record version {version}")
    if lookup_len != len(lookup) or data[HEADER_SIZE : HEADER_SIZE + lookup_len] != lookup:  # bytes, not decoded
        raise CorruptedRecordError(WRONG_KEY)
    start = HEADER_SIZE + lookup_len + exact_len
    if len(data) > _LARGE:
        return seq, expires, kind, memoryview(data)[start:-4]
    return seq, expires, kind, data[start:-4]


_OVERWRITE_HEADER = struct.Struct("<BxxxQdddII")  # version, seq, ctime, mtime, expires, lengths


def overwrite_fields(data: bytes | memoryview, lookup: bytes) -> tuple[int, float, float, float, bytes | None] | None:
    """(seq, ctime, mtime, expires, exact key) of the record of ``lookup`` about to be overwritten; None if
    it is damaged or is another key's record (a damaged database key led here).

    The write path's parse: no Record, no payload slice.
    """
    try:
        _verify(data)
    except CorruptedRecordError:
        return None
    _, seq, ctime, mtime, expires, lookup_len, exact_len = _OVERWRITE_HEADER.unpack_from(data)
    if data[HEADER_SIZE : HEADER_SIZE + lookup_len] != lookup:
        return None
    if not exact_len:
        return seq, ctime, mtime, expires, None
    start = HEADER_SIZE + lookup_len
    return seq, ctime, mtime, expires, bytes(data[start : start + exact_len])


def record_mtime(data: bytes | memoryview) -> float:
    """The last write time of a record, read without verifying it (for expiry scans)."""
    if len(data) < HEADER_SIZE + 4:
        raise CorruptedRecordError("record shorter than its header")
    return _HEADER.unpack_from(data)[5]  # type: ignore[no-any-return]


def record_expires(data: bytes | memoryview, lookup: bytes) -> float:
    """The expiry time of the record of ``lookup``, read without verifying its checksum (for ``in``);
    a record of another key (a damaged database key) is refused, as in ``unpack_value``."""
    if len(data) < HEADER_SIZE + 4:
        raise CorruptedRecordError("record shorter than its header")
    expires, lookup_len = _EXPIRES_KEY_LEN.unpack_from(data)
    if lookup_len != len(lookup) or data[HEADER_SIZE : HEADER_SIZE + lookup_len] != lookup:
        raise CorruptedRecordError(WRONG_KEY)
    return expires  # type: ignore[no-any-return]


_LISTING = struct.Struct("<28xdII")  # what a key listing needs: expires, lookup_len, exact_len


def record_listing(data: bytes | memoryview, lookup: bytes | None) -> tuple[bytes, float, bytes | None]:
    """(lookup, expires, exact key or None) of a record, read without verifying its checksum, as
    ``keys()`` reads order rows (``keys(prefix=...)``). ``lookup``: the one the record must be of
    (None: not known, a hashed slot), refused as in ``unpack_value`` if it is another key's."""
    if len(data) < HEADER_SIZE + 4:
        raise CorruptedRecordError("record shorter than its header")
    expires, lookup_len, exact_len = _LISTING.unpack_from(data)
    end = HEADER_SIZE + lookup_len
    if end + exact_len + 4 > len(data):
        raise CorruptedRecordError("record shorter than its keys")
    stored = bytes(data[HEADER_SIZE:end])
    if lookup is not None and stored != lookup:
        raise CorruptedRecordError(WRONG_KEY)
    return stored, expires, (bytes(data[end:end + exact_len]) if exact_len else None)


def with_header(record: Record, *, seq: int | None = None, expires: float | None = None,
                mtime: float | None = None) -> bytes:
    """Re-pack a record with its seq, expiry or mtime changed (payload untouched)."""
    return pack_record(
        record.seq if seq is None else seq,
        record.ctime,
        record.mtime if mtime is None else mtime,
        record.expires if expires is None else expires,
        record.kind,
        record.lookup,
        record.exact,
        record.payload,
    )


# The Python parsers above are the reference (tests compare) and the fallback. The read path
# uses their compiled twins (_speedups.c: ~0.3 µs less per cold read) when a C compiler built
# them at install, unless PERSISTDICT_PURE_PYTHON is set, and records are checksummed on write
# and by unpack_record (writes, check()) with its CRC-32 (zlib's, up to 3x faster where it folds
# with carry-less multiply). SPEEDUPS says which is in use.
py_unpack_value, py_record_expires = unpack_value, record_expires
SPEEDUPS = False
if not os.environ.get("PERSISTDICT_PURE_PYTHON"):
    try:
        from .._speedups import crc32 as _crc32  # type: ignore[assignment,no-redef]
        from .._speedups import record_expires, unpack_value  # type: ignore[assignment,no-redef]
    except ImportError:
        pass
    else:
        SPEEDUPS = True
