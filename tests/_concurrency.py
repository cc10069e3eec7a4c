"""Helpers of the thread and process tests: start, join and bound workers; drive a remote process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import _workers as w
import pytest

from PersistDict import PersistDict


CONTEXTS = ("fork", "spawn")


JOIN_TIMEOUT = 120  # generous: only reached if something hangs


def start_process(ctx: Any, target: Callable[..., Any], *args: Any) -> Any:
    process = ctx.Process(target=target, args=args, daemon=True)
    process.start()
    return process


def join_all(processes: list[Any], timeout: float = JOIN_TIMEOUT) -> None:
    """Wait for every process; fail (after killing the rest) on a hang or a non-zero exit code."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in processes if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, f"processes hung: {hung}"
    codes = [p.exitcode for p in processes]
    assert codes == [0] * len(processes), f"worker exit codes: {codes}"


def run_threads(n: int, target: Callable[[int], None], timeout: float = JOIN_TIMEOUT) -> None:
    """Run target(i) in n threads; re-raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def wrapper(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001
            exc.add_note(traceback.format_exc())
            errors.append(exc)

    threads = [threading.Thread(target=wrapper, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads hung"
    if errors:
        raise errors[0]


def bounded(fn: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Run fn in a daemon thread; fail instead of hanging the suite if it blocks (e.g. a dead lock holder)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{what} blocked for {timeout}s (a lock or reader slot left by a killed process?)")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def recv(conn: Any, timeout: float = 60) -> Any:
    assert conn.poll(timeout), f"no message within {timeout}s"
    return conn.recv()


def check_no_torn_entries(d: PersistDict) -> None:
    """In one frozen state: every listed key has a value and metadata, and len agrees with iteration."""
    with d.transaction():
        keys = list(d)
        assert len(d) == len(keys), f"len(d)={len(d)} but iteration lists {len(keys)} keys"
        assert len(set(map(repr, keys))) == len(keys), "a key is listed twice"
        for key in keys:
            meta = d.metadata(key)  # KeyError here: an order row without its record
            assert meta.ctime <= meta.atime
            d[key]
        assert d.get_many(keys).keys() == set(keys)
        report = d.check()
        assert report.ok, f"check() found problems: {report}"


class Remote:
    """Drives a _workers.remote_executor process step by step through a pipe."""

    def __init__(self, ctx: Any, path: str, **open_kwargs: Any) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = start_process(ctx, w.remote_executor, path, child_conn, open_kwargs)
        child_conn.close()

    def __call__(self, op: str, *args: Any) -> Any:
        self.conn.send((op, *args))
        status, result = recv(self.conn)
        if status != "ok":
            raise AssertionError(f"remote {op} failed: {result}")
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self("stop")
            finally:
                join_all([self.process])


def in_another_process(db_path: Any, body: str) -> None:
    """Run ``body`` in a fresh interpreter with the store open as ``d`` (closed after); it must succeed."""
    code = f"""
from PersistDict import PersistDict
d = PersistDict({str(db_path)!r}, background_thread="disabled")
{body}
d.close()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def replay_oracle(results: list[dict[str, Any]]) -> dict[Any, Any]:
    """What a seeded replay must leave in the store: every worker's own oracle (their key ranges
    must not overlap) plus the exact totals of the shared counters."""
    expected: dict[Any, Any] = {}
    for r in results:
        assert not (expected.keys() & r["oracle"].keys()), "key ranges overlap"
        expected.update(r["oracle"])
    for name in w.SHARED_COUNTERS:
        total = sum(r["increments"][name] for r in results)
        if total:
            expected[name] = total
    return expected
