"""Cross-process named locks on the store (``d.lock(name)``), built on the engine's named mutex
(``Engine.claim``/``unclaim``): a claim with a holder token and an expiry, taken atomically when
free or expired, deleted only by its holder. A holder that dies frees it when its ttl runs out."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from loguru import logger

from ..exceptions import LockTimeoutError, TransactionError
from .state import StoreState, typechecked

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

MAX_NAME_BYTES = 400  # the claim row's key (with its prefix) stays under LMDB's 511-byte keys
FIRST_WAIT, LONGEST_WAIT = 0.001, 0.05  # polling backoff while another holder has the lock


class StoreLock:
    """One holder's handle on a named lock (``d.lock(name)``); a context manager. Not reentrant:
    acquiring it again while held (through this handle or another one, in any thread) waits like
    any other contender. Hold it for less than ``ttl`` seconds, or call :meth:`renew`."""

    def __init__(self, store: Any, name: str, ttl: float, timeout: float | None, blocking: bool,
                 row: bytes | None = None) -> None:
        self._store = store
        self.name = name
        self._row = b"user:" + name.encode("utf-8", "surrogatepass") if row is None else row  # see key_lock
        self.ttl = ttl
        self.timeout = timeout
        self.blocking = blocking
        self._token: bytes | None = None

    @property
    def held(self) -> bool:
        """Whether this handle acquired the lock (and has not released it; its ttl may have run out)."""
        return self._token is not None

    def acquire(self) -> bool:
        """Take the lock, waiting up to ``timeout`` (None: forever) if ``blocking``; whether it did."""
        if self._token is not None:
            raise RuntimeError(f"lock {self.name!r} is already held through this handle (locks are not reentrant)")
        store = self._store
        if store._feed.in_transaction():
            raise TransactionError("lock() inside transaction(): other processes would not see the claim until "
                                   "the block commits; take the lock first")
        token = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}".encode()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        wait = FIRST_WAIT
        while True:
            now = store._clock()
            if store._check_open().claim(self._row, token, now, now + self.ttl):
                self._token = token
                return True
            if not self.blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            pause = wait if deadline is None else min(wait, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            wait = min(wait * 2, LONGEST_WAIT)

    async def aacquire(self) -> bool:
        """:meth:`acquire` for async code: each try runs off the event loop, the waits are the loop's."""
        if self._token is not None:
            raise RuntimeError(f"lock {self.name!r} is already held through this handle (locks are not reentrant)")
        store = self._store
        if store._feed.in_transaction():
            raise TransactionError("lock() inside transaction(): take the lock first")
        token = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}".encode()
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        wait = FIRST_WAIT
        while True:
            now = store._clock()
            engine = store._check_open()
            if await loop.run_in_executor(None, engine.claim, self._row, token, now, now + self.ttl):
                self._token = token
                return True
            if not self.blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(wait if deadline is None else min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, LONGEST_WAIT)

    async def __aenter__(self) -> Self:
        if not await self.aacquire():
            raise LockTimeoutError(f"lock {self.name!r} not acquired: held by another holder "
                                   f"({'not blocking' if not self.blocking else f'timeout={self.timeout}'})")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.__exit__, kind, exc, tb)

    def renew(self) -> bool:
        """Extend the hold to ``ttl`` seconds from now; False if it was lost (expired and taken)."""
        if self._token is None:
            return False
        now = self._store._clock()
        if self._store._check_open().claim(self._row, self._token, now, now + self.ttl):
            return True
        self._token = None
        return False

    def release(self) -> bool:
        """Free the lock if this handle still holds it; False if its ttl ran out and another took it."""
        token, self._token = self._token, None
        return token is not None and self._store._check_open().unclaim(self._row, token)

    def __enter__(self) -> Self:
        if not self.acquire():
            raise LockTimeoutError(f"lock {self.name!r} not acquired: held by another holder "
                                   f"({'not blocking' if not self.blocking else f'timeout={self.timeout}'})")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.release():
            logger.warning("lock {!r} expired (ttl={}) before its holder released it; another may have held "
                           "it meanwhile", self.name, self.ttl)


class Locks(StoreState):
    """``d.lock(name)``."""

    @typechecked
    def lock(self, name: str, *, ttl: int | float = 60, timeout: int | float | None = None,
             blocking: bool = True) -> StoreLock:
        """A lock named ``name`` shared by every thread and process using this store: ``with
        d.lock("job"): ...``. ``ttl``: seconds after which a holder that died (or still holds it)
        loses it; ``timeout``: the longest wait (None: forever); ``blocking=False``: do not wait.
        Entering raises ``LockTimeoutError`` if it was not acquired. Not reentrant."""
        if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise ValueError(f"lock name must be 1 to {MAX_NAME_BYTES} bytes in UTF-8")
        if isinstance(ttl, bool) or not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"lock ttl must be a finite number of seconds > 0, not {ttl!r}")
        if timeout is not None and (isinstance(timeout, bool) or not (math.isfinite(timeout) and timeout >= 0)):
            raise ValueError(f"lock timeout must be None or a finite number of seconds >= 0, not {timeout!r}")
        self._check_open()
        return StoreLock(self, name, float(ttl), None if timeout is None else float(timeout), blocking)

    def alock(self, name: str, *, ttl: int | float = 60, timeout: int | float | None = None,
              blocking: bool = True) -> StoreLock:
        """:meth:`lock` for async code: ``async with d.alock("job"): ...`` waits without blocking the loop."""
        return self.lock(name, ttl=ttl, timeout=timeout, blocking=blocking)

    def _key_lock(self, lookup: bytes, ttl: float) -> StoreLock:
        """The lock of one entry (``get_or_set``): its own namespace, apart from ``lock(name)``'s."""
        row = b"key:" + hashlib.blake2b(lookup, digest_size=16).digest()
        return StoreLock(self, "<an entry's computation>", ttl, None, True, row)
