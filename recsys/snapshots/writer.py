"""Write a snapshot under a new version, then flip ``current`` in one command.

Readers only follow ``current``: while a publish writes ``v:<new>:*`` they keep
reading the old version, and a publish that dies half-way (even by SIGKILL)
leaves ``current`` and everything it points to untouched. The next publish
deletes the debris: every version in the ``versions`` set that is neither
``current`` nor ``previous``. Writes go through pipelines without
transactions. Publishes are serialised by a lock key whose TTL is renewed as
the writer makes progress, so the lock of a killed writer expires quickly.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import redis

from recsys.snapshots.codec import CODEC, as_str, pack, pack_rows
from recsys.snapshots.keys import Keys

#: Keys per MSET command.
MSET_PAIRS = 500

#: The flip, run by the server as one command: only while the caller holds the
#: lock (KEYS[1] = lock, ARGV[1] = token), ``previous`` := ``current`` (KEYS[3],
#: KEYS[2]) and ``current`` := ARGV[2]. Returns the old current (false: none),
#: or the error ``LOCK_LOST``.
_FLIP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LOCK_LOST the publish lock expired')
end
local old = redis.call('GET', KEYS[2])
if old and old ~= ARGV[2] then
  redis.call('SET', KEYS[3], old)
end
redis.call('SET', KEYS[2], ARGV[2])
return old
"""

#: Compare-and-act on the publish lock (KEYS[1]) held with token ARGV[1], in one
#: command: between a GET and a DEL (or PEXPIRE) the lock could expire and be
#: taken by another writer, whose lock would then be deleted (or extended).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

#: Rollback as one command: swap ``current`` (KEYS[1]) and ``previous`` (KEYS[2])
#: if the previous version's meta (key ARGV[1] .. version .. ARGV[2]) says ``ready``.
_ROLLBACK = """
local current = redis.call('GET', KEYS[1])
local previous = redis.call('GET', KEYS[2])
if not previous or redis.call('HGET', ARGV[1] .. previous .. ARGV[2], 'status') ~= 'ready' then
  return redis.error_reply('NO_PREVIOUS no previous snapshot to roll back to')
end
redis.call('SET', KEYS[1], previous)
if current then
  redis.call('SET', KEYS[2], current)
end
return {previous, current or false}
"""


class PublishLocked(RuntimeError):
    """Another publish holds the lock."""


