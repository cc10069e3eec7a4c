"""Shared definitions of the benchmark suite: sizes, contenders, values, keys.

Imported by both the orchestrator (run.py) and the workers (worker.py). It
must not import any contender library: each worker imports only the one it
measures, so the original PersistDict 0.2.14 and this repository's
PersistDict never meet in one interpreter.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"  # gitignored: stores, the original package, scratch
ORIGINAL_DIR = WORK_DIR / "original"  # pip install --target for persistdict==0.2.14
ORIGINAL_VERSION = "0.2.14"
# run.py copies this repository's PersistDict/ here at the start of a run and the
# workers import it from here: a run measures one version even while the
# checkout is being edited.
SNAPSHOT_DIR = WORK_DIR / "snapshot"
BASELINE_DIR = WORK_DIR / "baseline"  # run.py --baseline REF: PersistDict/ as of REF
RESULTS_DIR = BENCH_DIR / "results"


# -- contenders ---------------------------------------------------------------

@dataclass(frozen=True)
class Contender:
    name: str  # id used in results.json
    label: str  # column header
    persistent: bool = True  # False: a plain dict, rebuilt in every process
    threads: bool = True  # safe to share one instance between threads
    processes: bool = True  # several processes may open one path at once
    big_family: str = ""  # contenders sharing a 1M store (same on-disk format)
    slow: bool = False  # op counts are capped further


CONTENDERS: list[Contender] = [
    Contender("dict", "dict (in memory)", persistent=False, processes=False),
    Contender("lmdb_sync", "LMDB sync", big_family="lmdb"),
    Contender("lmdb_nosync", "LMDB nosync", big_family="lmdb"),
    Contender("pd", "PersistDict", big_family="pd"),
    Contender("pd_fast", "PersistDict fast", big_family="pd"),
    Contender("diskcache", "diskcache"),
    Contender("sqlitedict", "sqlitedict"),
    Contender("shelve", "shelve", threads=False, processes=False),
    Contender("pd_orig", f"PersistDict {ORIGINAL_VERSION}", slow=True),
    # this repository at another git ref (run.py --baseline REF): before/after figures in one run
    Contender("pd_base", "PersistDict baseline", big_family="pd_base"),
]
CONTENDER_BY_NAME = {c.name: c for c in CONTENDERS}

# The references the ratios are computed against.
REF_LMDB = "lmdb_sync"  # raw LMDB with sync=True, metasync=True (every commit fsynced)
REF_LMDB_NOSYNC = "lmdb_nosync"
REF_DISKCACHE = "diskcache"


# -- values -------------------------------------------------------------------

VALUE_KINDS = ["str100", "record2k", "embedding", "embedding_np"]
VALUE_LABELS = {
    "str100": "100-byte str",
    "record2k": "~2 KB LLM record (nested dict)",
    "embedding": "embedding: list of 1,536 floats",
    "embedding_np": "embedding: numpy float32[1536]",
}
POOL_SIZE = 16  # distinct values per kind; key i gets pool[i % POOL_SIZE]

_WORDS = (
    "the model returns a structured answer with citations and a short summary of each source "
    "while keeping latency low enough for interactive use in a notebook or a batch pipeline"
).split()


def _text(rnd: random.Random, length: int) -> str:
    out: list[str] = []
    size = 0
    while size < length:
        word = rnd.choice(_WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:length]


def make_value(kind: str, i: int) -> object:
    """The i-th distinct value of a kind (deterministic)."""
    rnd = random.Random(f"{kind}-{i}")
    if kind == "str100":
        return f"{i:06d}|" + _text(rnd, 93)
    if kind == "record2k":
        return {
            "id": f"chatcmpl-{rnd.getrandbits(96):024x}",
            "object": "chat.completion",
            "created": 1_700_000_000 + i,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": _text(rnd, 1650), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 412 + i % 50, "completion_tokens": 371, "total_tokens": 783 + i % 50,
                      "prompt_tokens_details": {"cached_tokens": 0}},
            "system_fingerprint": f"fp_{rnd.getrandbits(40):010x}",
            "request": {"temperature": 0.2, "max_tokens": 1024, "seed": i},
        }
    if kind == "embedding":
        return [rnd.gauss(0.0, 0.05) for _ in range(1536)]
    if kind == "embedding_np":
        import numpy as np

        return np.random.default_rng(i).standard_normal(1536).astype(np.float32) * np.float32(0.05)
    raise ValueError(kind)


def value_pool(kind: str) -> list[object]:
    return [make_value(kind, i) for i in range(POOL_SIZE)]


def numpy_available() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def key(prefix: str, i: int) -> str:
    return f"{prefix}:{i:08d}"


# -- sizes --------------------------------------------------------------------

@dataclass
class Sizes:
    reps: int = 5
    values: list[str] = field(default_factory=lambda: list(VALUE_KINDS))
    n_read: int = 10_000  # entries in the store read by the read workloads
    n_read_slow: int = 2_000  # same, for the slow original PersistDict
    cap_s: float = 0.5  # time cap of one timed workload (ops/s = done / elapsed)
    max_write_ops: int = 20_000  # set / overwrite / delete: at most this many ops
    batch: int = 1_000  # entries per set_many / get_many call (one transaction)
    max_batches: int = 20
    hot_keys: int = 100
    max_hot_ops: int = 300_000
    max_miss_ops: int = 50_000
    iter_passes: int = 3  # iterate keys: at most this many full passes (at least one)
    mixed_values: list[str] = field(default_factory=lambda: ["str100", "embedding"])
    mixed_keys: int = 1_000
    mixed_keys_slow: int = 200
    mixed_threads: list[int] = field(default_factory=lambda: [2, 4])
    mixed_procs: list[int] = field(default_factory=lambda: [2, 4])
    mixed_s: float = 0.75
    shared_hot_keys: int = 2_000  # get hot while another process writes: the hot set...
    shared_keys: int = 4_000  # ...in a store of this many entries...
    writer_rate: int = 100  # ...which the other process sets at random, this many per second
    n_big: int = 1_000_000
    big_reps: int = 3
    big_cold_ops: int = 5_000
    big_batch: int = 20_000
    maint_s: float = 3.0
    task_timeout_s: float = 900.0


FULL = Sizes()
QUICK = Sizes(
    reps=2,
    values=["str100", "embedding"],
    n_read=2_000,
    n_read_slow=300,
    cap_s=0.15,
    max_write_ops=3_000,
    batch=200,
    max_batches=5,
    max_hot_ops=50_000,
    max_miss_ops=10_000,
    iter_passes=1,
    mixed_values=["str100"],
    mixed_keys=300,
    mixed_keys_slow=100,
    mixed_s=0.5,
    shared_hot_keys=500,
    shared_keys=1_000,
    n_big=100_000,
    big_reps=2,
    big_cold_ops=1_000,
    big_batch=10_000,
    maint_s=1.0,
    task_timeout_s=300.0,
)


def sizes_dict(sizes: Sizes) -> dict:
    return asdict(sizes)
