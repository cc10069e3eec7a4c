"""An entry's record as the Redis engine stores it in the ``E`` hash (layout: scripts.HEADER)."""

from __future__ import annotations

from ..._codec.record import Record
from .scripts import HEADER

_HEADER_SIZE = HEADER.size


def unpack_record(lookup: bytes, raw: bytes) -> Record:
    seq, ctime, mtime, expires, kind, xlen = HEADER.unpack_from(raw)
    exact = raw[_HEADER_SIZE:_HEADER_SIZE + xlen] or None
    return Record(int(seq), ctime, mtime, expires, kind, lookup, exact, raw[_HEADER_SIZE + xlen:])


def pack_record(record: Record) -> bytes:
    exact = record.exact or b""
    return HEADER.pack(record.seq, record.ctime, record.mtime, record.expires, record.kind, len(exact)) + exact + \
        bytes(record.payload)
