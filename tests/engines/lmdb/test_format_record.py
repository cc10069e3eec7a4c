"""The format record in the meta table: which value codec wrote the store."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from PersistDict import CodecMismatchWarning, PersistDict

from ._lmdb_access import engine_of

ROOT = str(Path(__file__).resolve().parents[3])


def test_switching_between_plain_codec_functions_warns(db_path: Path, make_db: Callable[..., PersistDict]) -> None:
    """pickle.dumps, json.dumps and dill.dumps share a name: the warning tells them apart by module.
    A format record of a development version (the name alone) matches the function it names."""
    import json

    import dill

    db = make_db()  # pickle.dumps
    db["a"] = [1]
    db.close()
    for dumps, loads in ((json.dumps, json.loads), (dill.dumps, dill.loads)):
        with pytest.warns(CodecMismatchWarning, match="_pickle.dumps"):
            make_db(value_serializer=dumps, value_unserializer=loads).close()
    legacy = make_db()
    record = json.dumps({**legacy._format(), "values": "dumps"}).encode()
    engine_of(legacy).write(lambda txn: txn.put_meta(b"format", record))
    legacy.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_db()["a"] == [1]
