"""The Redis engine when the server fails: a restart loses no acknowledged write (appendfsync
always) and the clients go on without being restarted; errors while it is down, on a read-only
replica and out of memory are PersistDictErrors naming the server, never its password."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from PersistDict import (
    DatabasePermissionError,
    PersistDict,
    PersistDictError,
    ServerUnavailableError,
    StorageFullError,
)

import _redis_workers as workers
from _concurrency import join_all, start_process
from _redis import RedisServer, free_port

CTX = multiprocessing.get_context("spawn")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test only (it is restarted, killed or reconfigured)."""
    own = RedisServer(tmp_path / "redis")
    own.start()
    yield own
    own.stop()


def test_a_restart_loses_no_acknowledged_write_and_clients_recover(server: RedisServer) -> None:
    """The server SIGKILLed and restarted twice while another process writes 400 keys: every write it
    saw acknowledged is there, it got ServerUnavailableError while the server was down and went on
    without a restart; a reader opened before the restarts reads the new writes (its front cache
    resynchronised)."""
    name = f"restart-{uuid.uuid4().hex}"
    acked, errors, stop = CTX.Value("q", 0), CTX.Value("q", 0), CTX.Value("b", 0)
    reader = workers.open_store(server.url, name)
    reader["before"] = 1
    assert reader["before"] == 1 and reader["before"] == 1  # cached
    process = start_process(CTX, workers.restarted_writer, server.url, name, 400, acked, errors, stop)
    for _ in range(2):
        deadline = time.monotonic() + 60
        start = acked.value
        while acked.value < start + 50:
            assert time.monotonic() < deadline and process.is_alive()
            time.sleep(0.005)
        server.kill()
        acknowledged = acked.value
        time.sleep(0.3)
        with pytest.raises(ServerUnavailableError, match=f"127.0.0.1:{server.port}"):
            reader["k0"]
        server.start()
        with PersistDict(server.url, namespace=name, background_thread="disabled") as check:
            assert all(check[f"k{i}"] == i for i in range(acknowledged))
    join_all([process])
    assert process.exitcode == 0 and acked.value == 400 and errors.value > 0
    workers.wait_subscribed(reader)
    with PersistDict(server.url, namespace=name, background_thread="disabled") as other:
        other["before"] = 2
    deadline = time.monotonic() + 30
    while reader["before"] != 2:  # notified: within the freshness window
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(reader) == 401 and reader.check().ok
    reader.close()


def test_errors_name_the_server_and_never_the_password() -> None:
    """A refused connection raises ServerUnavailableError (a ConnectionError) naming host and port,
    without the URL's user or password."""
    port = free_port()
    with pytest.raises(ServerUnavailableError) as caught:
        PersistDict(f"redis://alice:hunter2@127.0.0.1:{port}/3", namespace="n")
    text = str(caught.value)
    assert f"redis://127.0.0.1:{port}/3" in text and "hunter2" not in text and "alice" not in text
    assert isinstance(caught.value, ConnectionError) and isinstance(caught.value, PersistDictError)
    assert "hunter2" not in repr(caught.value.__context__ or "") or caught.value.__suppress_context__


def test_a_url_with_a_bad_port_is_a_valueerror_without_the_password() -> None:
    """A port that is not a number: ValueError naming the URL without its user or password, and
    nothing of urllib's own error chained (it would carry the whole URL)."""
    with pytest.raises(ValueError, match="not a Redis URL") as caught:
        PersistDict("redis://alice:hunter2@localhost:notaport/0", namespace="n")
    text = str(caught.value)
    assert "redis://localhost:notaport/0" in text and "hunter2" not in text and "alice" not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_read_only_replica_and_an_out_of_memory_server_raise_clear_errors(server: RedisServer,
                                                                           tmp_path: Path) -> None:
    """Writing to a read-only replica raises DatabasePermissionError; writing to a server at its
    maxmemory raises StorageFullError; both name the server and the store stays readable."""
    name = f"faults-{uuid.uuid4().hex}"
    with PersistDict(server.url, namespace=name, background_thread="disabled") as primary:
        primary["a"] = 1
    replica = RedisServer(tmp_path / "replica")
    replica.start()
    try:
        client = redis.Redis(port=replica.port)
        client.replicaof("127.0.0.1", server.port)
        deadline = time.monotonic() + 30
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.close()
        with PersistDict(replica.url, namespace=name, background_thread="disabled") as store:
            assert store["a"] == 1
            with pytest.raises(DatabasePermissionError, match=f"{replica.port}.*read-only replica"):
                store["b"] = 2
    finally:
        replica.kill()
    admin = redis.Redis(port=server.port)
    with PersistDict(server.url, namespace=name, background_thread="disabled") as store:
        admin.config_set("maxmemory", "1")
        try:
            with pytest.raises(StorageFullError, match=f"{server.port}.*out of memory"):
                store["b"] = "x" * 1000
            assert store["a"] == 1 and "b" not in store
        finally:
            admin.config_set("maxmemory", "0")  # close() stores the access times
    admin.close()
