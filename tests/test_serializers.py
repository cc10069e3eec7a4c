"""Value codecs: round trips, tamper detection, validation, and that secrets never show."""

from __future__ import annotations

import hmac
import json
import lzma
import os
import pickle
import traceback
import warnings
import zlib
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


# -- no value bytes in exceptions ------------------------------------------------------------------

CANARY = "CANARY-7f3a9c"
_SECRET, _AES_KEY = b"s" * 32, bytes(range(32))


def _pickled_bad_str() -> bytes:
    """A pickle of one str whose bytes are not UTF-8 (pickle's UnicodeDecodeError keeps them all)."""
    text = b"\xff" + CANARY.encode()
    return b"\x80\x05\x8c" + bytes([len(text)]) + text + b"."


def _encrypted(raw: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce + AESGCM(_AES_KEY).encrypt(nonce, raw, None)


# (reading value_unserializer, the stored payload that makes it fail with the canary inside its error)
_LEAKY_READS: dict[str, tuple[Callable[..., object], Callable[[], bytes | str]]] = {
    "pickle.loads": (pickle.loads, _pickled_bad_str),
    "pickle_codec": (serializers.pickle_codec.loads, _pickled_bad_str),
    "dill_codec": (serializers.dill_codec.loads, _pickled_bad_str),
    "json_codec, not UTF-8": (serializers.json_codec.loads, lambda: b"\xff" + CANARY.encode()),
    "json_codec, not JSON": (serializers.json_codec.loads, lambda: f'{{"a": {CANARY}}}'.encode()),
    "json.loads (text)": (json.loads, lambda: f'{{"a": {CANARY}}}'),
    "compressed(json)": (serializers.compressed(serializers.json_codec).loads,
                         lambda: zlib.compress(b"\xff" + CANARY.encode())),
    "compressed(pickle, lzma)": (serializers.compressed(serializers.pickle_codec, "lzma").loads,
                                 lambda: lzma.compress(_pickled_bad_str())),
    "signed(json)": (serializers.signed(serializers.json_codec, _SECRET).loads,
                     lambda: hmac.digest(_SECRET, b"\xff" + CANARY.encode(), "sha256") + b"\xff" + CANARY.encode()),
    "encrypted(json)": (serializers.encrypted(serializers.json_codec, _AES_KEY).loads,
                        lambda: _encrypted(b"\xff" + CANARY.encode())),
}
_KEY_CODECS = {
    "canonical": {},
    "raw": {"key_serializer": None, "key_unserializer": None},
    "json": {"key_serializer": json.dumps, "key_unserializer": json.loads},
}


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        for linked in (exc.__cause__, exc.__context__):
            seen.extend(e for e in _chain(linked) if e not in seen)
        exc = None
    return seen


def _assert_no_canary(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    assert CANARY not in text, text
    for linked in _chain(exc):
        held = [repr(linked), str(linked), repr(linked.args), repr(vars(linked))]
        held += [repr(getattr(linked, name, None)) for name in ("object", "doc")]
        assert not any(CANARY in part or CANARY.encode().hex() in part for part in held), (type(linked), held)


@pytest.mark.parametrize("key_codec", list(_KEY_CODECS))
@pytest.mark.parametrize("reader", list(_LEAKY_READS))
def test_undecodable_values_never_show_in_exceptions(db_path, key_codec: str, reader: str) -> None:
    """The CodecError of a value the codec cannot decode, and every exception it chains (cause and
    context, recursively), holds no byte of the value, by any read path: only the codec's exception
    type and position (a UnicodeDecodeError chained the whole value)."""
    loads, payload = _LEAKY_READS[reader]
    keys = _KEY_CODECS[key_codec]
    with PersistDict(db_path, background_thread="disabled", value_serializer=lambda v: v,
                     value_unserializer=lambda v: v, **keys) as writer:
        writer.set_many({"k": payload(), "ok": payload()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # another value codec than the one it was written with
        d = PersistDict(db_path, background_thread="disabled", value_serializer=pickle.dumps,
                        value_unserializer=loads, **keys)
    with d:
        reads = [lambda: d["k"], lambda: d["k"], lambda: d.get_many(["k"]), lambda: list(d.items()),
                 lambda: list(d.values()), d.copy, lambda: d.pop("k"), lambda: d.setdefault("k")]
        for read in reads:
            with pytest.raises(CodecError) as caught:
                read()
            _assert_no_canary(caught.value)
            assert "value_unserializer" in str(caught.value)
        error = d.readable_items().damaged[0].error
        _assert_no_canary(error)
        if reader.startswith("json_codec, not UTF-8"):
            assert "UnicodeDecodeError" in str(error) and "at bytes 0-1" in str(error)
        if "not JSON" in reader or "(text)" in reader:
            assert "JSONDecodeError" in str(error) and "char 6" in str(error)
