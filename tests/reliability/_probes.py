"""Children of the reliability suite, each run in a fresh interpreter by ``_harness.probe``:

    python -m reliability._probes NAME '{"json": "args"}'

A probe prints progress lines and, when it reaches its end, one JSON line (its report). The parent
judges the report; a probe itself only fails (non-zero exit) when it cannot run at all.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import sys
import time
import traceback
import warnings
from typing import Any

from PersistDict import PersistDict, PersistDictError, StorageFullError

MISSING = "<missing>"
ERROR = "<error>"


def _say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------
# Damaged files
# ---------------------------------------------------------------------------

class _Judge:
    """Collects what a damaged store answered: wrong values, foreign exceptions, leaked values."""

    def __init__(self, oracle: dict[Any, Any], either: dict[Any, list[Any]]) -> None:
        self.oracle, self.either = oracle, either
        self.report: dict[str, Any] = {"wrong": [], "foreign": [], "leaks": [], "errors": 0, "answers": 0}

    def acceptable(self, key: Any, value: Any) -> bool:
        if key in self.either:
            return value in self.either[key]
        return key in self.oracle and self.oracle[key] == value

    def call(self, what: str, fn: Any) -> Any:
        """``fn()``, or MISSING for a KeyError, or ERROR for a PersistDictError (noted)."""
        try:
            result = fn()
        except KeyError:
            return MISSING
        except PersistDictError as exc:
            self.report["errors"] += 1
            for link in _chain(exc):
                if "VALUE-" in repr(link) or "VALUE-" in str(link):
                    self.report["leaks"].append(f"{what}: {type(link).__name__} shows a stored value")
            return ERROR
        except Exception as exc:  # noqa: BLE001 - the finding: not a PersistDictError
            self.report["foreign"].append(f"{what}: {exc!r}\n{traceback.format_exc(limit=-4)}")
            return ERROR
        self.report["answers"] += 1
        return result

    def value(self, what: str, key: Any, value: Any) -> None:
        if value not in (MISSING, ERROR) and not self.acceptable(key, value):
            self.report["wrong"].append(f"{what} of {key!r:.60} returned {value!r:.60}")


def _chain(exc: BaseException | None) -> list[BaseException]:
    links = []
    while exc is not None and len(links) < 20:
        links.append(exc)
        exc = exc.__cause__ or exc.__context__
    return links


def _read_everything(d: PersistDict, judge: _Judge, keys: list[Any], stage: str) -> None:
    """Every read path, each key: the answer must be right, a miss, or a PersistDictError."""
    for key in keys:
        judge.value(f"{stage} get", key, judge.call(f"{stage} get({key!r:.40})", lambda: d.get(key, MISSING)))
        judge.value(f"{stage} []", key, judge.call(f"{stage} [{key!r:.40}]", lambda: d[key]))
        present = judge.call(f"{stage} in({key!r:.40})", lambda: key in d)
        if present is True and key not in judge.oracle and key not in judge.either:
            judge.report["wrong"].append(f"{stage}: {key!r:.60} in d, never written")
        judge.call(f"{stage} metadata({key!r:.40})", lambda: d.metadata(key))
    many = judge.call(f"{stage} get_many", lambda: d.get_many(keys))
    if isinstance(many, dict):
        for key, value in many.items():
            judge.value(f"{stage} get_many", key, value)
    items = judge.call(f"{stage} items", lambda: list(d.items()))
    if isinstance(items, list):
        for key, value in items:
            judge.value(f"{stage} items", key, value)
    values = judge.call(f"{stage} values", lambda: list(d.values()))
    if isinstance(values, list):
        allowed = list(judge.oracle.values()) + [v for vs in judge.either.values() for v in vs]
        judge.report["wrong"] += [f"{stage} values() returned {v!r:.60}" for v in values if v not in allowed]
    judge.call(f"{stage} keys", lambda: list(d.keys()))
    judge.call(f"{stage} len", lambda: len(d))


def read_damaged(args: dict[str, Any]) -> dict[str, Any]:
    """Open a damaged store and use every read path, then (``repairable``) check, repair, maintain,
    and read and write again."""
    with open(args["case"], "rb") as handle:
        case = pickle.load(handle)
    judge = _Judge(case["oracle"], case["either"])
    report = judge.report
    keys = list(case["oracle"]) + list(case["either"]) + list(case["extra_keys"])
    try:
        d = PersistDict(case["path"], background_thread="disabled")
    except PersistDictError as exc:
        report["refused_with"] = type(exc).__name__
        return report
    except Exception as exc:  # noqa: BLE001 - the finding
        report["foreign"].append(f"open: {exc!r}\n{traceback.format_exc(limit=-4)}")
        return report
    report["refused_with"] = None
    warnings.simplefilter("ignore")  # a maintenance pass may warn about what it found
    _read_everything(d, judge, keys, "before repair")
    if case["repairable"]:
        for what, fn in (("check()", d.check), ("check(repair=True, drop_unreadable=True)",
                                                 lambda: d.check(repair=True, drop_unreadable=True)),
                         ("run_maintenance()", d.run_maintenance)):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - required: these report damage, they do not raise
                report.setdefault("raised", []).append(f"{what}: {exc!r}")
        after = judge.call("check() after repair", d.check)
        if after is not ERROR and not after.ok:
            report.setdefault("raised", []).append(f"check() after repair is not clean: {after}")
        _read_everything(d, judge, keys, "after repair")
        try:
            d["after.damage"] = "written"
            if d["after.damage"] != "written":
                report["wrong"].append("a write after the repair reads back wrong")
        except Exception as exc:  # noqa: BLE001 - a repaired store takes writes
            report.setdefault("raised", []).append(f"a write after repair: {exc!r}")
    else:
        judge.call("check()", d.check)
        judge.call("a write", lambda: d.__setitem__("after.damage", "written"))
    judge.call("close()", d.close)
    return report


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

def full_batch(i: int) -> dict[str, Any]:
    """The entries disk_full's write ``i`` stores (a batch of 5, or one value of up to 19 KB)."""
    if i % 3 == 0:
        return {f"full.{i}.{j}": (i, j) * (i % 50) for j in range(5)}
    return {f"full.{i}": bytes([i % 251]) * (1000 * (i % 20))}


