"""Value codecs: pairs of ``dumps``/``loads`` to pass as ``value_serializer`` /
``value_unserializer``.

    from PersistDict import PersistDict, serializers
    codec = serializers.compressed(serializers.json_codec)
    d = PersistDict(path, value_serializer=codec.dumps, value_unserializer=codec.loads)

pickle and dill run code when they load: anyone who can write the database
directory can run code in every process that reads it. ``json_codec``,
``msgpack_codec``, ``orjson_codec`` and ``pydantic_codec(Model)`` are data only;
``signed`` refuses tampered data; ``encrypted`` also hides it. Neither of the last
two knows which key a value belongs to, nor hides keys: ``PersistDict(...,
encryption_key=...)`` does both (README, Encryption).
Codecs are picklable, so instances that use them can be sent to worker processes.
The optional ones import their library on first use (extras: ``PersistDict[zstd]``,
``[msgpack]``, ``[orjson]``, ``[pydantic]``).
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
    "msgpack_codec",
    "orjson_codec",
    "pickle_codec",
    "pydantic_codec",
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


def _optional(module: str, extra: str) -> Any:
    """Import an optional codec's library, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this codec needs {module!r}: pip install 'PersistDict[{extra}]'") from exc


_LEVELS = {"zlib": (0, 9, 6), "lzma": (0, 9, 6), "zstd": (-7, 22, 3)}  # lowest, highest, default


class _Compressed:
    def __init__(self, inner: Codec, algorithm: str, level: int) -> None:
        self.inner, self.algorithm, self.level = inner, algorithm, level
        self._zstd: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zstd": None}  # zstandard's (de)compressors do not pickle: made again

    def _zstandard(self) -> tuple[Any, Any]:
        if self._zstd is None:
            zstd = _optional("zstandard", "zstd")
            self._zstd = (zstd.ZstdCompressor(level=self.level), zstd.ZstdDecompressor())
        return self._zstd

    def dumps(self, obj: Any) -> bytes:
        raw = self.inner.dumps(obj)
        if self.algorithm == "zstd":
            return self._zstandard()[0].compress(raw)  # type: ignore[no-any-return]
        if self.algorithm == "zlib":
            return zlib.compress(raw, self.level)
        return lzma.compress(raw, preset=self.level)

    def loads(self, data: Any) -> Any:
        try:
            if self.algorithm == "zstd":
                raw = self._zstandard()[1].decompress(bytes(data))
            else:
                raw = zlib.decompress(data) if self.algorithm == "zlib" else lzma.decompress(bytes(data))
        except ImportError:
            raise
        except Exception as exc:  # zlib.error, lzma.LZMAError, zstandard.ZstdError
            raise CodecError(f"cannot decompress a value ({self.algorithm})") from exc
        return self.inner.loads(raw)


def compressed(inner: Codec = pickle_codec, algorithm: str = "zlib", level: int | None = None) -> Codec:
    """Compress what ``inner`` produces: ``zlib`` (levels 0-9, default 6), ``lzma`` (presets 0-9,
    default 6) or ``zstd`` (levels -7 to 22, default 3; needs ``PersistDict[zstd]``)."""
    if algorithm not in _LEVELS:
        raise ValueError(f"algorithm must be one of {sorted(_LEVELS)}, not {algorithm!r}")
    lowest, highest, default = _LEVELS[algorithm]
    if level is None:
        level = default
    if isinstance(level, bool) or not isinstance(level, int) or not lowest <= level <= highest:
        raise ValueError(f"level for {algorithm} must be an integer from {lowest} to {highest}, not {level!r}")
    impl = _Compressed(inner, algorithm, level)
    if algorithm == "zstd":
        impl._zstandard()  # a missing library is reported now, not at the first write
    return Codec(f"{algorithm}({inner.name})", impl.dumps, impl.loads)


def _msgpack_dumps(obj: Any) -> bytes:
    return _optional("msgpack", "msgpack").packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _msgpack_loads(data: Any) -> Any:
    msgpack = _optional("msgpack", "msgpack")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CodecError("cannot unpack a value (msgpack)") from exc


def _orjson_dumps(obj: Any) -> bytes:
    orjson = _optional("orjson", "orjson")
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)  # type: ignore[no-any-return]


def _orjson_loads(data: Any) -> Any:
    orjson = _optional("orjson", "orjson")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CodecError("cannot parse a value (orjson)") from exc


# Data only, no code on load. msgpack: compact binary, keeps bytes apart from str, tuples come back
# as lists. orjson: JSON several times faster than json (numpy arrays are written as lists).
msgpack_codec = Codec("msgpack", _msgpack_dumps, _msgpack_loads)
orjson_codec = Codec("orjson", _orjson_dumps, _orjson_loads)


class _Pydantic:
    def __init__(self, model: Any) -> None:
        self.model = model

    def _refuse(self, exc: Any, when: str) -> CodecError:
        # pydantic's message quotes the input: name only where the errors are and what kind they are
        errors = ", ".join(f"{'.'.join(map(str, error['loc'])) or '<root>'}: {error['type']}" for error in exc.errors())
        return CodecError(f"value does not validate as {self.model.__qualname__} {when} ({errors})")

    def dumps(self, obj: Any) -> bytes:
        from pydantic import ValidationError

        try:
            # an instance is validated again: its fields may have been assigned since it was built
            model = self.model.model_validate(obj.model_dump(warnings=False) if isinstance(obj, self.model) else obj)
        except ValidationError as exc:
            error = self._refuse(exc, "on write")
        else:
            return model.model_dump_json().encode()  # type: ignore[no-any-return]
        raise error

    def loads(self, data: Any) -> Any:
        from pydantic import ValidationError

        try:
            return self.model.model_validate_json(bytes(data))
        except ValidationError as exc:
            error = self._refuse(exc, "on read")
        raise error


def pydantic_codec(model: type[Any]) -> Codec:
    """Store instances of the pydantic model ``model`` as JSON, validated when written (a dict is
    validated into a ``model``) and when read (a ``model`` comes back); no code runs on load.
    Needs ``PersistDict[pydantic]``."""
    pydantic = _optional("pydantic", "pydantic")
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        raise TypeError(f"pydantic_codec needs a pydantic BaseModel subclass, not {model!r}")
    impl = _Pydantic(model)
    return Codec(f"pydantic({model.__module__}.{model.__qualname__})", impl.dumps, impl.loads)


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
    It does not know which key a value belongs to: a signed value copied to another key, or an
    older signed value, is accepted; keys stay in clear. ``encryption_key=`` binds both.
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

    ``key`` is 32 bytes, e.g. ``os.urandom(32)`` kept somewhere safe. Keys stay in clear on disk,
    a value copied to another key decrypts there, and pickling a store that uses this codec writes
    ``key`` into the pickle: ``PersistDict(path, encryption_key=...)`` has none of these gaps.
    """
    if len(key) != 32:
        raise ValueError("key must be exactly 32 bytes (AES-256)")
    try:
        impl = _Encrypted(inner, bytes(key))
    except ImportError as exc:
        raise ImportError("encrypted() needs the 'cryptography' package: pip install cryptography") from exc
    return Codec(f"encrypted({inner.name})", impl.dumps, impl.loads)

