"""The value codec: a Python value <-> (kind, payload), the one seam every value passes through.

``kind`` says how to read ``payload`` back: serialized bytes, serialized text (a codec that
returns str, like json.dumps), or, with ``value_serializer=None``, a raw str or bytes value.
Decoding errors never chain the codec's exception, which may hold the value (see _redact).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from .keys import _callable_name
from .record import KIND_BYTES, KIND_SERIALIZED, KIND_SERIALIZED_TEXT, KIND_STR
from .._redact import describe, key_text
from ..exceptions import CodecError, CodecMismatchError, CorruptedRecordError

NO_KEY: Any = object()  # decode's ``key`` when the caller does not know it


def undecodable(key: Any, cause: BaseException) -> CodecError:
    """The CodecError for a value that cannot be decoded, naming its key and, when the codec
    raised a CodecError of its own (a wrong secret, a tampered value), that error's message, else
    the type and position of the codec's exception (see _redact). Raise it outside the ``except``
    block that caught ``cause``: it must not chain it, even as ``__context__``."""
    where = "" if key is NO_KEY else f" of key {key_text(key)}"
    message = f"cannot decode the value{where} with the configured value_unserializer"
    if isinstance(cause, CodecError):  # our codecs' messages quote no value
        kind = CodecMismatchError if isinstance(cause, CodecMismatchError) else CodecError
        return kind(f"{message}: {cause}")
    return CodecError(f"{message}: {describe(cause)}")


class ValueCodec:
    """``value_serializer`` / ``value_unserializer`` (None / None: raw str and bytes values)."""

    def __init__(self, serializer: Callable[[Any], Any] | None, unserializer: Callable[[Any], Any] | None) -> None:
        self.serializer = serializer
        self.unserializer = unserializer
        self.raw = serializer is None
        self.loads_takes_buffer = unserializer is pickle.loads  # pickle reads a memoryview: no copy

    @property
    def description(self) -> str:
        """The codec's name in the store's format record (module too: json.dumps, not dumps)."""
        serializer = self.serializer
        if serializer is None:
            return "raw"
        codec_name = getattr(getattr(serializer, "__self__", None), "name", None)
        return codec_name or _callable_name(serializer)

    def encode(self, value: Any) -> tuple[int, bytes]:
        if self.raw:
            if type(value) is str:
                return KIND_STR, value.encode("utf-8", "surrogatepass")
            if isinstance(value, (bytes, bytearray, memoryview)):
                return KIND_BYTES, bytes(value)
            raise TypeError(
                f"values must be str or bytes when value_serializer is None, not {type(value).__name__!r}"
            )
        payload = self.serializer(value)  # type: ignore[misc]
        if type(payload) is bytes:
            return KIND_SERIALIZED, payload
        if isinstance(payload, str):  # json.dumps and friends
            return KIND_SERIALIZED_TEXT, payload.encode("utf-8", "surrogatepass")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"value_serializer must return bytes or str, not {type(payload).__name__!r}")
        return KIND_SERIALIZED, bytes(payload)

    def decode(self, kind: int, payload: bytes | memoryview, key: Any = NO_KEY) -> Any:
        if kind == KIND_SERIALIZED or kind == KIND_SERIALIZED_TEXT:
            if self.raw:
                raise undecodable(key, CodecMismatchError("it was serialized, but value_serializer is None"))
            try:
                if kind == KIND_SERIALIZED_TEXT:
                    return self.unserializer(bytes(payload).decode("utf-8", "surrogatepass"))  # type: ignore[misc]
                if self.loads_takes_buffer:
                    return self.unserializer(payload)  # type: ignore[misc]
                return self.unserializer(bytes(payload))  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - any codec error; raised below, unchained
                error = undecodable(key, exc)
            raise error
        if kind == KIND_STR:
            return bytes(payload).decode("utf-8", "surrogatepass")
        if kind == KIND_BYTES:
            return bytes(payload)
        raise CorruptedRecordError(f"unknown value kind {kind}")

    def decode_cached(self, cached: bytes) -> Any:
        """A front-cache entry's bytes: the kind, then the payload."""
        return self.decode(cached[0], memoryview(cached)[1:])

    def can_decode(self, kind: int, payload: Any) -> bool:
        """Whether a stored value decodes."""
        try:
            self.decode(kind, payload)
        except Exception:
            return False
        return True