def new_version() -> str:
    """A sortable, unique snapshot version id (UTC time + random suffix)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class SnapshotWriter:
    """Writes one new snapshot version; use as a context manager (holds the lock).
    ``version`` is final once entered."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        batch: int = 2_000,
        lock_ttl_ms: int = 30_000,
        lock_wait_s: float | None = None,
        max_rate: float | None = None,
    ):
        self.client = client
        self.keys = keys
        self.batch = batch
        self.lock_ttl_ms = lock_ttl_ms
        self.lock_wait_s = lock_ttl_ms / 1000 + 1 if lock_wait_s is None else lock_wait_s
        self.version = new_version()
        self.token = secrets.token_hex(8)
        self.bytes = 0
        self.keys_written = 0
        self.max_rate = max_rate  # keys per second, to spare a busy shared Redis
        self._pipe = client.pipeline(transaction=False)
        self._pending = 0
        self._began = time.monotonic()
        self._flipped = False
        self._renewed = time.monotonic()
        self.deleted: list[str] = []

    # -- lock ---------------------------------------------------------------------
    def __enter__(self) -> SnapshotWriter:
        deadline = time.monotonic() + self.lock_wait_s
        while not self.client.set(self.keys.publish_lock, self.token, nx=True, px=self.lock_ttl_ms):
            if time.monotonic() > deadline:
                # the holder's TTL, not ours: it may have been started with another --lock-ttl
                left_ms = self.client.pttl(self.keys.publish_lock)
                if left_ms == -2:
                    continue  # released since: take it now
                when = (
                    f"if it died, the lock expires in {math.ceil(left_ms / 1000)} s"
                    if left_ms >= 0
                    else "this lock never expires (no publish sets it so): delete the key "
                    "if no publish runs"
                )
                raise PublishLocked(
                    f"another publish holds {self.keys.publish_lock}: it renews the lock while "
                    f"it scores and writes; {when}"
                )
            time.sleep(0.2)
        try:
            self.deleted = self.cleanup()  # debris of writers that died
            while not self.client.zadd(self.keys.versions, {self.version: time.time()}, nx=True):
                # an id in use (the same second and random suffix): writing under it would
                # mark that version, perhaps the served one, as being written
                self.version = new_version()
            self.client.hset(
                self.keys.meta(self.version),
                mapping={
                    "status": "writing",
                    "codec": CODEC,
                    "started_at": datetime.now(UTC).isoformat(),
                },
            )
        except BaseException as exc:  # __exit__ is not called when __enter__ fails
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._pipe.reset()
            if exc_type is not None and not self._flipped:
                self._discard()
        finally:
            try:
                self.client.eval(_RELEASE, 1, self.keys.publish_lock, self.token)  # ours only
            except redis.RedisError:
                if exc_type is None:
                    raise
                # a failing publish (Redis gone): its own error is the one to report;
                # the lock expires after its TTL

    def _discard(self) -> None:
        """Delete the version of this failed publish (a Redis out of memory gets its memory
        back now, not at the next publish). Best effort: what it cannot delete, the next
        publish does. A version that ``current`` or ``previous`` names is kept (a flip whose
        reply was lost went through)."""
        try:
            pointers = {as_str(v) for v in self.client.mget(self.keys.current, self.keys.previous)}
            if self.version not in pointers:
                delete_version(self.client, self.keys, self.version)
        except redis.RedisError:
            pass

    def _renew(self) -> None:
        if not self.client.eval(_RENEW, 1, self.keys.publish_lock, self.token, self.lock_ttl_ms):
            raise PublishLocked("lost the publish lock (expired); publish again")
        self._renewed = time.monotonic()

    def keep_lock(self) -> None:
        """Renew the lock during a long step (scoring the next lists, deleting old
        versions) once a third of its TTL has passed; raises ``PublishLocked`` if it was
        lost before the flip (after it, a lost lock no longer matters)."""
        if time.monotonic() - self._renewed < self.lock_ttl_ms / 3000:
            return
        try:
            self._renew()
        except PublishLocked:
            if not self._flipped:
                raise

    # -- writes -------------------------------------------------------------------
    def set(self, key: str, value: bytes | str) -> None:
        """Queue one SET; flushes every ``batch`` commands."""
        data = value.encode() if isinstance(value, str) else value
        self._pipe.set(key, data)
        self.bytes += len(key) + len(data)
        self.keys_written += 1
        self._pending += 1
        if self._pending >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Renew the lock, send the queued commands, renew it again."""
        if self._pending:
            # a writer that lost its lock writes nothing more: the new holder's cleanup may
            # have dropped this version from the versions set, and keys written after that
            # were found by nothing once this writer died too
            self._renew()
            try:
                self._pipe.execute()
            except redis.ResponseError as exc:
                if "maxmemory" not in str(exc):
                    raise
                # the pipeline's message quotes the refused command, packed values and all
                raise redis.OutOfMemoryError(
                    f"out of memory (the server's maxmemory) after {self.keys_written} keys of "
                    f"snapshot {self.version}: not published, its keys are deleted; the served "
                    "snapshot is unchanged. Free memory or raise maxmemory, then publish again"
                ) from None
            self._pending = 0
        while self.max_rate:  # a slow rate may wait longer than the lock lives: renew on the way
            ahead = self.keys_written / self.max_rate - (time.monotonic() - self._began)
            if ahead <= 0:
                break
            time.sleep(min(ahead, self.lock_ttl_ms / 3000))
            self._renew()
        self._renew()

    def set_list(self, key: str, ids: np.ndarray, scores: np.ndarray) -> None:
        """One packed ranked list."""
        self.set(key, pack(ids, scores))

    def set_many(self, names: list[str], values: list[bytes]) -> None:
        """Queue many keys as MSET commands of ``MSET_PAIRS`` pairs (fewer round trips and
        far less client-side work than one SET each); flushes every ``batch`` keys."""
        for start in range(0, len(names), MSET_PAIRS):
            chunk = dict(
                zip(
                    names[start : start + MSET_PAIRS],
                    values[start : start + MSET_PAIRS],
                    strict=True,
                )
            )
            self._pipe.mset(chunk)
            self.bytes += sum(len(k) + len(v) for k, v in chunk.items())
            self.keys_written += len(chunk)
            self._pending += len(chunk)
            if self._pending >= self.batch:
                self.flush()

    def set_lists(self, names: list[str], ids: np.ndarray, scores: np.ndarray) -> None:
        """Packed ranked lists, one per row of ``ids`` / ``scores``, under ``names``."""
        self.set_many(names, pack_rows(ids, scores))

    @property
    def flipped(self) -> bool:
        """True once ``current`` names this writer's version."""
        return self._flipped

    def commit(self, meta: dict) -> dict:
        """Write the meta record, flip ``current`` (old one becomes ``previous``), clean up."""
        self.flush()
        info = {k: str(v) for k, v in meta.items()}
        info.update(
            {
                "status": "ready",
                "codec": CODEC,
                "keys": str(self.keys_written + 1),
                "bytes": str(self.bytes),
                "created_at": datetime.now(UTC).isoformat(),
            }
        )
        self.client.hset(self.keys.meta(self.version), mapping=info)
        keys = (self.keys.publish_lock, self.keys.current, self.keys.previous)
        try:  # the flip: one server-side script, so no reader sees a half-done flip
            old = as_str(self.client.eval(_FLIP, len(keys), *keys, self.token, self.version))
            self._flipped = True
        except redis.ResponseError as exc:
            if "LOCK_LOST" in str(exc):
                raise PublishLocked("lost the publish lock (expired); publish again") from exc
            raise
        self.deleted += self.cleanup()
        return {"version": self.version, "previous": old, "deleted_versions": self.deleted}

    # -- housekeeping -------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Delete every version that is not current, previous or being written by us."""
        # both pointers in one read: a rollback (which takes no lock) between two reads
        # would show the same version twice and leave the other one, served, to delete
        pointers = self.client.mget(self.keys.current, self.keys.previous)
        keep = {*(as_str(v) for v in pointers), self.version}
        deleted = []
        for raw in self.client.zrange(self.keys.versions, 0, -1):
            version = as_str(raw)
            if version in keep:
                continue
            delete_version(self.client, self.keys, version, progress=self.keep_lock)
            deleted.append(version)
        return deleted


