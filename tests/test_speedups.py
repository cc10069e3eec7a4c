"""The compiled record parsers (PersistDict/_speedups.c) against their Python reference."""

from __future__ import annotations

import os
import platform
import struct
import subprocess
import sys
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _internals import (HEADER_SIZE, RECORDS_MODULE, SPEEDUPS_MODULE, compiled_records, pack_record,
                        py_record_expires, py_unpack_value)
from _internals import records as _records
from PersistDict.exceptions import CorruptedRecordError

PURE_PYTHON = bool(os.environ.get("PERSISTDICT_PURE_PYTHON"))

compiled = compiled_records()


def test_the_read_path_uses_the_compiled_parsers():
    """Installs with a C compiler build them (scripts/setup.sh makes sure there is one)."""
    if PURE_PYTHON:
        assert not _records.SPEEDUPS and _records.unpack_value is py_unpack_value
        assert _records._crc32 is zlib.crc32
    else:
        assert compiled is not None, (
            "PersistDict/_speedups.c was not built (no C compiler when installing?): install gcc and "
            "rerun scripts/setup.sh, or set PERSISTDICT_PURE_PYTHON=1 to test the pure-Python parsers only"
        )
        assert _records.SPEEDUPS
        assert _records.unpack_value is compiled.unpack_value
        assert _records.record_expires is compiled.record_expires
        assert _records._crc32 is compiled.crc32  # writes and check() checksum with it too


needs_compiled = pytest.mark.skipif(
    PURE_PYTHON or compiled is None, reason="the compiled parsers are off or not built (see the test above)"
)

records = st.builds(
    pack_record,
    seq=st.integers(0, 2**64 - 1),
    ctime=st.floats(allow_nan=False),
    mtime=st.floats(allow_nan=False),
    expires=st.floats(allow_nan=False),
    kind=st.integers(0, 255),
    lookup=st.binary(max_size=40),
    exact=st.none() | st.binary(min_size=1, max_size=40),
    # short records (around 64 bytes the C parser's CRC switches from its table to folding, and
    # around 512 to zlib.crc32 on CPUs without carry-less multiply), and past 4,096 bytes (payload
    # returned as a memoryview)
    payload=st.binary(max_size=200) | st.binary(min_size=380, max_size=520) | st.binary(min_size=4000, max_size=9000),
)


def outcome(parse, data, lookup):
    """What a parser makes of ``data`` read as the record of ``lookup``, as text (a damaged expiry
    may be NaN, which equals nothing): its result with payloads as (type, bytes), or its error."""
    try:
        result = parse(data, lookup)
    except (CorruptedRecordError, TypeError) as exc:
        return repr((type(exc), str(exc)))
    if isinstance(result, tuple):
        *fields, payload = result
        return repr((*fields, type(payload), bytes(payload)))
    return repr(result)


class BytesSubclass(bytes):
    pass


def own_lookup(data):
    """The lookup key a record says it holds (what a read of the right key passes)."""
    if len(data) < HEADER_SIZE:
        return b""
    return bytes(data[HEADER_SIZE : HEADER_SIZE + struct.unpack_from("<I", data, 36)[0]])


def other_lookups(lookup):
    """Keys a record of ``lookup`` must be refused for: one byte changed, one more, one less, none."""
    changed = bytes([lookup[0] ^ 1]) + lookup[1:] if lookup else b"x"
    return [changed, lookup + b"/", lookup[:-1], b""]


def assert_same(data, lookup=None):
    lookup = own_lookup(data) if lookup is None else lookup
    for as_input in (data, memoryview(data), bytearray(data), BytesSubclass(data)):
        assert outcome(compiled.unpack_value, as_input, lookup) == outcome(py_unpack_value, as_input, lookup)
        assert outcome(compiled.record_expires, as_input, lookup) == outcome(py_record_expires, as_input, lookup)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(records)
def test_valid_records_parse_the_same(data):
    assert_same(data)
    seq, expires, kind, payload = compiled.unpack_value(data, own_lookup(data))
    assert (seq, expires, kind) == struct.unpack_from("<4xQ16xd", data) + (data[1],)
    assert type(payload) is (bytes if len(data) <= 4096 else memoryview)  # large: no copy


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(records, st.data())
def test_damaged_records_are_refused_the_same(data, draw):
    position = draw.draw(st.integers(0, len(data) - 1))
    flipped = bytearray(data)
    flipped[position] ^= draw.draw(st.integers(1, 255))
    with pytest.raises(CorruptedRecordError, match="checksum mismatch"):
        compiled.unpack_value(bytes(flipped), own_lookup(data))
    assert_same(bytes(flipped), own_lookup(data))
    assert_same(bytes(flipped))
    assert_same(data[: draw.draw(st.integers(0, len(data) - 1))])  # truncated


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(records)
def test_records_of_another_key_are_refused_the_same(data):
    """A record read as another key's (a damaged database key led there) is refused by both parsers,
    whatever the other key: one byte changed, longer, shorter, empty."""
    lookup = own_lookup(data)
    for other in other_lookups(lookup):
        if other == lookup:
            continue
        with pytest.raises(CorruptedRecordError, match="another key"):
            compiled.unpack_value(data, other)
        with pytest.raises(CorruptedRecordError, match="another key"):
            compiled.record_expires(data, other)
        assert_same(data, other)


@needs_compiled
@given(st.binary(max_size=120), st.binary(max_size=8))
def test_arbitrary_bytes_parse_the_same(data, lookup):
    assert_same(data)
    assert_same(data, lookup)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@needs_compiled
