"""The optional value codecs: compressed(..., "zstd"), msgpack_codec, orjson_codec, pydantic_codec(Model),
each round-tripping through a store on every engine, refusing bad data with CodecError, and pickling."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from PersistDict import CodecError, PersistDict, serializers


class Answer(pydantic.BaseModel):
    """An LLM answer as an application would type it."""

    prompt: str
    text: str
    tokens: int


ANSWER = {"prompt": "Summarise the report", "text": "The report says. " * 80, "tokens": 1336}
EMBEDDING = [i / 1536 for i in range(1536)]


def codecs() -> dict[str, serializers.Codec]:
    return {
        "zstd": serializers.compressed(serializers.orjson_codec, algorithm="zstd", level=19),
        "zstd-pickle": serializers.compressed(serializers.pickle_codec, algorithm="zstd"),
        "msgpack": serializers.msgpack_codec,
        "orjson": serializers.orjson_codec,
    }


@pytest.fixture(params=["lmdb", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    yield tmp_path / "db" if request.param == "lmdb" else ":memory:"


@pytest.mark.parametrize("name", list(codecs()))
def test_codec_round_trips_through_a_store(location: Any, name: str) -> None:
    """An LLM answer, an embedding and a small record come back equal, on every engine."""
    codec = codecs()[name]
    d = PersistDict(location, value_serializer=codec.dumps, value_unserializer=codec.loads,
                    background_thread="disabled", caching=False)
    values = {"answer": ANSWER, "embedding": EMBEDDING, "record": {"id": 7, "ok": True, "tags": ["a", "b"]}}
    d.update(values)
    assert dict(d) == values
    d.close()


def test_zstd_compresses_a_repetitive_answer() -> None:
    """zstd over orjson makes a repetitive LLM answer several times smaller than orjson alone."""
    raw = serializers.orjson_codec.dumps(ANSWER)
    packed = serializers.compressed(serializers.orjson_codec, algorithm="zstd").dumps(ANSWER)
    assert len(packed) * 5 < len(raw)


@pytest.mark.parametrize("name", list(codecs()))
def test_damaged_data_is_a_codec_error(name: str) -> None:
    """Bytes the codec did not write raise CodecError, not the library's own exception."""
    with pytest.raises(CodecError):
        codecs()[name].loads(b"\xc1\xff\x00garbage")


@pytest.mark.parametrize("name", list(codecs()))
def test_codecs_pickle(name: str) -> None:
    """Each codec pickles (a store using it can be handed to a worker) and works after."""
    codec = pickle.loads(pickle.dumps(codecs()[name]))
    assert codec.loads(codec.dumps(ANSWER)) == ANSWER


@pytest.mark.parametrize("level", [23, -8, 2.5, True])
def test_zstd_level_out_of_range_is_refused(level: Any) -> None:
    """A zstd level outside -7..22 (or not an int) is a ValueError naming the range."""
    with pytest.raises(ValueError, match="-7 to 22"):
        serializers.compressed(serializers.orjson_codec, algorithm="zstd", level=level)


def test_pydantic_codec_validates_on_write_and_on_read(location: Any) -> None:
    """A model or a dict that validates is stored and comes back as the model; one that does not is
    refused on write (nothing stored), and stored JSON that no longer validates is refused on read;
    neither message quotes the value."""
    codec = serializers.pydantic_codec(Answer)
    d = PersistDict(location, value_serializer=codec.dumps, value_unserializer=codec.loads,
                    background_thread="disabled", caching=False)
    d["a"] = Answer(**ANSWER)
    d["b"] = ANSWER
    assert d["a"] == d["b"] == Answer(**ANSWER)
    with pytest.raises(CodecError, match=r"tokens: int_parsing") as info:
        d["c"] = {**ANSWER, "tokens": "SECRET-not-a-number"}
    assert "SECRET" not in str(info.value) and "c" not in d
    mutated = Answer(**ANSWER)
    mutated.tokens = "SECRET"  # type: ignore[assignment]  # no validate_assignment: caught on write
    with pytest.raises(CodecError):
        d["d"] = mutated
    with pytest.raises(CodecError, match="on read") as info:
        codec.loads(b'{"prompt": "p", "text": "SECRET", "tokens": "x"}')
    assert "SECRET" not in str(info.value)
    d.close()


def test_pydantic_codec_needs_a_model() -> None:
    """pydantic_codec of something that is not a BaseModel subclass is a TypeError."""
    with pytest.raises(TypeError, match="BaseModel"):
        serializers.pydantic_codec(dict)
