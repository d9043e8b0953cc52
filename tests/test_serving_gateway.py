"""The request path's pipeline (``RedisGateway.fetch``) against real servers."""

from __future__ import annotations

import uuid

import pytest
import redis
from serving_fixtures import RedisProcess

from recsys.snapshots.keys import Keys
from serving.gateway import (
    SLOT,
    Packed,
    RedisGateway,
    RedisUnavailable,
    check_redis_version,
    open_client,
    pack_commands,
    redis_version_supported,
    resp_template,
)


@pytest.fixture
def prefix():
    return f"gwtest-{uuid.uuid4().hex[:8]}"


def _gateway(url: str) -> RedisGateway:
    client, _ = open_client(url, None, timeout_s=2.0)
    return RedisGateway(client, Keys("gwtest"), retry_after_s=1.0)


def test_replies_of_one_pipeline(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:s", b"\x00\x01binary\xff")
    client.rpush(f"{prefix}:l", "a", "b", "c")
    client.sadd(f"{prefix}:set", "x")
    client.set(f"{prefix}:big", b"z" * 300_000)  # several reads of the socket
    gateway = _gateway(redis_url)
    commands = [
        ("MGET", f"{prefix}:s", f"{prefix}:missing"),
        ("GET", f"{prefix}:big"),
        ("LRANGE", f"{prefix}:l", 0, 1),
        ("SMEMBERS", f"{prefix}:set"),
        ("SMEMBERS", f"{prefix}:none"),
        ("INCR", f"{prefix}:n"),
        ("GET", "ключ-" + prefix),  # non-ASCII key: sent as UTF-8
    ]
    try:
        assert gateway.fetch(commands) == [
            [b"\x00\x01binary\xff", None],
            b"z" * 300_000,
            [b"a", b"b"],
            [b"x"],
            [],
            1,
            None,
        ]
        assert gateway.fetch([("INCR", f"{prefix}:n")]) == [2]  # the same connection again
        assert gateway.round_trips == 2
    finally:
        client.delete(*client.keys(f"{prefix}:*"))


def test_error_reply_is_unavailable_and_the_next_call_works(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{prefix}:l", "a")
    gateway = _gateway(redis_url)
    try:
        with pytest.raises(RedisUnavailable, match="WRONGTYPE"):
            gateway.fetch([("GET", f"{prefix}:l"), ("LLEN", f"{prefix}:l")])
        assert not gateway.down  # a bad command is not an outage
        assert gateway.fetch([("LLEN", f"{prefix}:l")]) == [1]
    finally:
        client.delete(f"{prefix}:l")


def test_a_stale_connection_is_retried_once_then_the_breaker_opens():
    server = RedisProcess()
    server.start()
    try:
        gateway = _gateway(server.url)
        assert gateway.fetch([("PING",)]) == [b"PONG"]
        server.stop()
        server.start()  # the thread's connection is now stale: the retry reconnects
        assert gateway.fetch([("PING",)]) == [b"PONG"]
        assert gateway.failures == 0
        server.stop()
        with pytest.raises(RedisUnavailable):
            gateway.fetch([("PING",)])
        assert gateway.failures == 1 and gateway.down
        with pytest.raises(RedisUnavailable, match="a moment ago"):
            gateway.fetch([("PING",)])  # skipped while the breaker is open
    finally:
        server.close()


def test_a_forked_child_talks_to_redis_on_its_own_connection(redis_url):
    import os

    gateway = _gateway(redis_url)
    parent_id = gateway.fetch([("CLIENT", "ID")])[0]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (a gunicorn worker after the app was loaded)
        code = 1
        try:
            child_id = gateway.fetch([("CLIENT", "ID")])[0]
            os.write(write_end, str(child_id).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    child_id = int(os.read(read_end, 64) or b"-1")
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_id not in (parent_id, -1)
    # the parent's connection is untouched by the child
    assert gateway.fetch([("CLIENT", "ID")])[0] == parent_id


def test_a_template_packs_what_the_general_packer_packs():
    template = resp_template(("GET", SLOT), ("LRANGE", SLOT, 0, 4), ("HGET", "h%s", SLOT))
    keys = ("p:v:1:u:C1", "p:live:views:C1", "f")
    packed = template(*keys)
    expected = [("GET", keys[0]), ("LRANGE", keys[1], 0, 4), ("HGET", "h%s", keys[2])]
    assert packed == Packed(pack_commands(expected), 3)
    # text that is not ASCII: lengths count bytes, as the general packer does
    wide = template("ключ", "b", "c")
    assert wide.data == pack_commands(
        [("GET", "ключ"), ("LRANGE", "b", 0, 4), ("HGET", "h%s", "c")]
    )
    assert b"$8\r\n" + "ключ".encode() in wide.data
    with pytest.raises(ValueError):
        resp_template(("GET", b"raw"))


def test_template_packed_reads_round_trip(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{prefix}:l", "a", "b", "c")
    client.sadd(f"{prefix}:s", "x")
    gateway = _gateway(redis_url)
    try:
        reads = resp_template(("LRANGE", SLOT, 0, 1), ("SMEMBERS", SLOT))(
            f"{prefix}:l", f"{prefix}:s"
        )
        assert gateway.fetch_packed(*reads) == [[b"a", b"b"], [b"x"]]
    finally:
        client.delete(f"{prefix}:l", f"{prefix}:s")


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("7.0.15", True),
        ("6.2.14", True),
        ("6.2", True),
        ("10.0.1", True),
        ("6.0.16", False),
        ("5.0.7", False),
        ("unknown", True),
    ],
)
def test_the_oldest_redis_served_is_6_2(version, supported):
    """Recent views use ZADD GT and ZRANGE REV (Redis 6.2): an older server answered every
    recommendation degraded and every event 503, as if it were down."""
    assert redis_version_supported(version) is supported


def test_a_redis_new_enough_or_not_answering_is_not_refused(redis_url):
    check_redis_version(redis.Redis.from_url(redis_url))  # the embedded 6.2 or $REDIS_URL's
    server = RedisProcess()
    server.start()
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
    server.close()
    check_redis_version(client)  # down at start: judged by nothing, served degraded
