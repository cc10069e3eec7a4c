"""Encryption of a store (``encryption_key=``): the key sources, the store's key record, sealing.

Three kinds of secret, so that a master key can be rotated without moving entries:

* the *master key* (the user's 32 bytes): only wraps the store's key bundle; never stored;
* the *index key* (random, one per store): the HMAC-SHA256 key that turns a key's canonical
  lookup encoding into the lookup the engine sees (equal keys meet across processes);
* *data keys* (random, one per generation): AES-256-GCM keys that seal values and keys.

The key record (meta row ``encryption``, JSON) holds the store id and the bundle (current
generation, index key, every data key) wrapped under each master key that may open the store:
one in the steady state, two (old and new) while a rotation runs. Unwrapping it is the key check:
a wrong master key fails there, before anything is read or written.

A sealed blob is ``"E" | generation u32 | nonce (12) | ciphertext | tag (16)``. A value's
associated data is its store id, its header, its kind and its entry's lookup, so a value moved to
another entry, another store or another kind fails authentication; a key is checked by hashing it
back to the lookup it was found under.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any

from ..exceptions import EncryptionError, KeyNotPicklableError, TamperedRecordError, WrongEncryptionKeyError

KEY_RECORD = b"encryption"  # the meta row
RECORD_VERSION = 1
KEY_SIZE = 32
_HEADER = struct.Struct(">cI")  # b"E", generation
HEADER_SIZE = _HEADER.size
NONCE_SIZE = 12
OVERHEAD = HEADER_SIZE + NONCE_SIZE + 16  # what sealing adds to a payload (lengths leak: README)
_WRAP_CONTEXT = b"PersistDict key bundle v1"


def _require_cryptography() -> None:
    """Checked when a key is given, before the store is opened: nothing is created without it."""
    try:
        import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
    except ImportError as exc:
        raise ImportError("encryption_key= needs the 'cryptography' package: pip install 'PersistDict[crypto]'") from exc


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _hkdf(master: bytes, salt: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(master)


# -- key sources ----------------------------------------------------------------------------------

def _checked(key: Any, where: str) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{where} must give bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise EncryptionError(f"{where} must be exactly {KEY_SIZE} bytes (AES-256), not {len(key)}")
    return key


class KeySource:
    """Where a master key comes from; ``get()`` returns its 32 bytes. Never shows the key."""

    def get(self) -> bytes:
        raise NotImplementedError


class RawKey(KeySource):
    """A key given as bytes: pickling it (to hand the store to a worker) writes it in clear, so
    that is refused unless the user allowed it (``allow_pickling_key=True``)."""

    def __init__(self, key: bytes, picklable: bool) -> None:
        self._key = _checked(key, "encryption_key")
        self.picklable = picklable

    def get(self) -> bytes:
        return self._key

    def __reduce__(self) -> tuple[Any, ...]:
        if not self.picklable:
            raise KeyNotPicklableError(
                "this PersistDict was given its encryption key as bytes, which pickling would write in "
                "clear; give encryption_key as the name of an environment variable or a picklable callable "
                "that returns the key, or pass allow_pickling_key=True")
        return (RawKey, (self._key, True))

    def __repr__(self) -> str:
        return "RawKey(<hidden>)"


class EnvKey(KeySource):
    """A key read from an environment variable: 64 hex digits or the base64 of 32 bytes."""

    def __init__(self, name: str) -> None:
        if not name:
            raise EncryptionError("encryption_key: the name of an environment variable cannot be empty")
        self.name = name

    def get(self) -> bytes:
        text = os.environ.get(self.name)
        if text is None:
            raise EncryptionError(f"encryption_key: environment variable {self.name!r} is not set")
        text = text.strip()
        try:
            key = bytes.fromhex(text) if len(text) == 2 * KEY_SIZE else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            key = b""
        if len(key) != KEY_SIZE:
            raise EncryptionError(f"encryption_key: environment variable {self.name!r} must hold {KEY_SIZE} bytes "
                                  f"as {2 * KEY_SIZE} hex digits or base64")
        return key

    def __repr__(self) -> str:
        return f"EnvKey({self.name!r})"


class CallableKey(KeySource):
    """A key returned by a callable (a secrets manager's client, say); pickled as the callable."""

    def __init__(self, func: Callable[[], bytes]) -> None:
        self.func = func

    def get(self) -> bytes:
        return _checked(self.func(), "the encryption_key callable")

    def __reduce__(self) -> tuple[Any, ...]:
        try:
            pickle.dumps(self.func)
        except Exception as exc:
            raise KeyNotPicklableError(
                "the encryption_key callable cannot be pickled (a lambda or a local function?): give a "
                "module-level function or a functools.partial of one") from exc
        return (CallableKey, (self.func,))

    def __repr__(self) -> str:
        return f"CallableKey({getattr(self.func, '__qualname__', type(self.func).__qualname__)})"


def key_source(spec: Any, allow_pickling_key: bool = False) -> KeySource:
    """``encryption_key=`` as given: bytes, the name of an environment variable, or a callable."""
    _require_cryptography()
    if isinstance(spec, KeySource):
        return spec
    if isinstance(spec, (bytes, bytearray, memoryview)):
        return RawKey(bytes(spec), allow_pickling_key)
    if isinstance(spec, str):
        return EnvKey(spec)
    if callable(spec):
        return CallableKey(spec)
    raise TypeError("encryption_key must be 32 bytes, the name of an environment variable or a callable "
                    f"returning 32 bytes, not {type(spec).__name__}")


# -- the key bundle and its record ------------------------------------------------------------------

def fingerprint(master: bytes, store_id: bytes) -> str:
    """Names a master key in the key record without revealing it (HKDF output)."""
    return _hkdf(master, store_id, b"PersistDict master fingerprint v1", 8).hex()


class Bundle:
    """The unwrapped secrets: the generation writes use, the index key, every data key by generation."""

    def __init__(self, current: int, index_key: bytes, data_keys: dict[int, bytes]) -> None:
        self.current, self.index_key, self.data_keys = current, index_key, data_keys

    def pack(self) -> bytes:
        parts = [struct.pack(">I", self.current), self.index_key]
        parts += [struct.pack(">I", gen) + key for gen, key in sorted(self.data_keys.items())]
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes) -> Bundle:
        current, index_key, keys = struct.unpack_from(">I", data)[0], data[4:36], {}
        for pos in range(36, len(data), 36):
            keys[struct.unpack_from(">I", data, pos)[0]] = data[pos + 4:pos + 36]
        return cls(current, index_key, keys)


