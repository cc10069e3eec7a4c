"""The commands of ``persistdict``. Each opens the store, does one thing and closes it; a store
other processes are using is fine (compact and restore need it to themselves and say so).

Exit codes (EXIT_*): 0 ok, 1 any other error, 2 wrong usage, 3 not found (key or store),
4 damaged (check found problems it did not repair, a corrupted record or store), 5 in use.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from itertools import islice
from typing import Any

import click

from .. import PersistDict, serializers
from ..exceptions import CorruptedDatabaseError, CorruptedRecordError, StoreInUseError
from .keys import KEY_TYPES, as_json, as_text, parse_key

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DAMAGED, EXIT_IN_USE = 0, 1, 2, 3, 4, 5
DATA_FILE = "data.mdb"

# --values NAME -> the value codec to open with
_CODECS: dict[str, tuple[Any, Any]] = {
    "pickle": (pickle.dumps, pickle.loads),  # the library's default
    "dill": (serializers.dill_codec.dumps, serializers.dill_codec.loads),
    "json": (serializers.json_codec.dumps, serializers.json_codec.loads),
    "raw": (None, None),
}
# a value codec's name in a format record -> the same codec, to open the store with it (auto)
_RECORDED: dict[str, tuple[Any, Any]] = {
    "_pickle.dumps": (pickle.dumps, pickle.loads),
    "pickle": (serializers.pickle_codec.dumps, serializers.pickle_codec.loads),
    "dill": (serializers.dill_codec.dumps, serializers.dill_codec.loads),
    "json": (serializers.json_codec.dumps, serializers.json_codec.loads),
    "json.dumps": (json.dumps, json.loads),
    "orjson": (serializers.orjson_codec.dumps, serializers.orjson_codec.loads),
    "msgpack": (serializers.msgpack_codec.dumps, serializers.msgpack_codec.loads),
    "raw": (None, None),
}


class Failure(Exception):
    """A command's failure: its one-line message and exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


_COMPRESSED = re.compile(r"(zlib|lzma|zstd)\((\w+)\)")  # serializers.compressed()'s name for itself


def _recorded_codec(name: Any) -> tuple[Any, Any]:
    """The value codec whose name the format record holds (None: a store without one, pickle's),
    rebuilt; a codec the command line cannot rebuild (a custom one, signed or encrypted: they need
    a secret) is a Failure rather than a wrong guess."""
    if not name:
        return _CODECS["pickle"]
    if name in _RECORDED:
        return _RECORDED[name]
    found = _COMPRESSED.fullmatch(str(name))
    inner = found and {"pickle": serializers.pickle_codec, "json": serializers.json_codec,
                       "dill": serializers.dill_codec, "orjson": serializers.orjson_codec,
                       "msgpack": serializers.msgpack_codec}.get(found.group(2))
    if found and inner is not None:
        codec = serializers.compressed(inner, algorithm=found.group(1))
        return codec.dumps, codec.loads
    raise Failure(f"the store's values were written with the codec {name!r}, which the command line cannot "
                  "rebuild: give --values (pickle, dill, json or raw) if one of them reads it", EXIT_ERROR)


# -- opening a store ------------------------------------------------------------------------------

def _open(path: str, values: str, create: bool = False, **options: Any) -> PersistDict:
    """The store at ``path`` with the value codec its format record names (or ``values``); it
    must exist unless ``create``. No maintenance thread: a command does only what it says."""
    if not create and not os.path.isfile(os.path.join(path, DATA_FILE)):
        raise Failure(f"no store at {path!r}", EXIT_NOT_FOUND)
    options.setdefault("background_thread", "disabled")
    codec = _CODECS.get(values)
    if codec is None:  # auto
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a codec mismatch is what this look is for
            probe = PersistDict(path, caching=False, **options)
            try:
                codec = _recorded_codec(probe.info()["values"])
            finally:
                probe.close()
    dumps, loads = codec
    return PersistDict(path, value_serializer=dumps, value_unserializer=loads, caching=False, **options)


