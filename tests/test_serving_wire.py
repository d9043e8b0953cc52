"""The request path's own Redis connection, against real servers."""

from __future__ import annotations

import uuid

import pytest
import redis
from serving_fixtures import RedisProcess

from recsys.snapshots.keys import Keys
from serving.gateway import RedisGateway, RedisUnavailable, _PooledConnection
from serving.wire import WireConnection, pack_commands


@pytest.fixture
def prefix():
    return f"wiretest-{uuid.uuid4().hex[:8]}"


def _seed(client: redis.Redis, prefix: str) -> None:
    client.set(f"{prefix}:s", b"\x00\x01binary\xff")
    client.rpush(f"{prefix}:l", "a", "b", "c")
    client.sadd(f"{prefix}:set", "x")
    client.set(f"{prefix}:big", b"z" * 300_000)  # several reads of the socket


def test_replies_equal_redis_py(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    _seed(client, prefix)
    commands = [
        ("MGET", f"{prefix}:s", f"{prefix}:missing"),
        ("GET", f"{prefix}:big"),
        ("LRANGE", f"{prefix}:l", 0, 1),
        ("SMEMBERS", f"{prefix}:set"),
        ("SMEMBERS", f"{prefix}:none"),
        ("INCR", f"{prefix}:n"),
        ("GET", "ключ-" + prefix),  # non-ASCII key: sent as UTF-8
    ]
    conn = WireConnection(redis_url, timeout_s=2.0)
    try:
        got = conn.call(pack_commands(commands), len(commands))
        assert got == [
            [b"\x00\x01binary\xff", None],
            b"z" * 300_000,
            [b"a", b"b"],
            [b"x"],
            [],
            1,
            None,
        ]
        # the same socket serves the next call
        assert conn.call(pack_commands([("INCR", f"{prefix}:n")]), 1) == [2]
    finally:
        conn.close()
        client.delete(*client.keys(f"{prefix}:*"))


def test_error_reply_raises_and_reconnects(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{prefix}:l", "a")
    conn = WireConnection(redis_url, timeout_s=2.0)
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            conn.call(pack_commands([("GET", f"{prefix}:l"), ("LLEN", f"{prefix}:l")]), 2)
        assert not conn.connected  # replies may be unread: the socket is dropped
        assert conn.call(pack_commands([("LLEN", f"{prefix}:l")]), 1) == [1]
    finally:
        conn.close()
        client.delete(f"{prefix}:l")


def test_password_and_database_from_the_url(prefix):
    server = RedisProcess()
    server.start()
    try:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("requirepass", "s3cret")
        base = f"redis://:s3cret@127.0.0.1:{server.port}"
        redis.Redis.from_url(f"{base}/3").set("k", "in-db-3")
        conn = WireConnection(f"{base}/3", timeout_s=2.0)
        assert conn.call(pack_commands([("GET", "k")]), 1) == [b"in-db-3"]
        conn.close()
        wrong = WireConnection(f"redis://:nope@127.0.0.1:{server.port}/3", timeout_s=2.0)
        with pytest.raises(redis.ResponseError):
            wrong.call(pack_commands([("GET", "k")]), 1)
        anonymous = WireConnection(f"redis://127.0.0.1:{server.port}/3", timeout_s=2.0)
        with pytest.raises(redis.ResponseError, match="NOAUTH"):
            anonymous.call(pack_commands([("GET", "k")]), 1)
    finally:
        server.close()


def test_server_down_raises_os_error_then_recovers():
    server = RedisProcess()
    server.start()
    try:
        conn = WireConnection(server.url, timeout_s=1.0)
        assert conn.call(pack_commands([("PING",)]), 1) == [b"PONG"]
        server.stop()
        with pytest.raises(OSError):
            conn.call(pack_commands([("PING",)]), 1)
        assert not conn.connected
        server.start()
        assert conn.call(pack_commands([("PING",)]), 1) == [b"PONG"]
    finally:
        server.close()


def test_tls_urls_are_left_to_redis_py(redis_url):
    assert WireConnection.supports("redis://h:6379/0")
    assert WireConnection.supports("unix:///run/redis.sock")
    assert not WireConnection.supports("rediss://h:6380/0")
    with pytest.raises(ValueError, match="rediss"):
        WireConnection("rediss://h:6380/0", timeout_s=1.0)
    # a gateway without a URL (or with a TLS one) reads through redis-py's connection
    gateway = RedisGateway(redis.Redis.from_url(redis_url, protocol=2), Keys("wiretest"))
    assert gateway.fetch([("PING",), ("ECHO", "hi")]) == [b"PONG", b"hi"]
    assert isinstance(gateway._connection(), _PooledConnection)


def test_gateway_retries_a_stale_connection_once():
    server = RedisProcess()
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        gateway = RedisGateway(client, Keys("wiretest"), url=server.url, timeout_s=1.0)
        assert gateway.fetch([("PING",)]) == [b"PONG"]
        assert isinstance(gateway._connection(), WireConnection)
        server.stop()
        server.start()  # the thread's socket is now stale: the retry reconnects
        assert gateway.fetch([("PING",)]) == [b"PONG"]
        assert gateway.failures == 0
        server.stop()
        with pytest.raises(RedisUnavailable):
            gateway.fetch([("PING",)])
        assert gateway.failures == 1 and gateway.down
    finally:
        server.close()
