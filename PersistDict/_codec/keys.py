"""Key codec: canonical key encoding, hashing and cropping of long keys.

A key becomes two byte strings:

* the *lookup* encoding: equal keys (in the ``==`` and ``hash`` sense, so
  ``1``, ``1.0`` and ``True`` alike) give the same bytes in every process,
  whatever the object identity or ``PYTHONHASHSEED``;
* the *exact* encoding: the same, but it keeps the key's type, so ``keys()``
  gives back ``True`` rather than ``1``. It is stored only when it differs.

Every encoding starts with a type tag that is never ``#`` (the LMDB engine's
mark of a hashed slot: see engines/lmdb/slots.py).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from ..exceptions import KeyEncodingError

LMDB_MAX_KEY_SIZE = 511  # 0.2.x's key_size_limit bound it; longer keys are stored under a hash

KeySerializer = Callable[[Any], "str | bytes"]
KeyUnserializer = Callable[[Any], Any]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, pos
        shift += 7


def _encode(key: Any, exact: bool) -> bytes:
    kind = type(key)
    if kind is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    if kind is bytes:
        return b"b" + key
    if key is None:
        return b"N"
    if kind is bool:
        return (b"?1" if key else b"?0") if exact else (b"i1" if key else b"i0")
    if kind is int:
        return b"i%d" % key
    if kind is float:
        if key.is_integer():
            return b"F" + repr(key).encode() if exact else b"i%d" % int(key)
        return b"f" + repr(key).encode()
    if kind is tuple:
        parts = [_encode(item, exact) for item in key]
        return b"(" + b"".join(_varint(len(p)) + p for p in parts)
    if kind is frozenset:
        # Set order depends on PYTHONHASHSEED: sort the element encodings.
        parts = sorted(_encode(item, exact) for item in key)
        return b"{" + b"".join(_varint(len(p)) + p for p in parts)
    if kind is complex:
        if key.imag == 0 and not exact:  # 1+0j == 1, as in a dict
            return _encode(key.real, False)
        if not exact:  # -0.0 == 0.0 but their reprs differ: adding 0.0 turns -0.0 into 0.0
            key = complex(key.real + 0.0, key.imag + 0.0)
        return b"j" + repr(key).encode()
    # Subclasses (str enums, named tuples...) equal their base value: look them up
    # as that value, and keep their own type (pickled) in the exact encoding.
    for base, to_base in _BASE_VALUE:
        if isinstance(key, base) and kind is not bool:
            value = to_base(key)
            if exact:
                try:
                    return b"p" + pickle.dumps(key, protocol=5)
                except Exception:  # e.g. a class defined in a function: keep the value
                    pass
            return _encode(value, exact)
    _require_hashable(key)
    try:
        return b"p" + pickle.dumps(key, protocol=5)
    except Exception as exc:
        raise KeyEncodingError(f"key of type {kind.__name__!r} cannot be encoded (not picklable)") from exc


# The exact built-in value of an instance of a subclass; these conversions
# ignore overridden __str__/__int__/... (str(StrEnum.X) is 'Cls.X', not its value).
_BASE_VALUE: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (bytes, lambda key: b"".join((key,))),
    (int, int.__int__),
    (float, float.__float__),
    # complex.__complex__ is new in 3.11: read the two parts, past any overridden real/imag
    (complex, lambda key: complex(complex.real.__get__(key), complex.imag.__get__(key))),
    (tuple, tuple),
    (frozenset, frozenset),
)


def _require_hashable(key: Any) -> None:
    try:
        hash(key)
    except TypeError as exc:
        raise KeyEncodingError(f"unhashable key type: {type(key).__name__!r}") from exc


def _decode(data: bytes, pos: int, end: int) -> Any:
    tag = data[pos]
    body = data[pos + 1 : end]
    if tag == 0x73:  # s
        return body.decode("utf-8", "surrogatepass")
    if tag == 0x62:  # b
        return bytes(body)
    if tag == 0x4E:  # N
        return None
    if tag == 0x3F:  # ?
        return body == b"1"
    if tag == 0x69:  # i
        return int(body)
    if tag in (0x66, 0x46):  # f, F
        return float(body)
    if tag == 0x6A:  # j
        return complex(body.decode())
    if tag in (0x28, 0x7B):  # ( {
        items = []
        cur = pos + 1
        while cur < end:
            size, cur = _read_varint(data, cur)
            items.append(_decode(data, cur, cur + size))
            cur += size
        return tuple(items) if tag == 0x28 else frozenset(items)
    if tag == 0x70:  # p
        return pickle.loads(body)
    raise KeyEncodingError(f"unknown key encoding tag {tag!r}")


def canonical_key_serializer(key: Any) -> bytes:
    """The default key serializer: a canonical, type-preserving encoding."""
    return _encode(key, True)


def canonical_key_unserializer(data: bytes) -> Any:
    """Inverse of :func:`canonical_key_serializer`."""
    return _decode(data, 0, len(data))


class KeyCodec:
    """Turns user keys into lookup/exact encodings, and back."""

    def __init__(
        self,
        key_serializer: KeySerializer | None,
        key_unserializer: KeyUnserializer | None,
        key_size_limit: int,
        hashed: bool = False,
    ) -> None:
        self._canon = key_serializer is canonical_key_serializer  # the encoding keys get
        # whether a str key's lookup is b"s" + its UTF-8 (the read path inlines it): not when hashed
        self.canonical = self._canon and not hashed
        self.hashed = hashed
        self.index: Callable[[bytes], bytes] | None = None  # hashed: the keyed hash of lookups (encryption)
        self.serializer = key_serializer
        self.unserializer = key_unserializer
        self.key_size_limit = min(key_size_limit, LMDB_MAX_KEY_SIZE)

    @property
    def description(self) -> str:
        """What is recorded in the database about the key encoding."""
        if self._canon:
            plain = "canonical-v1"
        elif self.serializer is None:
            plain = "raw"
        else:
            plain = "custom:" + _callable_name(self.serializer)
        return f"hmac-sha256({plain})" if self.hashed else plain

    def lookup(self, key: Any) -> bytes:
        """The lookup encoding alone (what reads need)."""
        if type(key) is str and self.canonical:  # the common case, kept short
            return b"s" + key.encode("utf-8", "surrogatepass")
        return self.encode(key)[0]

    def use_index(self, index: Callable[[bytes], bytes]) -> None:
        """Hash lookups with ``index`` from now on (an encrypted store: see _codec/crypto.py).
        An instance attribute, so that an unencrypted store's ``encode`` stays one frame."""
        self.index = index
        plain_encode = KeyCodec.encode.__get__(self)

        def encode(key: Any) -> tuple[bytes, bytes | None]:
            """(the keyed hash of the lookup encoding, the exact encoding, always: it is stored sealed)."""
            lookup, exact = plain_encode(key)
            return index(lookup), lookup if exact is None else exact

        self.encode = encode  # type: ignore[method-assign]

    def plain_lookup(self, exact: bytes) -> bytes:
        """The lookup encoding (before hashing) of the key whose exact encoding is ``exact``."""
        return _encode(_decode(exact, 0, len(exact)), False) if self._canon else exact

    def encode(self, key: Any) -> tuple[bytes, bytes | None]:
        """Return (lookup encoding, exact encoding or None when identical)."""
        if self._canon:
            if type(key) is str:  # the common case, kept short
                return b"s" + key.encode("utf-8", "surrogatepass"), None
            lookup = _encode(key, False)
            exact = _encode(key, True)
            return lookup, (None if exact == lookup else exact)
        if self.serializer is None:
            raw = key
            if not isinstance(key, (str, bytes)):
                raise KeyEncodingError(
                    f"keys must be str or bytes when key_serializer is None, not {type(key).__name__!r}"
                )
        else:
            _require_hashable(key)
            try:
                raw = self.serializer(key)
            except Exception as exc:
                raise KeyEncodingError(
                    f"key_serializer failed on a key of type {type(key).__name__!r}"
                ) from exc
        if isinstance(raw, str):
            return b"c" + raw.encode("utf-8", "surrogatepass"), None
        if isinstance(raw, (bytes, bytearray, memoryview)):
            return b"y" + bytes(raw), None
        raise KeyEncodingError(f"key_serializer must return str or bytes, not {type(raw).__name__!r}")

    def decode(self, lookup: bytes, exact: bytes | None) -> Any:
        data = exact if exact is not None else lookup
        if self._canon:
            return _decode(data, 0, len(data))
        body = data[1:]
        raw: str | bytes = body.decode("utf-8", "surrogatepass") if data[:1] == b"c" else bytes(body)
        if self.unserializer is None:
            return raw
        return self.unserializer(raw)

    def decode_many(self, encodings: list[bytes]) -> list[Any]:
        """Decode exact encodings (as stored in slots), with a fast path for str keys."""
        if self._canon:
            return [
                data[1:].decode("utf-8", "surrogatepass") if data[0] == 0x73 else _decode(data, 0, len(data))
                for data in encodings
            ]
        return [self.decode(data, None) for data in encodings]

    def decode_str_keys(self, encodings: list[bytes]) -> list[str] | None:
        """Decode exact encodings in one C-level pass if they are all str keys without NUL
        (the common case; about 2.5x faster than one by one), else None."""
        if not self._canon or not encodings:
            return None
        joined = b"\x00".join(encodings)
        separators = len(encodings) - 1  # every NUL must be a separator followed by the str tag
        if joined[0] != 0x73 or joined.count(b"\x00") != separators or joined.count(b"\x00s") != separators:
            return None
        return joined[1:].decode("utf-8", "surrogatepass").split("\x00s")


def _callable_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}"


__all__ = [
    "KeyCodec",
    "canonical_key_serializer",
    "canonical_key_unserializer",
]
