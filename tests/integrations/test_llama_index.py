"""PersistDict as LlamaIndex's KV store: the BaseKVStore contract, and LlamaIndex's own KV document
store, index store and ingestion cache on it, shared by real processes (no mock of LlamaIndex)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document
from llama_index.core.data_structs import IndexDict
from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore

from PersistDict import PersistDict
from PersistDict.integrations.llama_index import PersistDictKVStore

from _reads import counted_entry_reads

from ._child import finish_child, run_child, start_child
from ._llama_fakes import CountingUppercase


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[PersistDictKVStore]:
    store = PersistDictKVStore(tmp_path / "kv")
    yield store
    store.close()


def test_put_get_get_all_delete_by_collection(kv: PersistDictKVStore) -> None:
    """Collections are separate; get returns a new dict each time; delete says whether the key was there."""
    kv.put("a", {"n": 1})
    kv.put("a", {"n": 2}, collection="other")
    kv.put_all([("b", {"n": 3}), ("c", {"list": [1, "x", None]})], batch_size=2)
    assert kv.get("a") == {"n": 1} and kv.get("a", collection="other") == {"n": 2}
    assert kv.get("missing") is None
    assert kv.get_all() == {"a": {"n": 1}, "b": {"n": 3}, "c": {"list": [1, "x", None]}}
    assert kv.get_all("other") == {"a": {"n": 2}} and kv.get_all("empty") == {}
    got = kv.get("a")
    assert got is not None
    got["n"] = 99
    assert kv.get("a") == {"n": 1}
    assert kv.delete("a") is True and kv.delete("a") is False
    assert kv.get_all() == {"b": {"n": 3}, "c": {"list": [1, "x", None]}}


def test_collections_whose_names_prefix_each_other_stay_apart(kv: PersistDictKVStore) -> None:
    """Collection "doc" does not list the keys of collection "docstore"."""
    kv.put("k", {"v": 1}, collection="doc")
    kv.put("k", {"v": 2}, collection="docstore")
    kv.put("store/k", {"v": 3}, collection="doc")
    assert kv.get_all("doc") == {"k": {"v": 1}, "store/k": {"v": 3}}
    assert kv.get_all("docstore") == {"k": {"v": 2}}


def test_async_twins(kv: PersistDictKVStore) -> None:
    """aput/aput_all/aget/aget_all/adelete do what their sync twins do."""

    async def main() -> list[Any]:
        await kv.aput("a", {"n": 1}, collection="c")
        await kv.aput_all([("b", {"n": 2}), ("d", {"n": 3})], collection="c")
        one = await kv.aget("a", collection="c")
        deleted = [await kv.adelete("d", collection="c"), await kv.adelete("d", collection="c")]
        return [one, deleted, await kv.aget_all("c")]

    assert asyncio.run(main()) == [{"n": 1}, [True, False], {"a": {"n": 1}, "b": {"n": 2}}]
    assert kv.get_all("c") == {"a": {"n": 1}, "b": {"n": 2}}


def test_values_are_json_text_and_bad_input_is_refused(kv: PersistDictKVStore) -> None:
    """Values are stored as JSON text; non-dict, non-JSON values, bad keys and collections raise, storing nothing."""
    kv.put("a", {"x": [1.5]})
    (stored,) = kv.store.keys()
    assert kv.store[stored] == '{"x": [1.5]}'
    with pytest.raises(TypeError, match="values must be dicts, not 'list'"):
        kv.put("b", [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be JSON dicts"):
        kv.put_all([("c", {"ok": 1}), ("d", {"bad": object()})])
    with pytest.raises(ValueError, match="cannot contain NUL"):
        kv.put("e", {}, collection="a\x00b")
    with pytest.raises(TypeError, match="keys must be str, not 'int'"):
        kv.get(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        kv.put_all([("f", {})], batch_size=0)
    assert kv.get_all() == {"a": {"x": [1.5]}}


def test_namespace_shares_a_store_with_other_data(tmp_path: Path) -> None:
    """With a namespace, the KV store lists and touches its own keys only, in a store it leaves open."""
    store = PersistDict(tmp_path / "shared", background_thread="disabled")
    store["data\x00own"] = "not the KV store's"
    kv = PersistDictKVStore(store, namespace="llama:")
    kv.put("own", {"v": 1})
    assert kv.get_all() == {"own": {"v": 1}}
    assert sorted(store) == ["data\x00own", "llama:data\x00own"]
    kv.close()
    assert not store.closed
    store.close()


def test_get_all_reads_only_its_collection(kv: PersistDictKVStore) -> None:
    """get_all of a 20-entry collection among 20k entries reads those 20 entries' keys."""
    kv.put_all([(f"n{i}", {"i": i}) for i in range(20_000)], collection="big")
    kv.put_all([(f"n{i}", {"i": i}) for i in range(20)], collection="small")
    with counted_entry_reads(kv.store) as reads:
        assert len(kv.get_all("small")) == 20
    assert reads[0] == 20


