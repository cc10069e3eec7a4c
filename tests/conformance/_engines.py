"""The engines the conformance suite runs on, and the factory that opens their stores."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from PersistDict import PersistDict


# every engine the package ships, and each again under encryption (its keys and values sealed above it)
ENGINES = ["lmdb", "memory", "redis", "lmdb+encrypted", "memory+encrypted", "redis+encrypted"]
KEY_VARIABLE = "PERSISTDICT_CONFORMANCE_KEY"  # the encrypted stores' key: a provider, so that they pickle
os.environ.setdefault(KEY_VARIABLE, "5e" * 32)


class Stores:
    """Opens stores of one engine for a test; each open() is a new, empty store. All are closed at teardown."""

    def __init__(self, engine: str, directory: Path, redis_url: str | None = None) -> None:
        self.engine, _, variant = engine.partition("+")
        self.encrypted = variant == "encrypted"
        self.redis_url = redis_url  # the test server's (engine "redis"): each open() takes a new namespace
        self.persists = self.engine != "memory"  # whether close() then reopen() keeps the contents
        self._directory = directory
        self._opened: list[PersistDict] = []

    def open(self, **options: Any) -> PersistDict:
        if self.engine == "memory":
            return self._open(":memory:", options)
        if self.engine == "redis":
            options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
            return self._open(self.redis_url, options)
        return self._open(self._directory / f"store-{len(self._opened)}", options)

    def reopen(self, store: PersistDict, **options: Any) -> PersistDict:
        """Close ``store`` and open its location again (only for engines that persist)."""
        assert self.persists, f"the {self.engine} engine keeps nothing after close()"
        store.close()
        if self.engine == "redis":
            options.setdefault("namespace", store._settings["namespace"])
        return self._open(store.path, options)

    def _open(self, location: Any, options: dict[str, Any]) -> PersistDict:
        options.setdefault("background_thread", "disabled")
        if self.encrypted:
            options.setdefault("encryption_key", KEY_VARIABLE)
        store = PersistDict(location, **options)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
