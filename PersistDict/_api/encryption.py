"""An encrypted store (``encryption_key=``): opening it (the key check) and rotating its key.

The scheme is _codec/crypto.py's; the sealing engine is _codec/sealed.py's. Rotation, crash-safe:

1. the key record is rewritten (compare-and-set) to *rotating*: a new data key (the next
   generation) joins the bundle, which is wrapped under the old master key and the new one, and
   writes use the new generation from then on. Either key opens the store;
2. every live entry sealed with an older generation is re-sealed with the new one, ``batch``
   entries per transaction, each only if it is still the version read (other writers win);
3. the record is rewritten to wrap the bundle under the new key only.

A process killed anywhere leaves one of the three records: before 1 the old key opens the store,
between 1 and 3 both do (and ``rotate_encryption_key(new_key)`` resumes where it was), after 3 the
new key does. Older data keys stay in the bundle (wrapped under the new key), so an entry a
writer sealed with an older generation in the instant before step 1 is still read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._codec.crypto import KEY_RECORD, Bundle, KeyRecord, KeySource, Sealer, fingerprint, key_source, new_record, wrap
from .._codec.sealed import SealedEngine
from ..engines.base import Item
from ..exceptions import EncryptionError, TamperedRecordError, TransactionError, WrongEncryptionKeyError
from .options import check_number
from .state import StoreState, typechecked


class Encryption(StoreState):
    """Opening an encrypted store and ``rotate_encryption_key``."""

    if TYPE_CHECKING:  # set by _open_encrypted, on encrypted stores only
        _key_source: KeySource | None
        _key_raw: bytes | None  # the key record as last read
        _sealer: Sealer | None

    def _open_encrypted(self, source: KeySource, master: bytes) -> None:
        """Check the key (``master``, from ``source``) against the store's key record (creating it in
        a new store), then put the sealing engine between the mapping and the engine."""
        engine = self._engine
        self._key_source = source
        raw = engine.setting(KEY_RECORD)
        if raw is None:
            if engine.count():
                raise EncryptionError(f"database {self.path!r} holds entries but no encryption record (meta row "
                                      "'encryption'): it cannot be decrypted")
            record, _ = new_record(master)
            engine.put_setting(KEY_RECORD, record.encode(), None)  # another process may have won: read it
            raw = engine.setting(KEY_RECORD)
            assert raw is not None  # put_setting never deletes it
        self._key_raw = raw
        record = KeyRecord.decode(raw, self.path)
        self._sealer = sealer = Sealer(record.store_id, record.open(master, self.path))
        self._keys.use_index(sealer.lookup)
        self._engine = sealed = SealedEngine(engine, self._keys, sealer, self._refresh_key)  # type: ignore[assignment]
        self._engine_get = sealed.get

    def _refresh_key(self) -> Sealer:
        """The sealer for the key record as stored now (re-read; unwrapped again only if it changed)."""
        sealer = self._sealer
        assert sealer is not None and self._key_source is not None
        raw = self._engine.setting(KEY_RECORD)
        if raw == self._key_raw or raw is None:
            return sealer
        record = KeyRecord.decode(raw, self.path)
        try:
            bundle = record.open(self._key_source.get(), self.path)  # a provider may give the new key by now
        except WrongEncryptionKeyError:
            raise WrongEncryptionKeyError(
                f"database {self.path!r}: its encryption key was rotated to another key; reopen it with the new "
                "key (nothing was changed)") from None
        self._key_raw = raw
        self._sealer = Sealer(record.store_id, bundle)
        return self._sealer

    @typechecked
    def rotate_encryption_key(self, new_key: Any, batch: int = 256, *,
                              progress: Callable[[int, int], Any] | None = None) -> int:
        """Re-seal every entry with a new data key and wrap the store's keys under ``new_key`` (bytes,
        an environment variable's name or a callable, as ``encryption_key``); returns how many entries
        were re-sealed. ``batch`` entries per transaction: other processes keep reading and writing.
        Crash-safe: after a kill the store opens with the old or the new key, and calling this again
        (with either key open) resumes. Afterwards only ``new_key`` opens the store.
        ``progress(done, total)``: entries looked at, after each batch."""
        check_number("batch", batch, "a positive count of entries")
        engine = self._check_open()
        if not isinstance(engine, SealedEngine):
            raise EncryptionError("rotate_encryption_key(): this store is not encrypted (open it with encryption_key=)")
        if self._feed.in_transaction():  # its commits must be its own: a rolled-back rotation would strand this instance
            raise TransactionError("rotate_encryption_key() inside transaction(): leave the block first")
        source = key_source(new_key, self._settings["allow_pickling_key"])
        new_master = source.get()
        self._begin_rotation(engine, new_master)
        moved = self._reseal_all(engine, int(batch), progress)
        self._finish_rotation(engine, new_master)
        self._key_source = source
        self._settings["encryption_key"] = source
        engine.sealer = self._refresh_key()
        self._log("encryption key rotated: {} entries re-sealed", moved)
        return moved

    def _begin_rotation(self, engine: SealedEngine, new_master: bytes) -> None:
        while True:
            raw = engine.setting(KEY_RECORD)
            sealer = self._refresh_key()
            record = KeyRecord.decode(raw, self.path)  # type: ignore[arg-type]
            new_print = fingerprint(new_master, record.store_id)
            if record.target is not None:
                if record.target != new_print:
                    raise EncryptionError(f"database {self.path!r}: a rotation to another key is under way; "
                                          "finish it first (rotate_encryption_key with that key)")
                return  # resume it
            if new_print in record.wraps:
                raise ValueError("rotate_encryption_key(): new_key is the store's current key")
            bundle = sealer.bundle
            generation = max(bundle.data_keys) + 1
            grown = Bundle(generation, bundle.index_key, {**bundle.data_keys, generation: os.urandom(32)})
            old_print, = record.wraps
            assert self._key_source is not None
            wraps = {old_print: wrap(self._key_source.get(), record.store_id, grown),
                     new_print: wrap(new_master, record.store_id, grown)}
            if engine.put_setting(KEY_RECORD, KeyRecord(record.store_id, new_print, wraps).encode(), raw):
                engine.sealer = self._refresh_key()
                return

    def _reseal_all(self, engine: SealedEngine, batch: int, progress: Callable[[int, int], Any] | None) -> int:
        """Step 2: re-seal every live entry sealed with an older generation, ``batch`` per transaction."""
        sealer = engine.sealer = self._refresh_key()
        lookups = []
        for sealed in engine.sealed_keys(self._clock()):
            try:
                lookups.append(sealer.lookup(self._keys.plain_lookup(sealer.open_key(sealed))))
            except TamperedRecordError as exc:  # as a damaged value below: left as it is, check() lists it
                self._log("rotation skipped a damaged entry: {}", exc)
        moved = 0
        base = engine.engine
        for start in range(0, len(lookups), batch):
            with base.transaction():  # one commit per batch; readers elsewhere see old or new, both open
                now = self._clock()
                for lookup in lookups[start:start + batch]:
                    record = base.find(lookup, now)
                    if record is None or (sealer.generation(record.payload) == sealer.current
                                          and sealer.generation(record.exact) == sealer.current):
                        continue
                    try:
                        opened = engine._record(record)
                    except TamperedRecordError as exc:  # left as it is (its data key stays): check() lists it
                        self._log("rotation skipped a damaged entry: {}", exc)
                        continue
                    assert opened is not None
                    item = Item(lookup, sealer.seal_key(opened.exact), record.kind,  # type: ignore[arg-type]
                                sealer.seal_value(lookup, record.kind, bytes(opened.payload)))
                    moved += engine.replace_sealed(item, record, now)
            if progress is not None:
                progress(min(start + batch, len(lookups)), len(lookups))
        return moved  # the front cache needs nothing: values did not change, and each commit names its lookups

    def _finish_rotation(self, engine: SealedEngine, new_master: bytes) -> None:
        while True:
            raw = engine.setting(KEY_RECORD)
            record = KeyRecord.decode(raw, self.path)  # type: ignore[arg-type]
            new_print = fingerprint(new_master, record.store_id)
            if record.target is None and list(record.wraps) == [new_print]:
                return  # finished by another process
            bundle = record.open(new_master, self.path)
            final = KeyRecord(record.store_id, None, {new_print: wrap(new_master, record.store_id, bundle)})
            if engine.put_setting(KEY_RECORD, final.encode(), raw):
                return