def test_index_store_round_trip(kv: PersistDictKVStore) -> None:
    """LlamaIndex's KVIndexStore keeps an index struct in the KV store."""
    index_store = KVIndexStore(kv)
    struct = IndexDict()
    struct.add_node(Document(text="x", id_="n1"))
    index_store.add_index_struct(struct)
    reopened = KVIndexStore(PersistDictKVStore(kv.store))
    found = reopened.get_index_struct(struct.index_id)
    assert isinstance(found, IndexDict) and found.nodes_dict == struct.nodes_dict


_ADD_DOCUMENTS = """
import json
from llama_index.core import Document
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from PersistDict.integrations.llama_index import PersistDictKVStore
kv = PersistDictKVStore({path!r})
docstore = KVDocumentStore(kv)
for i in range(40):
    docstore.add_documents([Document(text="{who} " + str(i), id_="{who}-" + str(i))])
seen = docstore.get_document("parent-0").text
kv.close()
print(json.dumps(seen))
"""


def test_docstore_shared_by_two_processes(tmp_path: Path) -> None:
    """Two processes add documents to one KVDocumentStore at once; each sees the other's, so does this one."""
    path = str(tmp_path / "kv")
    kv = PersistDictKVStore(path)
    docstore = KVDocumentStore(kv)
    docstore.add_documents([Document(text="from the parent", id_="parent-0")])
    children = [start_child(_ADD_DOCUMENTS.format(path=path, who=who)) for who in ("one", "two")]
    assert [finish_child(child) for child in children] == ["from the parent"] * 2
    docs = docstore.docs
    assert len(docs) == 81
    assert docs["two-39"].text == "two 39" and docstore.get_document("one-7").text == "one 7"
    assert docstore.get_document_hash("one-0") == Document(text="one 0", id_="one-0").hash
    kv.close()


def test_ingestion_cache_shared_by_two_processes(tmp_path: Path) -> None:
    """An IngestionPipeline run in another process finds this one's cached transformation: it transforms nothing."""
    path = str(tmp_path / "kv")
    kv = PersistDictKVStore(path)
    documents = [Document(text=f"text {i}", id_=f"d{i}") for i in range(5)]
    pipeline = IngestionPipeline(transformations=[CountingUppercase()], cache=IngestionCache(cache=kv))
    nodes = pipeline.run(documents=documents)
    assert [node.get_content() for node in nodes] == [f"TEXT {i}" for i in range(5)]
    assert CountingUppercase.nodes_seen == 5
    child = run_child(f"""
import json
from llama_index.core import Document
from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from integrations._llama_fakes import CountingUppercase
from PersistDict.integrations.llama_index import PersistDictKVStore
kv = PersistDictKVStore({path!r})
pipeline = IngestionPipeline(transformations=[CountingUppercase()], cache=IngestionCache(cache=kv))
cached = [node.get_content() for node in pipeline.run(documents=[Document(text=f"text {{i}}", id_=f"d{{i}}")
                                                                 for i in range(5)])]
before_new = CountingUppercase.nodes_seen
pipeline.run(documents=[Document(text="brand new", id_="n")])
kv.close()
print(json.dumps([cached, before_new, CountingUppercase.nodes_seen]))
""")
    assert child == [[f"TEXT {i}" for i in range(5)], 0, 1]
    assert len(kv.get_all("llama_cache")) == 2  # this run's and the child's new one
    IngestionCache(cache=kv).clear()
    assert kv.get_all("llama_cache") == {}
    kv.close()