def delete_version(
    client: redis.Redis,
    keys: Keys,
    version: str,
    batch: int = 1_000,
    progress: Callable[[], None] | None = None,
) -> int:
    """Unlink every key of one version (many keys per UNLINK); returns how many.
    ``progress`` is called after every SCAN page (SCAN goes through the whole keyspace)."""
    count, cursor = 0, 0
    chunk: list[bytes] = []
    while True:
        cursor, found = client.scan(cursor, match=keys.version_pattern(version), count=batch)
        chunk += found
        if len(chunk) >= batch:
            count += client.unlink(*chunk)
            chunk = []
        if progress is not None:
            progress()
        if not cursor:
            break
    if chunk:
        count += client.unlink(*chunk)
    client.zrem(keys.versions, version)
    return count


def rollback(client: redis.Redis, keys: Keys) -> dict:
    """Swap ``current`` and ``previous`` in one server-side step; refuses (LookupError)
    when there is no ready previous version."""
    head, tail = keys.meta_parts()
    try:
        previous, current = client.eval(_ROLLBACK, 2, keys.current, keys.previous, head, tail)
    except redis.ResponseError as exc:
        if "NO_PREVIOUS" in str(exc):
            raise LookupError("no previous snapshot to roll back to") from exc
        raise
    return {"version": as_str(previous), "previous": as_str(current) if current else None}