@contextmanager
def _store(ctx: click.Context, path: str, create: bool = False, **options: Any) -> Iterator[PersistDict]:
    store = _open(path, ctx.obj["values"], create, **options)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _progress(what: str, unit: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when it is a terminal; none when piped (then no callback at all)."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    # A stream of its own on fd 2: handed sys.stderr itself, tqdm 4.70 drew nothing on a pseudo-terminal
    # (tests/test_cli.py). shutil's width falls back to 80 columns where the terminal reports none.
    with open(sys.stderr.fileno(), "w", closefd=False, encoding="utf-8", errors="replace") as stream, \
            tqdm(total=0, desc=what, unit=unit, unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000,
                 file=stream, ncols=shutil.get_terminal_size().columns) as bar:
        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield update


def _key_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-t", "--key-type", type=click.Choice(KEY_TYPES), default="str", show_default=True,
                        help="How to read KEY: str, int, float, bytes-hex (00ff), json ([1, \"a\"] is a tuple), "
                             "python (a literal: (1, 'a'), b'x').")(function)


def _key(text: str, key_type: str) -> Any:
    try:
        return parse_key(text, key_type)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY") from None


def _iso(timestamp: float | None) -> str | None:
    return None if not timestamp else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


# -- the commands -----------------------------------------------------------------------------------

STORE = click.argument("store", type=click.Path(file_okay=False, dir_okay=True))


@click.group(epilog="Exit codes: 0 ok, 1 error, 2 wrong usage, 3 not found (key or store), 4 damaged, "
                    "5 in use by another process. Keys are str unless --key-type says otherwise.")
@click.option("--values", type=click.Choice(["auto", *_CODECS]), default="auto", show_default=True,
              help="The value codec; auto: the one the store's format record names.")
@click.version_option(package_name="PersistDict", prog_name="persistdict")
@click.pass_context
def cli(ctx: click.Context, values: str) -> None:
    """Inspect and operate a PersistDict store from the shell.

    \b
    Example:
      persistdict info ./cache
      persistdict ls ./cache --prefix user: --limit 10
    """
    ctx.obj = {"values": values}


@cli.command()
@STORE
@click.option("--json", "as_json_", is_flag=True, help="One JSON object.")
@click.pass_context
def info(ctx: click.Context, store: str, as_json_: bool) -> None:
    """What the store is: entries, bytes, map size, readers, codecs, format.

    \b
    Example:
      persistdict info ./cache
    """
    with _store(ctx, store) as d:
        _echo_figures(d.info(), as_json_)


@cli.command()
@STORE
@click.option("--json", "as_json_", is_flag=True, help="One JSON object.")
@click.pass_context
def stats(ctx: click.Context, store: str, as_json_: bool) -> None:
    """The store's figures (entries, bytes, map size, readers) as stats() gives them.

    \b
    Example:
      persistdict stats ./cache --json
    """
    with _store(ctx, store) as d:
        _echo_figures(d.stats(), as_json_)


def _echo_figures(figures: dict[str, Any], as_json_: bool) -> None:
    """``name: value`` lines, or one JSON object."""
    if as_json_:
        _echo_json(figures)
        return
    for name, value in figures.items():
        click.echo(f"{name}: {value}")


@cli.command(name="ls")
@STORE
@click.option("--prefix", default=None, help="Only str keys that start with this (in key order unless --sort).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many keys.")
@click.option("--sort", type=click.Choice(["insertion", "ctime", "atime"]), default=None,
              help="Order: insertion (the default without --prefix), or oldest first by creation or last access time.")
@click.option("--json", "as_json_", is_flag=True,
              help="One JSON object a line: key, ctime, atime (ISO 8601, UTC).")
