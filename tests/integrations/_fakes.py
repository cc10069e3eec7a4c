"""Fake LangChain models that count their calls (class-level counters: a field would enter the
model's llm_string, the cache key), importable by the tests' child processes."""

from __future__ import annotations

from typing import Any, ClassVar

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel, FakeListLLM


class CountingLLM(FakeListLLM):
    """LangChain's fake LLM, counting the calls that reach the model."""

    calls: ClassVar[int] = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        type(self).calls += 1
        return super()._call(*args, **kwargs)

    async def _acall(self, *args: Any, **kwargs: Any) -> str:
        type(self).calls += 1
        return await super()._acall(*args, **kwargs)


class CountingChatModel(FakeListChatModel):
    """LangChain's fake chat model, counting the calls that reach the model."""

    calls: ClassVar[int] = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        type(self).calls += 1
        return super()._call(*args, **kwargs)


class CountingEmbeddings(DeterministicFakeEmbedding):
    """LangChain's deterministic fake embedding, recording every text it embeds."""

    documents: ClassVar[list[str]] = []
    queries: ClassVar[list[str]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        type(self).documents.extend(texts)
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        type(self).queries.append(text)
        return super().embed_query(text)
