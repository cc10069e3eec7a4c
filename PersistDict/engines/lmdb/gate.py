"""The count of a store's open transactions: map resizes and write aborts wait for it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

class TxnGate:
    """Counts open transactions so the map can be resized when there are none, and so a write
    transaction can be aborted when no other thread is inside LMDB.

    Entering is an append and a flag read (atomic under the GIL, no lock);
    the resizer raises its flag, then waits for the count to reach zero; an
    abort raises its own flag, then waits until only its own transaction and
    write begins queued on its writer lock are left (see ``quiesced``).
    """

    def __init__(self) -> None:
        # deques, not lists: appending to and popping from an empty list allocates and frees its
        # storage every time (measured: 41 against 25 ns a pair; every read enters the gate)
        self.open_txns: deque[None] = deque()
        self.write_begins: deque[None] = deque()  # open_txns entries still waiting for LMDB's writer lock
        self.resizing = False
        self.resize_lock = threading.Lock()
        self.quiescing = False
        self.quiesce_lock = threading.Lock()

    def enter(self) -> None:
        while True:
            self.open_txns.append(None)
            if not (self.resizing or self.quiescing):
                return
            self.open_txns.pop()
            self.wait()

    def wait(self) -> None:
        """Until no resize and no abort holds new transactions back."""
        with self.resize_lock:
            pass
        with self.quiesce_lock:
            pass

    def leave(self) -> None:
        self.open_txns.pop()

    @contextmanager
    def exclusive(self, own: int = 0) -> Iterator[None]:
        """Hold new transactions back until the open ones, but the caller's ``own``, have ended."""
        with self.resize_lock:
            self.resizing = True
            try:
                while len(self.open_txns) > own:
                    time.sleep(0.0005)
                yield
            finally:
                self.resizing = False

    @contextmanager
    def quiesced(self) -> Iterator[None]:
        """For the thread holding the write transaction, before it aborts it: py-lmdb 2 and 3 make
        a write abort() wait until no other thread of the process is inside an LMDB call, which
        never happens while two threads read in a loop (the abort hangs, holding the writer lock
        of every process). So hold new transactions back and let the open ones end; write begins
        are left out (they wait for the lock this abort releases, and py-lmdb does not wait for
        them). Bounded by ABORT_WAIT_SECONDS in case a count is off."""
        with self.quiesce_lock:
            self.quiescing = True
            try:
                deadline = time.monotonic() + ABORT_WAIT_SECONDS
                while len(self.open_txns) - len(self.write_begins) > 1 and time.monotonic() < deadline:
                    time.sleep(0.0002)
                yield
            finally:
                self.quiescing = False


ABORT_WAIT_SECONDS = 5.0
