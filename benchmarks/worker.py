"""One benchmark task for one contender, in a fresh process.

Usage (run.py does this): ``python benchmarks/worker.py '<json spec>'``.
The spec names the task, the contender, the value kind, the store path, the
sizes and the file to write the JSON result to. Nothing else is printed on
success. Only the contender's own library is imported here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import resource
import sys
import threading
import time
import traceback
from time import perf_counter
from typing import Any, Callable

from common import CONTENDER_BY_NAME, POOL_SIZE, Sizes, key, value_pool
import contenders
from contenders import Adapter, make_adapter

CHUNK = 20  # single-op workloads check the clock every CHUNK operations


def maxrss_mb() -> float:
    """Peak resident memory of this process, MB.

    VmHWM of /proc/self/status: ru_maxrss on Linux keeps the parent's peak
    across fork+exec, so every worker would report at least run.py's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def chunked(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def timed(fn: Callable[[list[Any]], Any], chunks: list[list[Any]], cap_s: float) -> dict[str, Any]:
    """Run ``fn`` on chunks until they run out or ``cap_s`` elapsed; ops = items processed."""
    done = 0
    t0 = perf_counter()
    deadline = t0 + cap_s
    for chunk in chunks:
        fn(chunk)
        done += len(chunk)
        if perf_counter() >= deadline:
            break
    elapsed = perf_counter() - t0
    return {"ops": done, "seconds": elapsed, "ops_per_s": done / elapsed if elapsed > 0 else 0.0}


def check_value(got: Any, want: Any) -> None:
    if type(want).__name__ == "ndarray":
        import numpy as np

        if not (type(got) is type(want) and np.array_equal(got, want)):
            raise AssertionError("read back a different array")
    elif got != want:
        raise AssertionError(f"read back a different value: {str(got)[:80]!r} != {str(want)[:80]!r}")


def open_timed(ad: Adapter, path: str) -> float:
    t0 = perf_counter()
    ad.open(path)
    return (perf_counter() - t0) * 1000.0


# -- tasks ----------------------------------------------------------------------