def disk_full(args: dict[str, Any]) -> dict[str, Any]:
    """Write under RLIMIT_FSIZE until the file cannot grow (set_many, transaction() and single
    writes in turn); print each write once it returned."""
    d = PersistDict(args["path"], background_thread="disabled")
    size = os.path.getsize(os.path.join(args["path"], "data.mdb"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal (Python's default too)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + args["room"], size + args["room"]))
    foreign: list[str] = []
    full = 0
    for i in range(100_000):
        batch = full_batch(i)
        try:
            if i % 3 == 0:
                d.set_many(batch)
            elif i % 3 == 1:
                with d.transaction():
                    for key, value in batch.items():
                        d[key] = value
            else:
                [(key, value)] = batch.items()
                d[key] = value
        except StorageFullError:
            full += 1
            if full == 6:
                break
            continue
        except Exception as exc:  # noqa: BLE001 - the finding
            foreign.append(f"write {i}: {exc!r}")
            break
        _say(f"ack {i}")
    readable = d.get("kept") == "safe"
    try:
        d.close()
    except StorageFullError:
        pass
    return {"full": full, "foreign": foreign, "readable": readable}


def hold_transaction(args: dict[str, Any]) -> dict[str, Any]:
    """Enter transaction(), write, say so, then stop (SIGSTOP) inside it."""
    d = PersistDict(args["path"], background_thread="disabled")
    with d.transaction():
        d["committed"] = "uncommitted"
        d["only.in.txn"] = "uncommitted"
        _say("inside")
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(3600)
    return {}


def open_and_read(args: dict[str, Any]) -> dict[str, Any]:
    """Open the store, read the given keys, optionally write one (the new opener of a fault test)."""
    d = PersistDict(args["path"], background_thread="disabled")
    found = {key: d.get(key, MISSING) for key in args["keys"]}
    if args.get("write"):
        d["new.opener"] = os.getpid()
        found["new.opener.readback"] = d["new.opener"] == os.getpid()
    d.close()
    return {"found": found}


def fill_readers(args: dict[str, Any]) -> dict[str, Any]:
    """Take every free slot of the store's reader table with read transactions, say so, and wait."""
    import lmdb

    env = lmdb.open(args["path"], subdir=True, max_dbs=8, max_readers=args["max_readers"], readonly=True, lock=True)
    held = []
    try:
        while True:
            held.append(env.begin())
    except lmdb.ReadersFullError:
        pass
    _say(f"full {len(held)}")
    time.sleep(3600)
    return {}


def future_lease(args: dict[str, Any]) -> dict[str, Any]:
    """Run a maintenance pass (taking the lease) with a clock years ahead, say so, and wait."""
    ahead = args["ahead"]
    PersistDict(args["path"], background_thread=False, expiration_days=1, clock=lambda: time.time() + ahead)
    _say("leased")
    time.sleep(3600)
    return {}


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2]
    report = globals()[name](json.loads(raw))
    _say(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # no exit-time close: some probes leave the store as a crash would


if __name__ == "__main__":
    main()
