"""The ``persistdict`` console script, run for real in subprocesses (as a shell would)."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import _operations as ops
import pytest

from PersistDict import PersistDict, serializers

SCRIPT = shutil.which("persistdict", path=os.path.dirname(sys.executable))
COMMANDS = ["info", "ls", "get", "rm", "expire", "check", "stats", "backup", "restore", "export", "import", "compact"]


def cli(*args: Any, input: str | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT is not None, "the console script is not installed: pip install -e '.[test]'"
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120, input=input)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The command failed with ``code`` and said so in one line naming ``words``, without a traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("persistdict: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with str, int, bytes and tuple keys, one with a TTL, written then closed."""
    path = tmp_path / "store"
    d = PersistDict(path, background_thread="disabled")
    d["user:1"] = {"name": "Ada"}
    d["user:2"] = "Grace"
    d["other"] = [1, 2]
    d[7] = b"\x00\xff"
    d[(1, "a")] = 3.5
    d.set("session", "s", ttl=3600)
    d.close()
    return path


def test_help_of_every_command_has_an_example() -> None:
    """--help works on the group and on each command, and each shows an example."""
    assert cli("--help").returncode == 0
    for command in COMMANDS:
        result = cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example:" in result.stdout and f"persistdict {command}" in result.stdout


def test_python_dash_m_runs_the_same_command_line(store: Path) -> None:
    """python -m PersistDict is the console script."""
    result = subprocess.run([sys.executable, "-m", "PersistDict", "get", store, "user:2"], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "Grace\n")


def test_info_and_stats(store: Path) -> None:
    """info names the entries, codecs and format; stats gives figures; both as JSON too."""
    facts = json.loads(cli("info", store, "--json").stdout)
    assert facts["entries"] == 6 and facts["keys"] == "canonical-v1" and facts["format"] == 1
    assert facts["values"] == "_pickle.dumps" and facts["map_size"] > 0 and "readers_in_use" in facts
    text = cli("info", store).stdout
    assert "entries: 6" in text and "values: _pickle.dumps" in text
    assert json.loads(cli("stats", store, "--json").stdout)["entries"] == 6


def test_ls(store: Path) -> None:
    """ls lists keys in insertion order (with --prefix: in key order); --prefix, --limit, --sort and --json
    narrow and shape it."""
    assert cli("ls", store).stdout.splitlines() == ["user:1", "user:2", "other", "7", "(1, 'a')", "session"]
    assert cli("ls", store, "--prefix", "user:").stdout.splitlines() == ["user:1", "user:2"]
    with PersistDict(store, background_thread="disabled") as d:
        d["user:0"] = "last in, first by key"
    assert cli("ls", store, "--prefix", "user:").stdout.splitlines() == ["user:0", "user:1", "user:2"]
    assert cli("ls", store, "--prefix", "user:", "--sort", "insertion").stdout.splitlines() == [
        "user:1", "user:2", "user:0"]
    with PersistDict(store, background_thread="disabled") as d:
        del d["user:0"]
    assert cli("ls", store, "--limit", "2").stdout.splitlines() == ["user:1", "user:2"]
    cli("get", store, "user:1")  # the most recent read: last by atime
    assert cli("ls", store, "--sort", "atime").stdout.splitlines()[-1] == "user:1"
    assert cli("ls", store, "--sort", "ctime", "--limit", "1").stdout.splitlines() == ["user:1"]
    rows = [json.loads(line) for line in cli("ls", store, "--json").stdout.splitlines()]
    assert [row["key"] for row in rows[3:5]] == [7, {"$tuple": [1, "a"]}] and "ctime" in rows[0]


def test_get_with_key_types(store: Path) -> None:
    """Keys are str by default; --key-type reads ints, hex bytes, JSON and Python literals."""
    assert cli("get", store, "user:1").stdout == "{'name': 'Ada'}\n"
    assert json.loads(cli("get", store, "user:1", "--json").stdout) == {"name": "Ada"}
    assert cli("get", store, "7", "--key-type", "int").stdout == "b'\\x00\\xff'\n"
    assert json.loads(cli("get", store, "7", "-t", "int", "--json").stdout) == {"$bytes": "AP8="}
    assert cli("get", store, '[1, "a"]', "-t", "json").stdout == "3.5\n"
    assert cli("get", store, "(1, 'a')", "-t", "python").stdout == "3.5\n"
    one_line_error(cli("get", store, "7"), 3, "no key", "'7'")  # the str "7" is another key
    result = cli("get", store, "zz", "-t", "bytes-hex")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_rm(store: Path) -> None:
    """rm deletes a key; a second rm says it is not there (exit code 3)."""
    assert cli("rm", store, "user:2").returncode == 0
    one_line_error(cli("rm", store, "user:2"), 3, "no key")
    assert "user:2" not in cli("ls", store).stdout.splitlines()


