"""PersistDict as LangChain's LLM cache and byte store, with LangChain's own fake models and
CacheBackedEmbeddings (no mock of LangChain): calls avoided, across processes and restarts."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_core.caches import BaseCache
from langchain_core.globals import set_llm_cache
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from PersistDict import PersistDict
from PersistDict.integrations.langchain import PersistDictByteStore, PersistDictCache

from _clock import Clock
from _reads import counted_entry_reads

from ._child import run_child
from ._fakes import CountingChatModel, CountingEmbeddings, CountingLLM


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    """Every test starts with zeroed call counters and no global LLM cache."""
    CountingLLM.calls = CountingChatModel.calls = 0
    CountingEmbeddings.documents, CountingEmbeddings.queries = [], []
    yield
    set_llm_cache(None)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[PersistDictCache]:
    cache = PersistDictCache(tmp_path / "llm-cache")
    yield cache
    cache.close()


# -- the LLM cache ------------------------------------------------------------------------------------

def test_llm_second_identical_call_is_served_from_the_cache(cache: PersistDictCache) -> None:
    """The fake LLM is called once for two identical prompts (it would answer "second" the second time)."""
    llm = CountingLLM(responses=["first", "second"], cache=cache)
    assert llm.invoke("What is 2+2?") == "first"
    assert llm.invoke("What is 2+2?") == "first"
    assert CountingLLM.calls == 1
    assert llm.invoke("Another prompt") == "second"
    assert CountingLLM.calls == 2


def test_chat_model_second_identical_call_is_served_from_the_cache(cache: PersistDictCache) -> None:
    """A chat model's answer (an AIMessage) comes back from the cache, the model called once."""
    chat = CountingChatModel(responses=["Paris"], cache=cache)
    first = chat.invoke("Capital of France?")
    again = chat.invoke("Capital of France?")
    assert isinstance(again, AIMessage) and again.content == first.content == "Paris"
    assert CountingChatModel.calls == 1


def test_global_cache_is_shared_by_another_process_and_survives_a_restart(tmp_path: Path) -> None:
    """set_llm_cache: a child process, then this process after reopening, get the answer without calling."""
    path = tmp_path / "llm-cache"
    cache = PersistDictCache(path)
    set_llm_cache(cache)
    assert CountingLLM(responses=["forty-two"]).invoke("The answer?") == "forty-two"
    assert CountingChatModel(responses=["bonjour"]).invoke("Say hello").content == "bonjour"
    assert CountingLLM.calls == CountingChatModel.calls == 1
    child = run_child(f"""
import json
from langchain_core.globals import set_llm_cache
from integrations._fakes import CountingChatModel, CountingLLM
from PersistDict.integrations.langchain import PersistDictCache
cache = PersistDictCache({str(path)!r})
set_llm_cache(cache)
llm_answer = CountingLLM(responses=["forty-two"]).invoke("The answer?")
chat_answer = CountingChatModel(responses=["bonjour"]).invoke("Say hello").content
miss = CountingLLM(responses=["forty-two"]).invoke("Not asked before")
cache.close()
print(json.dumps([llm_answer, chat_answer, miss, CountingLLM.calls, CountingChatModel.calls]))
""")
    assert child == ["forty-two", "bonjour", "forty-two", 1, 0]  # only the new prompt reached the model
    cache.close()
    reopened = PersistDictCache(path)  # a restart: a new store on the same files
    set_llm_cache(reopened)
    assert CountingLLM(responses=["forty-two"]).invoke("Not asked before") == "forty-two"
    assert CountingLLM.calls == 1  # the child's answer, from the store
    reopened.close()


def test_ainvoke_is_served_from_the_cache(cache: PersistDictCache) -> None:
    """ainvoke of an LLM and of a chat model: the second identical call is a cache hit."""
    llm = CountingLLM(responses=["a", "b"], cache=cache)
    chat = CountingChatModel(responses=["c"], cache=cache)

    async def main() -> list[Any]:
        return [await llm.ainvoke("p"), await llm.ainvoke("p"), (await chat.ainvoke("m")).content,
                (await chat.ainvoke("m")).content]

    assert asyncio.run(main()) == ["a", "a", "c", "c"]
    assert CountingLLM.calls == 1 and CountingChatModel.calls == 1
    assert llm.invoke("p") == "a" and CountingLLM.calls == 1  # the async write is what sync reads


class _RefusingExecutor(concurrent.futures.ThreadPoolExecutor):
    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loop's default executor was used")


