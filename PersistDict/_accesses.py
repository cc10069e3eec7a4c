"""Access times recorded in memory by reads, until ``flush_atimes`` writes them.

A read must not write to LMDB (a write transaction per read would serialise
readers), so reads note ``seq -> time`` here and the maintenance pass writes
them in batches.

The notes live in a fixed set of dicts chosen by ``seq``, not in one dict: a
dict that grows to hundreds of thousands of entries stalls the insert that
triggers its resize for tens of milliseconds (30 ms at 700k entries here),
and that insert is a foreground read. Each shard resizes at 1/64 of the size.

Reads note without a lock (a dict store is atomic under the GIL). A flush
drains the shards by ``pop`` instead of swapping them out, so an access noted
while it runs stays for the next flush and none is lost.
"""

from __future__ import annotations

from collections.abc import Iterator

SHARD_BITS = 6
SHARD_MASK = (1 << SHARD_BITS) - 1


class PendingAccesses:
    """seq -> last access time not yet written. The read path writes
    ``shards[seq & SHARD_MASK][seq] = when`` directly (no method call)."""

    __slots__ = ("shards",)

    def __init__(self) -> None:
        self.shards: tuple[dict[int, float], ...] = tuple({} for _ in range(SHARD_MASK + 1))

    def note(self, seq: int, when: float) -> None:
        self.shards[seq & SHARD_MASK][seq] = when

    def get(self, seq: int, default: float = 0.0) -> float:
        return self.shards[seq & SHARD_MASK].get(seq, default)

    def discard(self, seq: int) -> None:
        self.shards[seq & SHARD_MASK].pop(seq, None)

    def clear(self) -> None:
        for shard in self.shards:
            shard.clear()

    def drain(self, batch: int) -> Iterator[list[tuple[int, float]]]:
        """Remove the noted accesses, yielding them ``batch`` at a time (popped as they
        are yielded, so the caller's work on one batch runs between short pure-Python stretches)."""
        chunk: list[tuple[int, float]] = []
        for shard in self.shards:
            for seq in list(shard):
                when = shard.pop(seq, None)
                if when is not None:  # None: discarded meanwhile
                    chunk.append((seq, when))
                    if len(chunk) >= batch:
                        yield chunk
                        chunk = []
        if chunk:
            yield chunk

    def __len__(self) -> int:
        return sum(map(len, self.shards))