@click.pass_context
def list_keys(ctx: click.Context, store: str, prefix: str | None, limit: int | None, sort: str, as_json_: bool) -> None:
    """List keys (str keys as they are, others as their repr).

    \b
    Example:
      persistdict ls ./cache --prefix user: --sort atime --limit 20
    """
    with _store(ctx, store) as d:
        keys: Any = iter(d.keys())
        if prefix is not None:
            matching = d.keys(prefix=prefix)  # reads only the matching entries, in key order
            wanted = set(matching)
            keys = iter(matching) if sort != "insertion" else (key for key in keys if key in wanted)
        sort = sort or "insertion"
        if sort != "insertion" or as_json_:
            rows = []
            for key in keys if sort != "insertion" else islice(keys, limit):
                try:
                    meta = d.metadata(key)
                except KeyError:  # deleted or expired since the listing
                    continue
                rows.append((key, meta))
            if sort != "insertion":
                rows.sort(key=lambda row: getattr(row[1], sort))
            selected = rows[:limit] if limit is not None else rows
            for key, meta in selected:
                if as_json_:
                    _echo_json({"key": as_json(key), "ctime": meta.ctime.isoformat(), "atime": meta.atime.isoformat()})
                else:
                    click.echo(as_text(key))
            return
        for key in islice(keys, limit):
            click.echo(as_text(key))


@cli.command()
@STORE
@click.argument("key")
@_key_option
@click.option("--json", "as_json_", is_flag=True, help="Print the value as JSON (bytes, tuples and other "
                                                        "types as {\"$bytes\"|\"$tuple\"|\"$repr\": ...}).")
@click.pass_context
def get(ctx: click.Context, store: str, key: str, key_type: str, as_json_: bool) -> int:
    """Print the value of KEY (exit code 3 if it is not there).

    \b
    Example:
      persistdict get ./cache user:42
      persistdict get ./cache 7 --key-type int --json
    """
    with _store(ctx, store) as d:
        wanted = _key(key, key_type)
        try:
            value = d[wanted]
        except KeyError:
            raise Failure(f"no key {as_text(wanted)!r} in {store!r}", EXIT_NOT_FOUND) from None
    if as_json_:
        _echo_json(as_json(value))
    else:
        click.echo(as_text(value))
    return EXIT_OK


@cli.command()
@STORE
@click.argument("key")
@_key_option
@click.pass_context
def rm(ctx: click.Context, store: str, key: str, key_type: str) -> int:
    """Delete KEY (exit code 3 if it is not there).

    \b
    Example:
      persistdict rm ./cache user:42
    """
    with _store(ctx, store) as d:
        wanted = _key(key, key_type)
        try:
            del d[wanted]
        except KeyError:
            raise Failure(f"no key {as_text(wanted)!r} in {store!r}", EXIT_NOT_FOUND) from None
    return EXIT_OK


@cli.command()
@STORE
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also remove entries not read for this many days.")
@click.pass_context
def expire(ctx: click.Context, store: str, days: float | None) -> None:
    """Remove entries past their TTL (and, with --days, idle ones) now.

    \b
    Example:
      persistdict expire ./cache --days 30
    """
    with _store(ctx, store, expiration_days=days or 0) as d, _progress("expire", "id") as progress:
        removed = d.expire(progress=progress)
    click.echo(f"removed {removed} entries")


@cli.command()
@STORE
@click.option("--repair", is_flag=True, help="Fix structural problems (the entries stay).")
@click.option("--drop-unreadable", is_flag=True,
              help="Delete entries that fail their checksum or that the value codec cannot decode.")
@click.option("--json", "as_json_", is_flag=True, help="The report as one JSON object.")
@click.pass_context
def check(ctx: click.Context, store: str, repair: bool, drop_unreadable: bool, as_json_: bool) -> int:
    """Cross-check every entry; exit code 4 if problems are left.

    \b
    Example:
      persistdict check ./cache && echo healthy
      persistdict check ./cache --repair
    """
    with _store(ctx, store) as d:
        with _progress("check", "entry") as progress:
            report = d.check(repair=repair, drop_unreadable=drop_unreadable, progress=progress)
        left = report if not (repair or drop_unreadable) or report.ok else d.check()
    facts = {name: getattr(report, name) for name in report.__dataclass_fields__}
    if as_json_:
        _echo_json({**facts, "ok": left.ok})
    else:
        for name, value in facts.items():
            if value or name == "entries":
                click.echo(f"{name}: {value}")
        click.echo("ok" if left.ok else "problems left: see above (--repair, --drop-unreadable)")
    return EXIT_OK if left.ok else EXIT_DAMAGED


