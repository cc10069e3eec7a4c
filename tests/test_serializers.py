"""Value codecs: round trips, tamper detection, validation, and that secrets never show."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable

import pytest

from PersistDict import CodecError, PersistDict, serializers

VALUE = {"text": "réponse " * 50, "tokens": [1, 2, 3], "nested": {"ok": True, "none": None}}


@pytest.mark.parametrize("codec", [
    serializers.pickle_codec,
    serializers.dill_codec,
    serializers.json_codec,
    serializers.compressed(serializers.json_codec),
    serializers.compressed(serializers.pickle_codec, algorithm="lzma", level=1),
    serializers.signed(serializers.pickle_codec, b"s" * 32),
    serializers.encrypted(serializers.compressed(), os.urandom(32)),
], ids=repr)
def test_codec_roundtrip_through_a_store(make_db: Callable[..., PersistDict], codec: serializers.Codec) -> None:
    """Each codec stores and returns values through PersistDict, also after the instance is pickled."""
    db = make_db(value_serializer=codec.dumps, value_unserializer=codec.loads)
    db["k"] = VALUE
    for _ in range(3):
        assert db["k"] == VALUE
    clone = pickle.loads(pickle.dumps(db))
    try:
        assert clone["k"] == VALUE
    finally:
        clone.close()


def test_compression_shrinks_repetitive_values() -> None:
    """compressed() makes repetitive payloads smaller."""
    plain = serializers.json_codec.dumps(VALUE)
    assert len(serializers.compressed(serializers.json_codec).dumps(VALUE)) < len(plain) / 3


def test_signed_refuses_tampered_or_foreign_values() -> None:
    """A signed value altered on disk, or signed with another secret, raises CodecError before loading."""
    codec = serializers.signed(serializers.pickle_codec, b"k" * 32)
    data = bytearray(codec.dumps(VALUE))
    data[-1] ^= 1
    with pytest.raises(CodecError):
        codec.loads(bytes(data))
    other = serializers.signed(serializers.pickle_codec, b"x" * 32)
    with pytest.raises(CodecError):
        other.loads(codec.dumps(VALUE))


def test_encrypted_hides_plaintext_and_checks_key() -> None:
    """encrypted() output does not contain the plaintext; a wrong key raises CodecError."""
    key = os.urandom(32)
    codec = serializers.encrypted(serializers.json_codec, key)
    blob = codec.dumps({"secret": "PLAINTEXT-MARKER"})
    assert b"PLAINTEXT-MARKER" not in blob
    assert codec.loads(blob) == {"secret": "PLAINTEXT-MARKER"}
    with pytest.raises(CodecError):
        serializers.encrypted(serializers.json_codec, os.urandom(32)).loads(blob)


def test_corrupted_compressed_value_raises_codec_error() -> None:
    """Garbage given to a compressed codec raises CodecError."""
    with pytest.raises(CodecError):
        serializers.compressed().loads(b"not zlib")


def test_codec_arguments_are_validated() -> None:
    """Bad codec arguments raise ValueError."""
    with pytest.raises(ValueError):
        serializers.compressed(algorithm="snappy")
    with pytest.raises(ValueError):
        serializers.compressed(level=11)
    with pytest.raises(ValueError):
        serializers.signed(serializers.pickle_codec, b"short")
    with pytest.raises(ValueError):
        serializers.encrypted(serializers.pickle_codec, b"16-bytes-only!!!")


def test_secrets_do_not_appear_in_repr() -> None:
    """Codec reprs never show the secret or key."""
    secret = b"TOPSECRET-" * 4
    for codec in (serializers.signed(serializers.pickle_codec, secret),
                  serializers.encrypted(serializers.pickle_codec, secret[:32])):
        assert "TOPSECRET" not in repr(codec) and "TOPSECRET" not in repr(codec.dumps)


def test_a_value_the_codec_cannot_decode_names_its_key_and_is_never_removed(
        make_db: Callable[..., PersistDict], db_path) -> None:  # type: ignore[no-untyped-def]
    """Opened with another secret: [], get, values(), pop and popitem raise CodecError naming the key
    and the codec's reason; pop and popitem leave the entry in place."""
    writer = serializers.signed(serializers.pickle_codec, b"w" * 32)
    db = make_db(value_serializer=writer.dumps, value_unserializer=writer.loads)
    db["answer"] = VALUE
    db.close()
    reader = serializers.signed(serializers.pickle_codec, b"r" * 32)
    other = make_db(value_serializer=reader.dumps, value_unserializer=reader.loads)
    for attempt in (lambda: other["answer"], lambda: other.get("answer"), lambda: list(other.values()),
                    lambda: other.pop("answer"), other.popitem):
        with pytest.raises(CodecError, match=r"key 'answer'.*signature mismatch"):
            attempt()
    assert list(other) == ["answer"]
    other.close()
    assert make_db(value_serializer=writer.dumps, value_unserializer=writer.loads).pop("answer") == VALUE


def _note_loaded(path: str) -> str:
    """Unpickling a _WritesWhenLoaded runs this: it writes to the store being read."""
    other = PersistDict(path, background_thread="disabled")
    other["loaded"] = other.get("loaded", 0) + 1
    other.close()
    return "value"


class _WritesWhenLoaded:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (_note_loaded, (self.path,))


def test_pop_and_popitem_decode_outside_the_write_transaction(make_db: Callable[..., PersistDict]) -> None:
    """A value whose decoding writes to the same store (user code in a codec or in __reduce__) can
    be popped: decoding runs before the write transaction, which then removes that same version."""
    db = make_db()
    db["a"] = _WritesWhenLoaded(db.path)
    db["b"] = _WritesWhenLoaded(db.path)
    assert db.pop("a") == "value" and db["loaded"] == 1
    del db["loaded"]
    assert db.popitem() == ("b", "value") and db["loaded"] == 1 and list(db) == ["loaded"]
