"""Slots: the LMDB key an entry's record is stored under.

The slot is the key's lookup encoding itself when it fits in ``key_size_limit``
bytes (at most LMDB's 511), otherwise ``#`` + a cropped BLAKE2b hash of it, plus
a probe suffix when cropped hashes collide: the entry layer walks the probe
chain and the record keeps the full lookup encoding, so two keys never share an
entry. No lookup encoding starts with ``#``.
"""

from __future__ import annotations

import hashlib
from typing import overload

HASHED_SLOT_MARK = b"#"
MAX_HASH_BYTES = 32
PROBE_SUFFIX_BYTES = 4


class Slots:
    """Where the entries of one store live: ``slot(lookup)``, the first probe position."""

    __slots__ = ("limit", "hash_bytes")

    def __init__(self, key_size_limit: int) -> None:
        self.limit = key_size_limit
        self.hash_bytes = min(key_size_limit, MAX_HASH_BYTES)

    def slot(self, lookup: bytes) -> bytes:
        """The LMDB key of the first probe position for this lookup encoding."""
        if len(lookup) <= self.limit:
            return lookup
        digest = hashlib.blake2b(lookup, digest_size=MAX_HASH_BYTES).digest()
        return HASHED_SLOT_MARK + digest[: self.hash_bytes]


def probe_slot(base: bytes, index: int) -> bytes:
    """The LMDB key of probe position ``index`` in a hashed slot's collision chain."""
    return base if index == 0 else base + index.to_bytes(PROBE_SUFFIX_BYTES, "big")


def probe_index(slot: bytes, base: bytes) -> int:
    """Inverse of :func:`probe_slot`: the position of ``slot`` in the chain starting at ``base``."""
    return int.from_bytes(slot[len(base):], "big") if len(slot) > len(base) else 0


def is_hashed_slot(slot: bytes) -> bool:
    return slot[:1] == HASHED_SLOT_MARK


@overload
def read_as(slot: bytes, record_lookup: bytes) -> bytes: ...
@overload
def read_as(slot: bytes, record_lookup: None) -> bytes | None: ...


def read_as(slot: bytes, record_lookup: bytes | None) -> bytes | None:
    """The lookup encoding a read finds the entry at ``slot`` by (None: not known). An exact slot
    is itself the lookup, whatever a damaged record in it says; a hashed slot holds its record's."""
    return record_lookup if is_hashed_slot(slot) else slot