def wrap(master: bytes, store_id: bytes, bundle: Bundle) -> str:
    kek = _hkdf(master, store_id, b"PersistDict key wrap v1")
    nonce = os.urandom(NONCE_SIZE)
    aad = _WRAP_CONTEXT + store_id + fingerprint(master, store_id).encode()
    return (nonce + _aesgcm(kek).encrypt(nonce, bundle.pack(), aad)).hex()


def unwrap(master: bytes, store_id: bytes, blob: str) -> Bundle | None:
    """The bundle ``blob`` wraps under ``master``; None if ``master`` is not its key or it was altered."""
    from cryptography.exceptions import InvalidTag

    kek = _hkdf(master, store_id, b"PersistDict key wrap v1")
    raw = bytes.fromhex(blob)
    aad = _WRAP_CONTEXT + store_id + fingerprint(master, store_id).encode()
    try:
        return Bundle.unpack(_aesgcm(kek).decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], aad))
    except InvalidTag:
        return None


class KeyRecord:
    """The meta row: store id, the fingerprint of the key a rotation moves to (or None), wraps by fingerprint."""

    def __init__(self, store_id: bytes, target: str | None, wraps: dict[str, str]) -> None:
        self.store_id, self.target, self.wraps = store_id, target, wraps

    def encode(self) -> bytes:
        return json.dumps({"version": RECORD_VERSION, "store": self.store_id.hex(), "rotating_to": self.target,
                           "wraps": self.wraps}, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes, path: str) -> KeyRecord:
        try:
            data = json.loads(raw)
            version = data["version"]
            if version == RECORD_VERSION:
                return cls(bytes.fromhex(data["store"]), data["rotating_to"], dict(data["wraps"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise EncryptionError(f"database {path!r}: its encryption record (meta row 'encryption') is "
                                  "damaged; nothing can be decrypted without it") from exc
        # outside the try: EncryptionError is a ValueError, which would be reported as damage
        raise EncryptionError(f"database {path!r}: its encryption record has version {version!r}, "
                              f"this version of PersistDict reads {RECORD_VERSION}")

    def open(self, master: bytes, path: str) -> Bundle:
        """The bundle, unwrapped with ``master``; WrongEncryptionKeyError if it is not one of the store's keys."""
        blob = self.wraps.get(fingerprint(master, self.store_id))
        bundle = None if blob is None else unwrap(master, self.store_id, blob)
        if bundle is None:
            raise WrongEncryptionKeyError(
                f"database {path!r}: wrong encryption key (the key check failed); nothing was read, written or "
                "deleted. If the key was rotated, open it with the new key")
        return bundle


def new_record(master: bytes) -> tuple[KeyRecord, Bundle]:
    store_id = os.urandom(16)
    bundle = Bundle(1, os.urandom(KEY_SIZE), {1: os.urandom(KEY_SIZE)})
    return KeyRecord(store_id, None, {fingerprint(master, store_id): wrap(master, store_id, bundle)}), bundle


# -- sealing --------------------------------------------------------------------------------------

class Sealer:
    """Seals and opens values and keys with a bundle's data keys, and hashes lookups with its index key."""

    def __init__(self, store_id: bytes, bundle: Bundle) -> None:
        self.store_id = store_id
        self.bundle = bundle
        self.index_key = bundle.index_key
        self.current = bundle.current
        self._aeads = {gen: _aesgcm(key) for gen, key in bundle.data_keys.items()}
        self._header = _HEADER.pack(b"E", self.current)
        self._seal = self._aeads[self.current].encrypt

    def lookup(self, plain: bytes) -> bytes:
        """The lookup the engine sees: a tag and the HMAC-SHA256 of the key's own lookup encoding."""
        return b"e" + hmac.digest(self.index_key, plain, "sha256")

    def seal_value(self, lookup: bytes, kind: int, payload: bytes) -> bytes:
        header, nonce = self._header, os.urandom(NONCE_SIZE)
        return header + nonce + self._seal(nonce, payload, b"v" + self.store_id + header + bytes((kind,)) + lookup)

    def seal_key(self, exact: bytes) -> bytes:
        header, nonce = self._header, os.urandom(NONCE_SIZE)
        return header + nonce + self._seal(nonce, exact, b"k" + self.store_id + header)

    def generation(self, blob: bytes | memoryview) -> int:
        if len(blob) < OVERHEAD or blob[0] != 0x45:  # "E"
            raise TamperedRecordError("not a sealed record (the store's encryption was bypassed or it was altered)")
        return _HEADER.unpack_from(blob)[1]  # type: ignore[no-any-return]

    def _open(self, blob: bytes | memoryview, aad_tail: bytes, what: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        gen = self.generation(blob)
        aead = self._aeads.get(gen)
        if aead is None:
            raise UnknownGeneration(gen)
        blob = bytes(blob)
        header = blob[:HEADER_SIZE]
        try:
            return aead.decrypt(blob[HEADER_SIZE:HEADER_SIZE + NONCE_SIZE], blob[HEADER_SIZE + NONCE_SIZE:],
                                what.encode()[:1] + self.store_id + header + aad_tail)
        except InvalidTag:
            raise TamperedRecordError(
                f"the {what} failed authentication: altered, moved from another entry or another store") from None

    def open_value(self, lookup: bytes, kind: int, blob: bytes | memoryview) -> bytes:
        return self._open(blob, bytes((kind,)) + lookup, "value")

    def open_key(self, blob: bytes | memoryview) -> bytes:
        return self._open(blob, b"", "key")


class UnknownGeneration(Exception):
    """A blob sealed with a data key this bundle lacks (the store's key was rotated since it was read)."""

    def __init__(self, gen: int) -> None:
        super().__init__(gen)
        self.gen = gen