def test_async_methods_are_native_not_the_default_executor(tmp_path: Path) -> None:
    """aupdate goes through the store's group commit and a hot alookup answers inline: no executor."""
    # no maintenance thread: its first pass commits, which would send the next read to the engine
    store = PersistDict(tmp_path / "quiet", value_serializer=None, value_unserializer=None,
                        background_thread="disabled")
    cache = PersistDictCache(store)
    generations = [Generation(text="hot")]
    cache.update("warm", "llm", generations)
    for _ in range(2):  # the front cache admits a key on its second miss
        assert cache.lookup("warm", "llm") == generations

    async def main() -> Any:
        asyncio.get_running_loop().set_default_executor(_RefusingExecutor())
        found = await cache.alookup("warm", "llm")
        await cache.aupdate("new", "llm", [Generation(text="n")])
        return found

    assert asyncio.run(main()) == generations
    assert cache.lookup("new", "llm") == [Generation(text="n")]
    assert PersistDictCache.alookup is not BaseCache.alookup and PersistDictCache.aupdate is not BaseCache.aupdate
    store.close()


def test_cached_values_are_langchain_json(tmp_path: Path) -> None:
    """The stored value is LangChain's JSON of the generations, a str in a store of raw values."""
    cache = PersistDictCache(tmp_path / "c")
    message = AIMessage(content="hi", response_metadata={"model": "m"})
    cache.update("p", "llm", [ChatGeneration(message=message)])
    (key,) = cache.store.keys()
    raw = cache.store[key]
    assert isinstance(raw, str) and '"lc": 1' in raw and '"AIMessage"' in raw
    (back,) = cache.lookup("p", "llm") or []
    assert isinstance(back, ChatGeneration) and back.message.content == "hi"
    assert back.message.response_metadata == {"model": "m"}
    cache.close()


def test_undecodable_or_foreign_values_are_misses(tmp_path: Path) -> None:
    """A damaged value, or JSON reviving a class outside generations and messages, is a miss."""
    cache = PersistDictCache(tmp_path / "c")
    key = cache._key("p", "llm")
    cache.store[key] = "not json"
    assert cache.lookup("p", "llm") is None
    cache.store[key] = ('[{"lc": 1, "type": "constructor", "id": ["langchain", "prompts", "prompt", '
                        '"PromptTemplate"], "kwargs": {"template": "x", "input_variables": []}}]')
    assert cache.lookup("p", "llm") is None
    llm = CountingLLM(responses=["fresh"], cache=cache)
    assert llm.invoke("p") == "fresh"
    cache.close()


def test_namespaces_share_one_store_and_clear_only_their_own(tmp_path: Path) -> None:
    """Two namespaced caches on one store: clear()/aclear() empty their own entries, not the other's or other data."""
    store = PersistDict(tmp_path / "shared", background_thread="disabled")
    store["unrelated"] = 1
    one = PersistDictCache(store, namespace="llm-one:")
    two = PersistDictCache(store, namespace="llm-two:")
    for cache, text in ((one, "1"), (two, "2")):
        cache.update("p", "llm", [Generation(text=text)])
    assert one.lookup("p", "llm") == [Generation(text="1")] and two.lookup("p", "llm") == [Generation(text="2")]
    one.clear()
    assert one.lookup("p", "llm") is None and two.lookup("p", "llm") == [Generation(text="2")]
    asyncio.run(two.aclear())
    assert two.lookup("p", "llm") is None and list(store) == ["unrelated"]
    whole = PersistDictCache(store)
    asyncio.run(whole.aclear())  # no namespace: the whole store
    assert len(store) == 0
    whole.close()
    assert not store.closed  # a store given is left open
    store.close()