@cli.command()
@STORE
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--compact/--no-compact", default=True, show_default=True,
              help="Leave the free pages out of the copy.")
@click.pass_context
def backup(ctx: click.Context, store: str, dest: str, compact: bool) -> None:
    """Copy STORE into DEST (a new or empty directory) as one consistent snapshot, while other
    processes keep using it.

    \b
    Example:
      persistdict backup ./cache ./backups/cache-$(date +%F)
    """
    with _store(ctx, store) as d, _progress("backup", "B") as progress:
        d.backup(dest, compact=compact, progress=progress)
    click.echo(f"backed up {store} to {dest}")


@cli.command()
@click.argument("backup", type=click.Path(file_okay=False, exists=True))
@STORE
@click.option("--overwrite", is_flag=True, help="Replace STORE even if it holds entries.")
def restore(backup: str, store: str, overwrite: bool) -> None:
    """Put BACKUP in place of STORE (refused while a process has STORE open, exit code 5).

    \b
    Example:
      persistdict restore ./backups/cache-2024-05-01 ./cache --overwrite
    """
    with _progress("restore", "B") as progress:
        PersistDict.restore(backup, store, overwrite=overwrite, progress=progress)
    click.echo(f"restored {backup} into {store}")


@cli.command(name="export")
@STORE
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="The file to write (-: standard output).")
@click.pass_context
def export_entries(ctx: click.Context, store: str, output: str) -> None:
    """Write every entry with its times and TTL as JSON lines (see the README's format).

    \b
    Example:
      persistdict export ./cache -o cache.jsonl
      persistdict export ./cache | gzip > cache.jsonl.gz
    """
    with _store(ctx, store) as d, _progress("export", "entry") as progress:
        if output == "-":
            count = d.export(sys.stdout, progress=progress)
        else:
            count = d.export(output, progress=progress)
    click.echo(f"exported {count} entries", err=output == "-")


@cli.command(name="import")
@STORE
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.pass_context
def import_entries(ctx: click.Context, store: str, file: str) -> None:
    """Store the entries of an export (STORE is created if needed), with their times and TTLs.

    \b
    Example:
      persistdict import ./new-cache cache.jsonl
    """
    with _store(ctx, store, create=True) as d, _progress("import", "entry") as progress:
        count = d.import_from(file, progress=progress)
    click.echo(f"imported {count} entries")


@cli.command()
@STORE
@click.pass_context
def compact(ctx: click.Context, store: str) -> None:
    """Give the space of deleted entries back (refused while another process has STORE open, exit code 5).

    \b
    Example:
      persistdict compact ./cache
    """
    with _store(ctx, store) as d, _progress("compact", "B") as progress:
        sizes = d.compact(progress=progress)
    click.echo(f"compacted {store}: {sizes['bytes_before']} -> {sizes['bytes_after']} bytes")


# -- running -----------------------------------------------------------------------------------------

def _warn_in_one_line(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    click.echo(f"persistdict: warning: {message}", err=True)


def run(argv: list[str] | None = None) -> int:
    """Run a command; its exit code. Errors are one line on stderr, never a traceback."""
    warnings.showwarning = _warn_in_one_line
    try:
        code = cli.main(args=argv, prog_name="persistdict", standalone_mode=False)
        return code if isinstance(code, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("persistdict: interrupted", err=True)
        return 130
    except BrokenPipeError:  # `persistdict ls ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - every error ends as one line and an exit code
        code, message = _code_of(exc), str(exc) or type(exc).__name__
        click.echo(f"persistdict: error: {message}", err=True)
        return code


def _code_of(exc: BaseException) -> int:
    if isinstance(exc, Failure):
        return exc.code
    if isinstance(exc, StoreInUseError):
        return EXIT_IN_USE
    if isinstance(exc, (CorruptedRecordError, CorruptedDatabaseError)):
        return EXIT_DAMAGED
    return EXIT_ERROR

