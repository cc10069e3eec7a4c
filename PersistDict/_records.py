"""On-disk record layout: header, checksum, keys and value payload.

    crc32 u32 | version u8 | kind u8 | pad u16 | seq u64 | ctime f64 | expires f64
    | lookup_len u32 | exact_len u32 | lookup key | exact key | payload

The CRC covers everything after itself, so a flipped byte anywhere in a
record is detected on read instead of being returned as a wrong value.
``seq`` is the entry's position in insertion order (the ``order`` table's key).
``expires`` is a UNIX time, 0.0 for "never" (per-key TTL).
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from .exceptions import CorruptedRecordError

RECORD_VERSION = 1

KIND_SERIALIZED = 0  # payload made by the value serializer
KIND_STR = 1  # raw str (utf-8), for value_serializer=None
KIND_BYTES = 2  # raw bytes, for value_serializer=None

_CRC = struct.Struct("<I")
_BODY = struct.Struct("<BBHQddII")
HEADER_SIZE = _CRC.size + _BODY.size


class Record(NamedTuple):
    seq: int
    ctime: float
    expires: float
    kind: int
    lookup: bytes
    exact: bytes | None
    payload: memoryview


def pack_record(
    seq: int,
    ctime: float,
    expires: float,
    kind: int,
    lookup: bytes,
    exact: bytes | None,
    payload: bytes,
) -> bytes:
    exact_bytes = exact or b""
    body = _BODY.pack(RECORD_VERSION, kind, 0, seq, ctime, expires, len(lookup), len(exact_bytes))
    crc = zlib.crc32(payload, zlib.crc32(exact_bytes, zlib.crc32(lookup, zlib.crc32(body))))
    return b"".join((_CRC.pack(crc), body, lookup, exact_bytes, payload))


def unpack_record(data: bytes | memoryview) -> Record:
    """Parse and verify a record; raise CorruptedRecordError if it is damaged."""
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise CorruptedRecordError("record shorter than its header")
    (crc,) = _CRC.unpack_from(view, 0)
    if zlib.crc32(view[_CRC.size :]) != crc:
        raise CorruptedRecordError("record checksum mismatch")
    version, kind, _, seq, ctime, expires, lookup_len, exact_len = _BODY.unpack_from(view, _CRC.size)
    if version != RECORD_VERSION:
        raise CorruptedRecordError(f"unknown record version {version}")
    start = HEADER_SIZE
    lookup = bytes(view[start : start + lookup_len])
    start += lookup_len
    exact = bytes(view[start : start + exact_len]) if exact_len else None
    return Record(seq, ctime, expires, kind, lookup, exact, view[start + exact_len :])


def with_header(record: Record, *, seq: int | None = None, expires: float | None = None) -> bytes:
    """Re-pack a record with some header fields changed (payload untouched)."""
    return pack_record(
        record.seq if seq is None else seq,
        record.ctime,
        record.expires if expires is None else expires,
        record.kind,
        record.lookup,
        record.exact,
        record.payload,  # type: ignore[arg-type]
    )