def test_ttl_expires_answers(tmp_path: Path) -> None:
    """With ttl, an answer older than ttl seconds is a miss."""
    clock = Clock()
    store = PersistDict(tmp_path / "c", value_serializer=None, value_unserializer=None, clock=clock,
                        background_thread="disabled")
    cache = PersistDictCache(store, ttl=60)
    cache.update("p", "llm", [Generation(text="x")])
    clock.now += 30
    assert cache.lookup("p", "llm") == [Generation(text="x")]
    clock.now += 31
    assert cache.lookup("p", "llm") is None
    store.close()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """A wrong store, namespace or ttl raises a clear error."""
    with pytest.raises(TypeError, match="PersistDict or a database path, not 'int'"):
        PersistDictCache(3)
    with pytest.raises(TypeError, match="namespace must be a str or None"):
        PersistDictByteStore(tmp_path / "b", namespace=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PersistDictCache(tmp_path / "c", ttl=-1)


# -- the byte store -----------------------------------------------------------------------------------

@pytest.fixture
def byte_store(tmp_path: Path) -> Iterator[PersistDictByteStore]:
    store = PersistDictByteStore(tmp_path / "bytes", namespace="emb:")
    yield store
    store.close()


def test_byte_store_mget_mset_mdelete_yield_keys(byte_store: PersistDictByteStore) -> None:
    """The ByteStore contract: missing keys are None, deletes ignore absent keys, yield_keys filters by prefix."""
    byte_store.mset([("a/1", b"\x00one"), ("a/2", b"two"), ("b/1", bytearray(b"three"))])
    assert byte_store.mget(["a/1", "zz", "b/1"]) == [b"\x00one", None, b"three"]
    assert list(byte_store.yield_keys()) == ["a/1", "a/2", "b/1"]
    assert list(byte_store.yield_keys(prefix="a/")) == ["a/1", "a/2"]
    byte_store.mdelete(["a/1", "missing"])
    assert list(byte_store.yield_keys()) == ["a/2", "b/1"]
    assert byte_store.store.keys() is not None and sorted(byte_store.store) == ["emb:a/2", "emb:b/1"]
    with pytest.raises(TypeError, match="values must be bytes, not 'str'"):
        byte_store.mset([("k", "text")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="keys must be str, not 'int'"):
        byte_store.mget([1])  # type: ignore[list-item]


def test_byte_store_values_are_raw_bytes_on_disk(tmp_path: Path) -> None:
    """Values are stored as the bytes given: a store of raw values reads them back, no pickle."""
    path = tmp_path / "bytes"
    store = PersistDictByteStore(path)
    store.mset([("k", b"\x80\x05not a pickle")])
    store.close()
    raw = PersistDict(path, value_serializer=None, value_unserializer=None, background_thread="disabled")
    assert raw["k"] == b"\x80\x05not a pickle"
    raw.close()


def test_byte_store_async_twins(byte_store: PersistDictByteStore) -> None:
    """amset/amget/amdelete/ayield_keys do what their sync twins do."""

    async def main() -> list[Any]:
        await byte_store.amset([("x/1", b"1"), ("x/2", b"2"), ("y", b"3")])
        got = await byte_store.amget(["x/1", "nope", "y"])
        await byte_store.amdelete(["x/1", "nope"])
        keys = [key async for key in byte_store.ayield_keys(prefix="x/")]
        every = [key async for key in byte_store.ayield_keys()]
        return [got, keys, every]

    assert asyncio.run(main()) == [[b"1", None, b"3"], ["x/2"], ["x/2", "y"]]
    assert byte_store.mget(["x/2"]) == [b"2"]


def test_cache_backed_embeddings_embed_each_text_once(tmp_path: Path) -> None:
    """CacheBackedEmbeddings on the byte store: documents and queries, sync and async, embedded once each."""
    store = PersistDictByteStore(tmp_path / "emb")
    underlying = CountingEmbeddings(size=8)
    embedder = CacheBackedEmbeddings.from_bytes_store(underlying, store, namespace="fake-8:",
                                                      query_embedding_cache=True, key_encoder="blake2b")
    first = embedder.embed_documents(["alpha", "beta"])
    assert embedder.embed_documents(["beta", "gamma", "alpha"]) == [first[1], underlying.embed_query("gamma"),
                                                                   first[0]]
    assert CountingEmbeddings.documents == ["alpha", "beta", "gamma"]
    CountingEmbeddings.queries.clear()
    query = embedder.embed_query("what?")
    assert embedder.embed_query("what?") == query and CountingEmbeddings.queries == ["what?"]

    async def main() -> list[Any]:
        docs = await embedder.aembed_documents(["alpha", "delta"])
        again = await embedder.aembed_documents(["delta"])
        q = await embedder.aembed_query("what?")
        q2 = await embedder.aembed_query("new question")
        return [docs, again, q, await embedder.aembed_query("new question") == q2]

    docs, again, q, same = asyncio.run(main())
    assert docs[0] == first[0] and again == [docs[1]] and q == query and same
    assert CountingEmbeddings.documents == ["alpha", "beta", "gamma", "delta"]
    assert CountingEmbeddings.queries == ["what?", "new question"]
    assert len(list(store.yield_keys(prefix="fake-8:"))) == 6
    store.close()


def test_yield_keys_with_prefix_reads_only_the_matching_entries(tmp_path: Path) -> None:
    """Among 100k keys, yield_keys(prefix=...) reads the 100 matching entries, not the others."""
    store = PersistDictByteStore(tmp_path / "big")
    store.mset([(f"doc:{i:06}", b"d") for i in range(100_000)])
    store.mset([(f"emb:{i:03}", b"e") for i in range(100)])
    with counted_entry_reads(store.store) as reads:
        keys = list(store.yield_keys(prefix="emb:"))
    assert keys == [f"emb:{i:03}" for i in range(100)]
    assert reads[0] == 100
    store.close()
