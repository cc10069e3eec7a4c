"""LangChain LLM caches compared: PersistDictCache against LangChain's InMemoryCache and the
community SQLiteCache, on the calls that reach the model and on lookup time.

    .venv/bin/python -m pip install -e ".[test,bench]"   # bench: langchain-community (SQLiteCache)
    .venv/bin/python benchmarks/langchain_cache.py

Measured per cache: a hot lookup (the same prompt again: what a pipeline repeating a prompt pays),
a hit on one of 1,000 stored prompts in turn, and a miss; median of 5 rounds of timeit. And, through
a fake LLM counting its calls, how many of 1,000 invocations (100 distinct prompts) reach the model.

Last run (2 cores; README "LangChain and LlamaIndex"): hot hit 0.1 / 156 / 269 µs for InMemoryCache
/ PersistDictCache / SQLiteCache, miss 0.1 / 3.5 / 174 µs, 100 model calls each. PersistDictCache's
hit is 0.3 µs of store read (front cache), 1.6 µs of key digest and ~114 µs of LangChain's loads.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.caches import BaseCache, InMemoryCache  # noqa: E402
from langchain_core.language_models import FakeListLLM  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration  # noqa: E402

from PersistDict.integrations.langchain import PersistDictCache  # noqa: E402

LLM_STRING = "[('_type', 'openai-chat'), ('model_name', 'gpt-x'), ('temperature', 0.0)]"
ANSWER = [ChatGeneration(message=AIMessage(content="An answer of a few sentences. " * 8,
                                           response_metadata={"model_name": "gpt-x", "finish_reason": "stop"}))]


class CountingLLM(FakeListLLM):
    calls: ClassVar[int] = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        CountingLLM.calls += 1
        return super()._call(*args, **kwargs)


def caches(directory: Path) -> dict[str, BaseCache]:
    found: dict[str, BaseCache] = {"InMemoryCache": InMemoryCache(),
                                   "PersistDictCache": PersistDictCache(directory / "persistdict")}
    try:
        from langchain_community.cache import SQLiteCache
    except ImportError:
        print("langchain-community is not installed: SQLiteCache left out")
    else:
        found["SQLiteCache"] = SQLiteCache(str(directory / "sqlite.db"))
    return found


def per_call_us(statement: Any, number: int) -> float:
    rounds = timeit.repeat(statement, number=number, repeat=5)
    return statistics.median(rounds) / number * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        print(f"{'cache':<18}{'hot hit µs':>12}{'hit of 1000 µs':>16}{'miss µs':>10}{'model calls':>13}")
        for name, cache in caches(Path(directory)).items():
            prompts = [f"Question number {i}: what is the meaning of {i}?" for i in range(1000)]
            for prompt in prompts:
                cache.update(prompt, LLM_STRING, ANSWER)
            assert cache.lookup(prompts[0], LLM_STRING) == ANSWER
            hot = per_call_us(lambda: cache.lookup(prompts[0], LLM_STRING), 2000)
            turn = iter(prompts * 100)
            cycled = per_call_us(lambda: cache.lookup(next(turn), LLM_STRING), 1000)
            miss = per_call_us(lambda: cache.lookup("never asked", LLM_STRING), 2000)
            CountingLLM.calls = 0
            llm = CountingLLM(responses=["an answer"], cache=cache)
            for i in range(1000):
                llm.invoke(f"prompt {i % 100}")
            print(f"{name:<18}{hot:>12.1f}{cycled:>16.1f}{miss:>10.1f}{CountingLLM.calls:>13}")
            close = getattr(cache, "close", None)
            if close is not None:
                close()


if __name__ == "__main__":
    main()
