"""``transaction()`` on Redis: a namespace-wide lock plus copies of the namespace's tables.

How: the block takes the namespace's ``TXN`` key (SET NX with a random token, 60 s, renewed by
each write of the block) and copies the six tables (``COPY``, on the server). Every write of
the block runs the ordinary write script on the copies, so the block reads its own writes and
nobody else sees them; every other writer, on any host, finds ``TXN`` held and waits (as LMDB's
writers wait for its write lock), while readers go on reading the last commit. The commit is one
script: the copies replace the tables (``RENAME``), the clock moves once, the changed lookups are
logged and published, ``TXN`` is freed. A nested block is a savepoint: a copy of its parent's
copies, renamed over them on success, dropped on failure. A block that raises drops its copies.

Cost: the copies take time and memory in proportion to the namespace (``COPY`` of each table):
transaction() suits namespaces of up to some hundred thousand entries; the single writes
(``set``, ``set_many``, ``incr``, ``compare_and_set``, ``get_or_set``) are atomic scripts and
need no block. A process killed inside a block leaves ``TXN`` for at most 60 s (other writers
wait that long) and its copies for an hour (then Redis drops them).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from ...exceptions import TransactionError

# the namespace's tables, each a Redis key: E entries (and the clock), O insertion order, A access
# times, X expiries, M meta rows, K the lookups sorted by bytes (prefix lookups). A block copies
# them all; the scripts of scripts.py take them as KEYS in this order.
TABLES = ("E", "O", "A", "X", "M", "K")


class Block(NamedTuple):
    """One level of this thread's transaction(): its copies of the tables."""

    token: bytes
    keys: list[bytes]  # its copies of TABLES
    changed: bytes  # the set of lookups the whole transaction changed


class RedisTransactions:
    """The transaction() part of RedisEngine."""

    prefix: bytes
    channel: bytes
    feed: Any
    _writer: threading.RLock

    if TYPE_CHECKING:  # RedisEngine's
        def run_script(self, name: str, keys: Any, args: Any) -> Any: ...
        def table(self, name: str) -> bytes: ...

    def init_transactions(self) -> None:
        self._blocks = threading.local()

    def block(self) -> Block | None:
        """This thread's innermost transaction() level, or None outside one."""
        stack = getattr(self._blocks, "stack", None)
        return stack[-1] if stack else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        from .feed import CHANGES_KEPT

        stack: list[Block] = self._blocks.__dict__.setdefault("stack", [])
        outer = not stack
        if outer:
            self._writer.acquire()  # this process's other threads wait here, not by polling
        try:
            token = stack[0].token if stack else uuid.uuid4().hex.encode()
            level = len(stack) + 1
            base = self.prefix + b"t:" + token + b":"
            block = Block(token, [base + b"%d:" % level + name.encode() for name in TABLES], base + b"changed")
            sources = stack[-1].keys if stack else [self.table(name) for name in TABLES]
            if outer:
                self._begin(block, sources)
            else:
                self.run_script("begin", [self.table("TXN"), *sources, *block.keys], [token, 0])
            stack.append(block)
            feed = self.feed
            if outer:
                feed.local.depth = 1
                feed.txn_holders.append(None)
            else:
                feed.local.depth += 1
            try:
                yield
            except BaseException:
                stack.pop()
                drop = [*block.keys, block.changed] if outer else block.keys
                self.run_script("abort", [self.table("TXN"), *drop], [token, 1 if outer else 0])
                raise
            else:
                stack.pop()
                if outer:
                    result = self.run_script(
                        "commit", [self.table("TXN"), *block.keys, *map(self.table, TABLES), self.table("LOG"),
                                   block.changed], [token, self.channel, CHANGES_KEPT])
                    if int(result[0]) < 0:
                        raise TransactionError(
                            "transaction() lost the namespace's lock (held over 60 s without a write): "
                            "nothing of the block was committed")
                    if len(result) > 1 and int(result[1]):
                        feed.saw(int(result[0]))
                else:
                    self.run_script("release", [*block.keys, *stack[-1].keys], [])
            finally:
                if outer:
                    feed.local.depth = 0
                    feed.txn_holders.pop()
                else:
                    feed.local.depth -= 1
        finally:
            if outer:
                stack.clear()
                self._writer.release()

    def _begin(self, block: Block, sources: list[bytes]) -> None:
        """Take the namespace (waiting while another client's block holds it) and copy its tables."""
        delay = 0.0005
        while not int(self.run_script("begin", [self.table("TXN"), *sources, *block.keys], [block.token, 1])):
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