def test_exit_codes_and_one_line_errors(tmp_path: Path, store: Path) -> None:
    """Not found 3 (a key, a store), wrong usage 2, nothing created for a missing store."""
    one_line_error(cli("get", store, "missing"), 3, "no key 'missing'")
    one_line_error(cli("info", tmp_path / "nowhere"), 3, "no store at")
    assert not (tmp_path / "nowhere").exists()
    usage = cli("get", store)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    one_line_error(cli("backup", store, store / "inside"), 1, "inside the store")


def test_check_exit_codes_on_a_damaged_store(store: Path) -> None:
    """check exits 0 on a sound store and 4 on a damaged one; get of the damaged entry exits 4."""
    assert cli("check", store).returncode == 0
    d = PersistDict(store, background_thread="disabled")
    d["victim"] = "MARKER-" * 20
    d.close()
    data = store / "data.mdb"
    content = bytearray(data.read_bytes())
    at = content.index(b"MARKER-MARKER")
    content[at] ^= 0xFF
    data.write_bytes(bytes(content))
    result = cli("check", store)
    assert result.returncode == 4 and "corrupted_records: 1" in result.stdout
    one_line_error(cli("get", store, "victim"), 4, "corrupted")
    assert cli("check", store, "--drop-unreadable").returncode == 0
    assert cli("check", store).returncode == 0


def test_expire(tmp_path: Path) -> None:
    """expire removes entries past their TTL, and with --days the idle ones."""
    path = tmp_path / "store"
    clock = [1_000_000.0]
    d = PersistDict(path, background_thread="disabled", clock=lambda: clock[0])
    d.set("old-ttl", 1, ttl=1)
    d["idle"] = 2
    d.close()
    d = PersistDict(path, background_thread="disabled")
    d["fresh"] = 3
    d.close()
    assert cli("expire", path).stdout == "removed 1 entries\n"
    assert cli("expire", path, "--days", "1").stdout == "removed 1 entries\n"
    assert cli("ls", path).stdout.splitlines() == ["fresh"]


def test_backup_while_another_process_writes(tmp_path: Path) -> None:
    """persistdict backup of a store another process is writing gives one consistent snapshot."""
    path = tmp_path / "store"
    PersistDict(path, background_thread="disabled").close()
    writer = ops.start(ops.BALANCED_WRITER, path, tmp_path / "stop")
    try:
        for n in range(3):
            result = cli("backup", path, tmp_path / f"b{n}", *(["--no-compact"] if n == 1 else []))
            assert result.returncode == 0, result.stderr
            ops.assert_balanced(tmp_path / f"b{n}")
    finally:
        ops.stop_writer(writer, tmp_path / "stop")
    one_line_error(cli("backup", path, tmp_path / "b0"), 1, "not empty")


