"""Value codecs compared: encode + decode time and encoded size, as ratios to pickle, for three kinds of
value: an LLM response (a dict with a 1.3 KB repetitive text), an embedding (1,536 floats) and a small
record. Needs the codec extras: pip install 'PersistDict[zstd,msgpack,orjson,pydantic]'.

    .venv/bin/python benchmarks/codecs.py            # prints a table, writes benchmarks/results/codecs.md
"""

from __future__ import annotations

import random
import sys
import timeit
from pathlib import Path
from typing import Any

import pydantic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from PersistDict import serializers  # noqa: E402


class Response(pydantic.BaseModel):
    model: str
    prompt: str
    text: str
    tokens: int
    finish_reason: str


class Embedding(pydantic.BaseModel):
    vector: list[float]


class Row(pydantic.BaseModel):
    id: int
    name: str
    score: float
    active: bool
    tags: list[str]


PARAGRAPH = ("The quarterly report shows revenue growth driven by subscriptions, while costs stayed flat. "
             "Key risks remain supplier concentration and currency exposure. ")
VALUES: dict[str, tuple[Any, type[pydantic.BaseModel], Any]] = {
    "LLM response": ({"model": "gpt-x", "prompt": "Summarise the quarterly report in three sentences.",
                      "text": PARAGRAPH * 9, "tokens": 312, "finish_reason": "stop"}, Response, None),
    "embedding (1,536 floats)": ([random.Random(i).uniform(-1, 1) for i in range(1536)], Embedding, "vector"),
    "small record": ({"id": 42, "name": "alice", "score": 0.93, "active": True, "tags": ["a", "b"]}, Row, None),
}


def codecs_for(model: type[pydantic.BaseModel]) -> dict[str, serializers.Codec]:
    return {
        "pickle": serializers.pickle_codec,
        "json": serializers.json_codec,
        "orjson": serializers.orjson_codec,
        "msgpack": serializers.msgpack_codec,
        "zstd(orjson)": serializers.compressed(serializers.orjson_codec, algorithm="zstd"),
        "zlib(pickle)": serializers.compressed(serializers.pickle_codec, algorithm="zlib"),
        "pydantic": serializers.pydantic_codec(model),
    }


def measure(codec: serializers.Codec, value: Any) -> tuple[float, int]:
    """(best seconds per encode + decode, encoded size)."""
    data = codec.dumps(value)
    codec.loads(data)
    timer = timeit.Timer(lambda: codec.loads(codec.dumps(value)))
    loops, _ = timer.autorange()
    best = min(timer.repeat(repeat=5, number=loops)) / loops
    return best, len(data)


def main() -> None:
    lines = ["| value | codec | encode+decode (µs) | time / pickle | size (bytes) | size / pickle |",
             "|---|---|---:|---:|---:|---:|"]
    for kind, (value, model, field) in VALUES.items():
        results = {}
        for name, codec in codecs_for(model).items():
            given = model(**{field: value}) if name == "pydantic" and field else (
                model(**value) if name == "pydantic" else value)
            results[name] = measure(codec, given)
        base_time, base_size = results["pickle"]
        for name, (seconds, size) in results.items():
            lines.append(f"| {kind} | {name} | {seconds * 1e6:.1f} | {seconds / base_time:.2f} | {size} | "
                         f"{size / base_size:.2f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).resolve().parent / "results" / "codecs.md"
    out.write_text("# Value codecs vs pickle (benchmarks/codecs.py)\n\n" + table + "\n\n"
                   f"Python {sys.version.split()[0]}; best of 5 runs; pydantic values are model instances.\n")


if __name__ == "__main__":
    main()
