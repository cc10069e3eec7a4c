"""Async writes and fork(): a child forked after (or while) the parent's committer thread works
gets a committer of its own; the parent's queued writes stay the parent's."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from PersistDict import PersistDict


def _child_writes(d: PersistDict) -> int:
    """In a forked child: one aset on a new loop (bounded: an inherited committer would never run
    it) and a read back; the exit status says what happened."""
    async def write() -> None:
        await asyncio.wait_for(d.aset("from-child", os.getpid()), timeout=20)

    try:
        asyncio.run(write())
        return 0 if d["from-child"] == os.getpid() else 3
    except asyncio.TimeoutError:
        return 2
    except BaseException:  # noqa: BLE001 - any other failure: its own status
        return 4


def _fork_and_wait(d: PersistDict) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(_child_writes(d))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("location", ["lmdb", ":memory:"])
def test_a_child_forked_after_async_writes_writes_with_its_own_committer(location, tmp_path):
    """The parent's committer thread (idle) does not exist in a forked child: the child's aset lands."""
    d = PersistDict(str(tmp_path / "db") if location == "lmdb" else location, background_thread="disabled")
    try:
        asyncio.run(d.aset("from-parent", 1))  # the committer thread now exists, idle
        assert _fork_and_wait(d) == 0
        assert d["from-parent"] == 1
    finally:
        d.close()


def test_a_child_forked_while_the_committer_is_mid_batch_writes_and_the_parent_loses_nothing():
    """Forked while the parent's committer waits inside a batch (another thread holds the memory
    engine's transaction) with more writes queued: the child's aset lands; the parent's all land."""
    d = PersistDict(":memory:", background_thread="disabled")
    inside, leave = threading.Event(), threading.Event()

    def hold_transaction() -> None:
        with d.transaction():
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=hold_transaction)
    holder.start()
    inside.wait(30)

    async def main() -> int:
        first = asyncio.create_task(d.aset("parent-0", 0))
        await asyncio.sleep(0.05)  # its batch is in the committer thread, waiting for the transaction
        more = [asyncio.create_task(d.aset(f"parent-{n}", n)) for n in range(1, 10)]
        await asyncio.sleep(0)  # queued behind it
        status = await asyncio.to_thread(_fork_and_wait, d)
        leave.set()
        await asyncio.gather(first, *more)
        return status

    try:
        assert asyncio.run(main()) == 0
        holder.join(30)
        assert {f"parent-{n}" for n in range(10)} <= set(d)
        assert "from-child" not in d  # the child's write stayed in its own memory
    finally:
        leave.set()
        d.close()