def test_export_import_round_trip_with_times_and_ttls(tmp_path: Path, store: Path) -> None:
    """export then import into a new store: the same entries, order, times and TTLs (the same export)."""
    out = tmp_path / "e.jsonl"
    result = cli("export", store, "-o", out)
    assert result.returncode == 0 and result.stdout == "exported 6 entries\n"
    assert cli("import", tmp_path / "copy", out).stdout == "imported 6 entries\n"
    again = cli("export", tmp_path / "copy").stdout.splitlines()
    original = out.read_text().splitlines()
    assert again[1:] == original[1:]
    ttl = [json.loads(line) for line in original[1:] if '"session"' in line][0]
    assert ttl["expires"] is not None and ttl["expires"] > ttl["ctime"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(original[0] + "\n{oops\n")
    one_line_error(cli("import", tmp_path / "copy", bad), 1, "line 2")


def test_compact_refused_while_another_process_has_the_store(tmp_path: Path, store: Path) -> None:
    """compact exits 5 while another process has the store open, and reclaims space once it is closed."""
    d = PersistDict(store, background_thread="disabled")
    d.update({f"big{i}": "x" * 2000 for i in range(500)})
    for i in range(500):
        del d[f"big{i}"]
    d.close()
    holder = ops.start(ops.HOLDER, store)
    try:
        one_line_error(cli("compact", store), 5, "another process")
    finally:
        ops.release(holder)
    before = (store / "data.mdb").stat().st_size
    result = cli("compact", store)
    assert result.returncode == 0, result.stderr
    assert (store / "data.mdb").stat().st_size < before / 2
    assert cli("get", store, "user:2").stdout == "Grace\n"


def test_restore(tmp_path: Path, store: Path) -> None:
    """restore refuses a non-empty store (1) and one in use (5), and with --overwrite puts the backup in place."""
    assert cli("backup", store, tmp_path / "b").returncode == 0
    assert cli("rm", store, "user:1").returncode == 0
    one_line_error(cli("restore", tmp_path / "b", store), 1, "not empty")
    holder = ops.start(ops.HOLDER, store)
    try:
        one_line_error(cli("restore", tmp_path / "b", store, "--overwrite"), 5, "has it open")
    finally:
        ops.release(holder)
    assert cli("restore", tmp_path / "b", store, "--overwrite").returncode == 0
    assert cli("get", store, "user:1").stdout == "{'name': 'Ada'}\n"


def run_on_a_terminal(*args: Any) -> tuple[int, str]:
    """Run the script with stderr on a pseudo-terminal; (exit code, what the terminal showed)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([SCRIPT, *map(str, args)], stdout=subprocess.DEVNULL, stderr=terminal,
                               stdin=subprocess.DEVNULL)
    os.close(terminal)
    shown = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return process.wait(timeout=60), shown.decode(errors="replace")


def test_progress_bars_on_a_terminal_and_none_in_a_pipe(tmp_path: Path, store: Path) -> None:
    """On a terminal the long commands draw a progress bar on stderr; piped, stderr stays empty."""
    d = PersistDict(store, background_thread="disabled")
    d.update({f"k{i}": i for i in range(3000)})
    d.close()
    code, shown = run_on_a_terminal("export", store, "-o", tmp_path / "e.jsonl")
    assert code == 0 and "export" in shown and "100%" in shown and "3006/3006" in shown
    code, shown = run_on_a_terminal("backup", store, tmp_path / "b")
    assert code == 0 and "backup" in shown and "100%" in shown
    piped = cli("export", store, "-o", tmp_path / "e2.jsonl")
    assert piped.returncode == 0 and piped.stderr == ""
    piped = cli("backup", store, tmp_path / "b2")
    assert piped.returncode == 0 and piped.stderr == ""


def test_the_readme_shell_session_runs(tmp_path: Path) -> None:
    """The README's "From the shell" session runs as written (with /path/to/... in a temp dir), every command ok."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### From the shell", 1)[1].split("\n### ", 1)[0]
    session = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("/path/to/", f"{tmp_path}/")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", "-e", "-c", session], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "{'name': 'Ada'}" in result.stdout and '{"$bytes": "AA=="}' in result.stdout
    assert "exit code 3" in result.stdout
    assert result.stderr.splitlines() == ["persistdict: error: no key 'missing' in " + repr(f"{tmp_path}/cache")]


def test_the_recorded_value_codec_is_rebuilt_or_refused(tmp_path: Path) -> None:
    """get reads stores written with orjson, msgpack or a compressed codec without --values; a
    codec it cannot rebuild (signed: it needs a secret) is a one-line error, not a wrong guess."""
    for name, codec in [("orjson", serializers.orjson_codec), ("msgpack", serializers.msgpack_codec),
                        ("zstd", serializers.compressed(serializers.json_codec, algorithm="zstd")),
                        ("lzma", serializers.compressed(serializers.pickle_codec, algorithm="lzma"))]:
        with PersistDict(tmp_path / name, value_serializer=codec.dumps, value_unserializer=codec.loads,
                         background_thread="disabled") as d:
            d["k"] = {"answer": [1, 2]}
        assert json.loads(cli("get", tmp_path / name, "k", "--json").stdout) == {"answer": [1, 2]}, name
    signed = serializers.signed(serializers.pickle_codec, b"s" * 32)
    with PersistDict(tmp_path / "signed", value_serializer=signed.dumps, value_unserializer=signed.loads,
                     background_thread="disabled") as d:
        d["k"] = 1
    one_line_error(cli("get", tmp_path / "signed", "k"), 1, "cannot rebuild", "--values")