def task_write(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    pool = value_pool(spec["value"])
    rnd = random.Random(spec.get("seed", 0))
    out: dict[str, Any] = {"open_ms": open_timed(ad, spec["path"])}
    n = sz.max_write_ops
    keys = [key("w", i) for i in range(n)]
    pairs = [(k, pool[i % POOL_SIZE]) for i, k in enumerate(keys)]
    out["set"] = timed(ad.set_items, chunked(pairs, CHUNK), sz.cap_s)
    n_set = out["set"]["ops"]
    written = keys[:n_set]
    order = written[:]
    rnd.shuffle(order)
    rounds = max(1, n // max(1, n_set))
    over = [(k, pool[(i + 1) % POOL_SIZE]) for i, k in enumerate(order * rounds)][:max(n, n_set)]
    out["overwrite"] = timed(ad.set_items, chunked(over, CHUNK), sz.cap_s)
    probe = order[0]
    check_value(ad.get(probe), dict(over[:out["overwrite"]["ops"]])[probe])
    rnd.shuffle(order)
    out["delete"] = timed(ad.delete_keys, chunked(order, CHUNK), sz.cap_s)
    batches = [[(key("b", b * sz.batch + i), pool[i % POOL_SIZE]) for i in range(sz.batch)]
               for b in range(sz.max_batches)]
    out["batch_set"] = timed(ad.batch_set, batches, sz.cap_s)
    check_value(ad.get(key("b", sz.batch - 1)), pool[(sz.batch - 1) % POOL_SIZE])
    out["maxrss_mb"] = maxrss_mb()
    ad.close()
    return out


def load_pairs(value: str, n: int, prefix: str = "r"):
    pool = value_pool(value)
    return ((key(prefix, i), pool[i % POOL_SIZE]) for i in range(n))


def task_populate(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    t0 = perf_counter()
    pairs = load_pairs(spec["value"], spec["n"], spec.get("prefix", "r"))
    chunk = spec.get("chunk", 10_000)
    bulk = getattr(ad, "populate_bulk", None)
    if spec.get("bulk") and bulk is not None:
        bulk(spec["path"], pairs, chunk)
    else:
        ad.open(spec["path"])
        ad.populate(pairs, chunk=chunk)
        ad.close()
    return {"seconds": perf_counter() - t0, "n": spec["n"], "maxrss_mb": maxrss_mb(),
            "bulk": bool(spec.get("bulk") and bulk is not None)}


def task_read(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    n = spec["n"]
    pool = value_pool(spec["value"])
    rnd = random.Random(spec.get("seed", 0))
    out: dict[str, Any] = {"open_ms": open_timed(ad, spec["path"])}
    if not CONTENDER_BY_NAME[ad.name].persistent:
        ad.populate(load_pairs(spec["value"], n))
    keys = [key("r", i) for i in range(n)]
    perm = keys[:]
    rnd.shuffle(perm)
    half = n // 2
    # cold: first reads of this process, random order, on half of the keys
    out["get_cold"] = timed(ad.get_keys, chunked(perm[:half], CHUNK), sz.cap_s)
    i = int(perm[0].split(":")[1])
    check_value(ad.get(perm[0]), pool[i % POOL_SIZE])
    # contains on the other half: keys this process has not read yet
    out["contains_hit"] = timed(ad.contains_keys, chunked(perm[half:], CHUNK), sz.cap_s)
    if ad.contains_keys(perm[half:half + 50]) != len(perm[half:half + 50]):
        raise AssertionError("contains missed present keys")
    misses = [key("m", i) for i in range(sz.max_miss_ops)]
    out["contains_miss"] = timed(ad.contains_keys, chunked(misses, CHUNK), sz.cap_s)
    if ad.contains_keys(misses[:50]) != 0:
        raise AssertionError("contains found absent keys")
    # hot: the same keys again and again, after two untimed warm-up rounds
    hot = perm[:sz.hot_keys]
    ad.get_keys(hot)
    ad.get_keys(hot)
    rounds = max(1, sz.max_hot_ops // len(hot))
    out["get_hot"] = timed(ad.get_keys, [hot] * rounds, sz.cap_s)
    # iterate all keys, whole passes
    t0 = perf_counter()
    seen = passes = 0
    while passes < sz.iter_passes:
        count = ad.iter_keys()
        if count != n:
            raise AssertionError(f"iteration yielded {count} keys, expected {n}")
        seen += count
        passes += 1
        if perf_counter() - t0 >= sz.cap_s:
            break
    elapsed = perf_counter() - t0
    out["iterate"] = {"ops": seen, "seconds": elapsed, "ops_per_s": seen / elapsed, "passes": passes}
    # batch get in a fresh random order
    rnd.shuffle(perm)
    batches = chunked(perm, sz.batch)
    out["batch_get"] = timed(ad.batch_get, batches, sz.cap_s)
    got = ad.batch_get(batches[0][:10])
    if len(got) != len(batches[0][:10]):
        raise AssertionError("batch_get missed present keys")
    out["maxrss_mb"] = maxrss_mb()
    ad.close()
    return out


def _mixed_loop(ad: Adapter, keys: list[str], pool: list[Any], seed: int, start: Callable[[], None],
                duration: float, result: dict[str, Any], catch: bool) -> None:
    rnd = random.Random(seed)
    nkeys = len(keys)
    get, put = ad.get, ad.set
    ops = errors = 0
    start()
    t0 = perf_counter()
    deadline = t0 + duration
    while True:
        for _ in range(CHUNK):
            k = keys[rnd.randrange(nkeys)]
            try:
                if rnd.random() < 0.8:
                    get(k)
                else:
                    put(k, pool[ops % POOL_SIZE])
            except Exception:
                if not catch:
                    raise
                errors += 1
            ops += 1
        if perf_counter() >= deadline:
            break
    result.update(ops=ops, errors=errors, seconds=perf_counter() - t0, t0=t0)


def task_mixed_threads(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    nthreads = spec["threads"]
    pool = value_pool(spec["value"])
    ad.open(spec["path"])
    ad.populate(load_pairs(spec["value"], spec["n"]))
    keys = [key("r", i) for i in range(spec["n"])]
    barrier = threading.Barrier(nthreads + 1)
    results: list[dict[str, Any]] = [{} for _ in range(nthreads)]
    failures: list[str] = []

    def run(i: int) -> None:
        try:
            _mixed_loop(ad, keys, pool, spec.get("seed", 0) * 100 + i, barrier.wait, sz.mixed_s, results[i], False)
        except Exception:
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = perf_counter()
    for t in threads:
        t.join()
    wall = perf_counter() - t0
    if failures:
        raise RuntimeError(failures[0])
    ops = sum(r["ops"] for r in results)
    out = {"mixed": {"ops": ops, "seconds": wall, "ops_per_s": ops / wall,
                     "per_thread": [r["ops"] for r in results]}}
    out["maxrss_mb"] = maxrss_mb()
    ad.close()
    return out


def task_mixed_proc(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    pool = value_pool(spec["value"])
    ad.open(spec["path"])
    keys = [key("r", i) for i in range(spec["n"])]
    ad.get(keys[0])
    with open(spec["ready"], "w"):
        pass

    def wait_go() -> None:
        limit = time.monotonic() + 120
        while not os.path.exists(spec["go"]):
            if time.monotonic() > limit:
                raise TimeoutError("no go signal")
            time.sleep(0.0005)

    result: dict[str, Any] = {}
    _mixed_loop(ad, keys, pool, spec.get("seed", 0), wait_go, sz.mixed_s, result, True)
    result["maxrss_mb"] = maxrss_mb()
    ad.close()
    return result


def _write_steadily(name: str, path: str, value: str, keys: list[str], rate: int,
                    ready: Any, stop: Any) -> None:
    """The other process of ``task_hot_with_writer``: set random keys, ``rate`` per second."""
    ad = make_adapter(name)
    ad.load()
    ad.open(path)
    pool = value_pool(value)
    rnd = random.Random(7)
    ready.set()
    next_at = time.monotonic()
    done = 0
    while not stop.is_set():
        ad.set(keys[rnd.randrange(len(keys))], pool[done % POOL_SIZE])
        done += 1
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    ad.close()
    os._exit(0)


def task_hot_with_writer(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    """get hot over a hot set while another process sets random keys of the store at a steady rate
    (some of them in the hot set): what a front cache keeps across other processes' writes."""
    keys = [key("r", i) for i in range(spec["n"])]
    hot = keys[:min(sz.shared_hot_keys, len(keys) // 2)]
    ctx = multiprocessing.get_context("fork")  # forked before this process opens the store
    ready, stop = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_write_steadily,
                         args=(spec["contender"], spec["path"], spec["value"], keys, sz.writer_rate, ready, stop))
    writer.start()
    try:
        ad.open(spec["path"])
        if not ready.wait(120):
            raise TimeoutError("the writer process did not start")
        ad.get_keys(hot)
        ad.get_keys(hot)
        rounds = max(1, sz.max_hot_ops // len(hot))
        out = {"hot_with_writer": timed(ad.get_keys, [hot] * rounds, sz.mixed_s)}
    finally:
        stop.set()
        writer.join(60)
    if writer.exitcode != 0:
        raise RuntimeError(f"the writer process exited with {writer.exitcode}")
    out["maxrss_mb"] = maxrss_mb()
    ad.close()
    return out


def task_open_big(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    n = spec["n"]
    rnd = random.Random(spec.get("seed", 0))
    out: dict[str, Any] = {"open_ms": open_timed(ad, spec["path"])}
    t0 = perf_counter()
    ad.get(key("g", rnd.randrange(n)))
    out["first_get_ms"] = (perf_counter() - t0) * 1000.0
    sample = [key("g", rnd.randrange(n)) for _ in range(sz.big_cold_ops)]
    out["get_cold"] = timed(ad.get_keys, chunked(sample, CHUNK), sz.cap_s)
    out["maxrss_mb"] = maxrss_mb()
    t0 = perf_counter()
    ad.close()
    out["close_ms"] = (perf_counter() - t0) * 1000.0
    return out


def _percentiles(lat_ns: list[int]) -> dict[str, float]:
    s = sorted(lat_ns)
    if not s:
        return {}

    def p(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] / 1000.0

    return {"count": len(s), "p50_us": p(0.50), "p90_us": p(0.90), "p99_us": p(0.99), "p999_us": p(0.999),
            "max_us": s[-1] / 1000.0, "mean_us": sum(s) / len(s) / 1000.0}


def task_maint_latency(ad: Adapter, spec: dict[str, Any], sz: Sizes) -> dict[str, Any]:
    """Latency of foreground gets with and without d.run_maintenance() looping in a thread."""
    n = spec["n"]
    rnd = random.Random(spec.get("seed", 0))
    ad.open(spec["path"])
    d = ad.d
    ns = time.perf_counter_ns

    def phase(duration: float) -> list[int]:
        lat: list[int] = []
        end = perf_counter() + duration
        while perf_counter() < end:
            for _ in range(CHUNK):
                k = key("g", rnd.randrange(n))
                t = ns()
                d[k]
                lat.append(ns() - t)
        return lat

    phase(0.2)  # warm the interpreter paths
    # baseline half before and half after the maintenance window, so drift (page
    # faults of a fresh map, machine noise) does not land on one side only
    before = phase(sz.maint_s / 2)
    stop = threading.Event()
    passes: list[float] = []
    errors: list[str] = []

    def maintain() -> None:
        while not stop.is_set():
            t = perf_counter()
            try:
                d.run_maintenance()
            except Exception:
                errors.append(traceback.format_exc())
                return
            passes.append(perf_counter() - t)

    thread = threading.Thread(target=maintain)
    t0 = perf_counter()
    thread.start()
    lat = phase(sz.maint_s)
    stop.set()
    thread.join()
    window = perf_counter() - t0
    d.run_maintenance()  # flush what the window left, then the second baseline half
    after = phase(sz.maint_s / 2)
    out: dict[str, Any] = {"baseline": _percentiles(before + after), "baseline_before": _percentiles(before),
                           "baseline_after": _percentiles(after)}
    out["during_maintenance"] = _percentiles(lat)
    out["maintenance_passes"] = len(passes)
    out["maintenance_pass_s"] = passes
    out["maintenance_window_s"] = window
    if errors:
        out["maintenance_error"] = errors[0]
    # passes alone, nothing else running: one flushing the atimes of the last
    # baseline half, then one with nothing pending
    out["single_pass_pending_atimes"] = len(getattr(d, "_touched", ()))  # PendingAccesses
    t = perf_counter()
    d.run_maintenance()
    out["single_pass_idle_s"] = perf_counter() - t
    t = perf_counter()
    d.run_maintenance()
    out["empty_pass_s"] = perf_counter() - t
    out["maxrss_mb"] = maxrss_mb()
    ad.close()
    return out


TASKS = {
    "write": task_write,
    "populate": task_populate,
    "read": task_read,
    "mixed_threads": task_mixed_threads,
    "mixed_proc": task_mixed_proc,
    "hot_with_writer": task_hot_with_writer,
    "open_big": task_open_big,
    "maint_latency": task_maint_latency,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    sz = Sizes(**spec["sizes"])
    if spec.get("ours_root"):
        contenders.OURS_ROOT = spec["base_root"] if spec["contender"] == "pd_base" else spec["ours_root"]
    result: dict[str, Any]
    try:
        options = spec.get("options") or {}
        ad = make_adapter(spec["contender"])
        if options:
            ad.options = {**getattr(ad, "options", {}), **options}
        ad.load()
        result = TASKS[spec["task"]](ad, spec, sz)
        result["status"] = "ok"
        result["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        try:
            result["version"] = ad.version()
        except Exception:
            pass
    except Exception:
        result = {"status": "error", "error": traceback.format_exc()}
    with open(spec["out"], "w") as fh:
        json.dump(result, fh)
    sys.stdout.flush()
    # Skip interpreter teardown: the contender was closed above; some libraries'
    # atexit hooks and daemon threads only add noise to the next measurement.
    os._exit(0)


if __name__ == "__main__":
    main()