def test_unknown_version_and_impossible_lengths():
    record = pack_record(1, 0.0, 0.0, 0.0, 0, b"sk", None, b"payload")
    other_version = with_crc(b"\x02" + record[1:-4])
    with pytest.raises(CorruptedRecordError, match="unknown record version 2"):
        compiled.unpack_value(other_version, b"sk")
    assert_same(other_version)
    # a checksummed record whose exact key's length runs past its end: an empty payload, as in Python
    too_long = with_crc(record[:36] + struct.pack("<II", 2, 2**32 - 1) + record[HEADER_SIZE:-4])
    assert compiled.unpack_value(too_long, b"sk")[3] == b""
    assert_same(too_long)
    # a lookup key length past the end: no key read past the record can match
    key_too_long = with_crc(record[:36] + struct.pack("<II", 2**32 - 1, 0) + record[HEADER_SIZE:-4])
    with pytest.raises(CorruptedRecordError, match="another key"):
        compiled.unpack_value(key_too_long, b"sk")
    assert_same(key_too_long, b"sk")


CRC_CHECK_SCRIPT = f"""
import importlib, os, sys, zlib
compiled = importlib.import_module({SPEEDUPS_MODULE!r})
data = os.urandom(20_000)
for n in [*range(0, 600), 1000, 2047, 2048, 2100, 4096, 6200, 14_000, 20_000]:
    assert compiled.crc32(data[:n]) == zlib.crc32(data[:n]), n
view = memoryview(data)
for offset in range(16):
    for n in (64, 100, 2100):
        assert compiled.crc32(view[offset:offset + n]) == zlib.crc32(view[offset:offset + n]), (offset, n)
assert compiled.crc32(b"\\xff" * 5000) == zlib.crc32(b"\\xff" * 5000)
print(compiled.CRC_FOLDING)
"""


@needs_compiled
@pytest.mark.parametrize("folding", ["on", "off"])
def test_crc32_is_zlibs(folding):
    """The compiled CRC-32 (table below 64 bytes, then folding with carry-less multiply where the
    CPU has it, else the table up to 512 bytes and zlib above) equals zlib.crc32 at every length
    around its switch points, at every alignment of the buffer, and on long inputs; with folding
    turned off too (what other CPUs run)."""
    env = dict(os.environ)
    env.pop("PERSISTDICT_NO_CRC_FOLDING", None)
    if folding == "off":
        env["PERSISTDICT_NO_CRC_FOLDING"] = "1"
    result = subprocess.run([sys.executable, "-c", CRC_CHECK_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(folding == "on" and compiled.CRC_FOLDING)


@needs_compiled
@pytest.mark.skipif(sys.platform != "linux", reason="reads the CPU's flags from /proc/cpuinfo")
def test_crc_folds_where_the_cpu_can():
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next((line.split() for line in cpuinfo if line.startswith("flags")), [])
    x86_64 = platform.machine() == "x86_64" and sys.maxsize > 2**32
    assert compiled.CRC_FOLDING == (x86_64 and "pclmulqdq" in flags
                                    and not os.environ.get("PERSISTDICT_NO_CRC_FOLDING"))


@needs_compiled
def test_not_a_buffer():
    with pytest.raises(TypeError):
        compiled.crc32("not bytes")
    record = pack_record(1, 0.0, 0.0, 0.0, 0, b"sk", None, b"payload")
    for parse in (compiled.unpack_value, compiled.record_expires):
        for args in (("not bytes", b"sk"), (record, "sk"), (record,), (record, b"sk", b"sk")):
            with pytest.raises(TypeError):
                parse(*args)


@needs_compiled
def test_no_leak():
    small = pack_record(7, 1.0, 2.0, 3.0, 0, b"sk", b"exact", b"v" * 100)
    large = pack_record(7, 1.0, 2.0, 3.0, 0, b"sk", None, b"v" * 5000)
    damaged = small[:-1] + b"\x00"

    def round_of_calls():
        for _ in range(2000):
            compiled.unpack_value(small, b"sk")
            compiled.unpack_value(large, b"sk")
            compiled.unpack_value(memoryview(small), b"sk")
            compiled.record_expires(small, b"sk")
            compiled.crc32(large)
            for parse, data, lookup in ((compiled.unpack_value, damaged, b"sk"),
                                        (compiled.unpack_value, small, b"sj"),
                                        (compiled.record_expires, small, b"sj")):
                try:
                    parse(data, lookup)
                except CorruptedRecordError:
                    pass

    round_of_calls()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            round_of_calls()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 50_000  # 50,000 calls: a leak of one object a call would be megabytes


def test_pure_python_mode_works(tmp_path):
    """PERSISTDICT_PURE_PYTHON=1 switches the compiled parsers off; the store reads the same."""
    script = (
        "import importlib, sys\n"
        "from PersistDict import PersistDict\n"
        f"assert not importlib.import_module({RECORDS_MODULE!r}).SPEEDUPS\n"
        "d = PersistDict(sys.argv[1])\n"
        "assert d['a'] == [1, 2] and 'a' in d and 'b' not in d and d.get_many(['a']) == {'a': [1, 2]}\n"
        "d['c'] = 'x' * 10_000\n"
        "assert d['c'] == 'x' * 10_000\n"
        "d.close()\n"
    )
    from PersistDict import PersistDict

    d = PersistDict(tmp_path / "db")
    d["a"] = [1, 2]
    d.close()
    env = dict(os.environ, PERSISTDICT_PURE_PYTHON="1")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "db")], env=env, check=True, timeout=60)
