"""The Redis engine's change feed: the commit clock and the keys each commit changed, for the front
cache's coherence rule (_frontcache/coherence.py), across hosts.

The clock lives on the server (field ``""`` of the entries hash, bumped by every write script,
which also logs the lookups it changed in a capped stream and publishes the new clock on the
namespace's channel). How a client learns of it:

- notified (the default): a listener thread subscribes to the channel and moves ``clock[0]``
  when a commit is published. ``views`` points at that list, so the hot read compares it without
  a call. Freshness: a commit made on another host is seen here once its message arrives (the
  network's latency plus the listener's turn at the GIL); until then a hot read may return the
  value that commit replaced. A commit of this process is seen at once (``saw``).
- while the subscription is not confirmed (at open, after a lost connection, after fork),
  ``views`` is None: every read asks the server for the clock (``last_commit``, one round
  trip), so the cache is never trusted on a clock that could be stale. The listener resubscribes
  with backoff and puts ``views`` back once it has read the clock again after subscribing.
- strict: ``views`` holds a :class:`ServerClock` whose item is read from the server on every look:
  each hot read costs one round trip and never returns a value older than the last acknowledged
  write of any host.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

CHANGES_KEPT = 1024  # commits the stream keeps: a reader further behind empties its cache
_LENGTH = struct.Struct("<I")


class ServerClock:
    """``views[0]`` in strict mode: ``[0]`` is the server's clock, read on every look."""

    __slots__ = ("_read",)

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def __getitem__(self, index: int) -> int:
        return self._read()


class RedisFeed:
    """The ChangeFeed of engines/base.py over one namespace."""

    def __init__(self, engine: Any, strict: bool) -> None:
        self._engine = engine
        self.strict = strict
        self.clock = [0]  # the last commit this process knows of (notified mode); only moves forward
        self._clock_lock = threading.Lock()
        self.views: Any = None  # None until the listener is subscribed (see the module's docstring)
        self.txn_holders: list[None] = []
        self.local = threading.local()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.connected = threading.Event()  # the listener is subscribed and caught up
        if strict:
            self.views = (ServerClock(self.server_clock), (0,))
        else:
            self.start()

    # -- the protocol --------------------------------------------------------------------------

    def last_commit(self) -> int:
        if self.views is None or self.strict:
            return self.server_clock()
        return self.clock[0]

    def in_transaction(self) -> bool:
        return bool(getattr(self.local, "depth", 0))

    def changes_since(self, since: int) -> tuple[int, set[bytes]] | None:
        engine = self._engine
        clock, entries = engine.run_script("changes", [engine.table("E"), engine.table("LOG")], [since])
        snapshot = int(clock)
        if snapshot < since or snapshot - since > CHANGES_KEPT:
            return None
        changed: set[bytes] = set()
        expected = since + 1
        for entry_id, fields in entries:
            number = int(entry_id.split(b"-", 1)[0])
            if number > snapshot:
                break
            if number != expected:
                return None  # a commit the stream no longer holds (trimmed, or the server lost it)
            fields = dict(zip(fields[::2], fields[1::2])) if isinstance(fields, list) else fields
            if b"all" in fields:
                return None
            changed.update(_unpack_lookups(fields[b"k"]))
            expected += 1
        return (snapshot, changed) if expected == snapshot + 1 else None

    # -- the clock -----------------------------------------------------------------------------

    def server_clock(self) -> int:
        clock = int(self._engine.command("HGET", self._engine.table("E"), b"") or 0)
        self.saw(clock)
        return clock

    def saw(self, clock: int) -> None:
        """A commit up to ``clock`` happened (this process's, or announced): the clock moves there.
        Under a lock: two threads moving it must not move it back (a cache valid at an older
        clock would then pass the hot read's check)."""
        if clock > self.clock[0]:
            with self._clock_lock:
                if clock > self.clock[0]:
                    self.clock[0] = clock

    # -- the listener --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="PersistDict redis feed", daemon=True)
        self._listener.start()

    def _listen(self) -> None:
        delay = 0.05
        stop = self._stop
        while not stop.is_set():
            pubsub = None
            try:
                pubsub = self._engine.client.pubsub()
                pubsub.subscribe(self._engine.channel)
                while not stop.is_set():  # the confirmation: from here on no commit is missed
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message["type"] == "subscribe":
                        break
                self.server_clock()
                self.views = (self.clock, self.clock)
                self.connected.set()
                delay = 0.05
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message["type"] == "message":
                        self.saw(int(message["data"]))
            except Exception:  # noqa: BLE001 - the server is away: readers ask it directly meanwhile
                pass
            finally:
                self.views = None  # not subscribed: the cache is not trusted without asking
                self.connected.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - the connection is gone already
                        pass
            stop.wait(delay)
            delay = min(delay * 2, 1.0)

    def stop(self) -> None:
        """The listener ends within its poll (0.5 s), or at once when the engine closes its client."""
        self._stop.set()
        self._listener = None

    def after_fork_in_child(self) -> None:
        self.txn_holders = []
        self.local = threading.local()
        self._clock_lock = threading.Lock()
        self.connected = threading.Event()
        if not self.strict:
            self.views = None
            self.start()


def _unpack_lookups(data: bytes) -> list[bytes]:
    lookups, at = [], 0
    while at < len(data):
        (length,) = _LENGTH.unpack_from(data, at)
        lookups.append(data[at + 4:at + 4 + length])
        at += 4 + length
    return lookups


def wait_connected(feed: RedisFeed, seconds: float) -> bool:
    """Wait until the listener is subscribed (tests and benchmarks that want the hot path)."""
    deadline = time.monotonic() + seconds
    while not feed.connected.is_set() and time.monotonic() < deadline:
        feed.connected.wait(0.05)
    return feed.connected.is_set()
