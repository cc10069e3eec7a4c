"""Value codecs: pairs of ``dumps``/``loads`` to pass as ``value_serializer`` /
``value_unserializer``.

    from PersistDict import PersistDict, serializers
    codec = serializers.compressed(serializers.json_codec)
    d = PersistDict(path, value_serializer=codec.dumps, value_unserializer=codec.loads)

pickle and dill run code when they load: anyone who can write the database
directory can run code in every process that reads it. ``json_codec`` is data
only; ``signed`` refuses tampered data; ``encrypted`` also hides it.
Codecs are picklable, so instances that use them can be sent to worker processes.
"""

from __future__ import annotations

import hmac
import json
import lzma
import os
import pickle
import zlib
from collections.abc import Callable
from typing import Any

from .exceptions import CodecError

__all__ = [
    "Codec",
    "compressed",
    "dill_codec",
    "encrypted",
    "json_codec",
    "pickle_codec",
    "signed",
]


class Codec:
    """A named pair of functions: ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj``."""

    def __init__(self, name: str, dumps: Callable[[Any], bytes], loads: Callable[[Any], Any]) -> None:
        self.name = name
        self._dumps = dumps
        self._loads = loads

    def dumps(self, obj: Any) -> bytes:
        return self._dumps(obj)

    def loads(self, data: Any) -> Any:
        return self._loads(data)

    def __repr__(self) -> str:
        return f"Codec({self.name!r})"


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _dill_dumps(obj: Any) -> bytes:
    import dill

    return dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _dill_loads(data: Any) -> Any:
    import dill

    return dill.loads(bytes(data))


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode()


def _json_loads(data: Any) -> Any:
    return json.loads(bytes(data))


pickle_codec = Codec("pickle", _pickle_dumps, pickle.loads)
dill_codec = Codec("dill", _dill_dumps, _dill_loads)
json_codec = Codec("json", _json_dumps, _json_loads)


class _Compressed:
    def __init__(self, inner: Codec, algorithm: str, level: int) -> None:
        self.inner, self.algorithm, self.level = inner, algorithm, level

    def dumps(self, obj: Any) -> bytes:
        raw = self.inner.dumps(obj)
        if self.algorithm == "zlib":
            return zlib.compress(raw, self.level)
        return lzma.compress(raw, preset=self.level)

    def loads(self, data: Any) -> Any:
        try:
            raw = zlib.decompress(data) if self.algorithm == "zlib" else lzma.decompress(bytes(data))
        except (zlib.error, lzma.LZMAError) as exc:
            raise CodecError(f"cannot decompress a value ({self.algorithm})") from exc
        return self.inner.loads(raw)


def compressed(inner: Codec = pickle_codec, algorithm: str = "zlib", level: int = 6) -> Codec:
    """Compress what ``inner`` produces (``zlib`` levels 0-9 or ``lzma`` presets 0-9)."""
    if algorithm not in ("zlib", "lzma"):
        raise ValueError(f"algorithm must be 'zlib' or 'lzma', not {algorithm!r}")
    if not 0 <= level <= 9:
        raise ValueError(f"level must be between 0 and 9, not {level}")
    impl = _Compressed(inner, algorithm, level)
    return Codec(f"{algorithm}({inner.name})", impl.dumps, impl.loads)


class _Signed:
    def __init__(self, inner: Codec, secret: bytes) -> None:
        self.inner, self._secret = inner, secret

    def __repr__(self) -> str:  # never show the secret
        return f"signed({self.inner.name})"

    def dumps(self, obj: Any) -> bytes:
        raw = self.inner.dumps(obj)
        return hmac.digest(self._secret, raw, "sha256") + raw

    def loads(self, data: Any) -> Any:
        data = bytes(data)
        tag, raw = data[:32], data[32:]
        if not hmac.compare_digest(tag, hmac.digest(self._secret, raw, "sha256")):
            raise CodecError("value signature mismatch: written with another secret or tampered with")
        return self.inner.loads(raw)


def signed(inner: Codec, secret: bytes) -> Codec:
    """Prefix each value with an HMAC-SHA256 of it; loading verifies it first.

    With ``inner=pickle_codec`` this makes pickle safe against a writable
    directory: a value nobody signed with ``secret`` is refused before unpickling.
    """
    if len(secret) < 16:
        raise ValueError("secret must be at least 16 bytes")
    impl = _Signed(inner, bytes(secret))
    return Codec(f"signed({inner.name})", impl.dumps, impl.loads)


class _Encrypted:
    def __init__(self, inner: Codec, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.inner = inner
        self._key = key
        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # never show the key
        return f"encrypted({self.inner.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Encrypted, (self.inner, self._key))

    def dumps(self, obj: Any) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, self.inner.dumps(obj), None)

    def loads(self, data: Any) -> Any:
        from cryptography.exceptions import InvalidTag

        data = bytes(data)
        try:
            raw = self._aead.decrypt(data[:12], data[12:], None)
        except InvalidTag as exc:
            raise CodecError("cannot decrypt a value: wrong key or tampered data") from exc
        return self.inner.loads(raw)


def encrypted(inner: Codec, key: bytes) -> Codec:
    """Encrypt values with AES-256-GCM (authenticated). Needs ``pip install cryptography``.

    ``key`` is 32 bytes, e.g. ``os.urandom(32)`` kept somewhere safe.
    """
    if len(key) != 32:
        raise ValueError("key must be exactly 32 bytes (AES-256)")
    try:
        impl = _Encrypted(inner, bytes(key))
    except ImportError as exc:
        raise ImportError("encrypted() needs the 'cryptography' package: pip install cryptography") from exc
    return Codec(f"encrypted({inner.name})", impl.dumps, impl.loads)

