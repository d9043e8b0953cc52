"""The event stream in Redis as an import source (``--format stream``).

``POST /v1/events`` appends every accepted event to the stream
``<prefix>:events`` (fields: the canonical event columns as text). This
format drains it: it reads the entries after the last drained id (kept in
``<data>/stream_cursor.json``) up to the stream's end at the start of the
import, validates them exactly like the ``events`` format (``parse_events``;
rejected entries keep their ``stream_id``), and only after the import has
committed records the new cursor and trims the imported entries from the
stream (``XTRIM MINID``). An import that fails (Redis gone while it reads:
a one-line error) leaves the stream as it was; one interrupted between
commit and trim imports nothing twice (the cursor, and content-derived event
ids), and a trim that fails is left to a later import (``stream.trimmed``
false in the summary).

Entries the stream dropped before they were imported (``POST /v1/events``
caps the stream with ``MAXLEN``, so a stream left undrained loses its oldest
entries) cannot be recovered, but they are counted: on Redis 7 and newer the
summary's ``stream.entries_lost`` is the number of entries added since the
last import that were gone when this one read the stream (``XINFO STREAM``'s
``entries-added``, kept with the cursor); ``null`` where that cannot be told
(Redis 6, a cursor written before the count was kept, or a stream deleted
and made anew since the last import).

SRC is the literal ``redis`` (the data directory's Redis: ``$REDIS_URL``,
else the embedded server) or a ``redis://`` / ``unix://`` URL; the key prefix
is ``$RECSYS_REDIS_PREFIX``.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import redis
from tqdm import tqdm

from recsys.data.events import IDENTITY_COLUMNS, event_ids
from recsys.data.formats.canonical import parse_events
from recsys.data.importing import Batch
from recsys.data.store import DataError, DataStore
from recsys.snapshots.keys import Keys

CURSOR_FILE = "stream_cursor.json"
#: Entries per XRANGE call, and per imported batch.
READ_COUNT = 10_000
#: What a stream source may be besides ``redis`` (the data directory's own Redis).
URL_SCHEMES = ("redis://", "rediss://", "unix://")
BATCH_ROWS = 200_000
COLUMNS = list(IDENTITY_COLUMNS)  # the canonical event columns


class StreamImport:
    """Iterates the stream's new entries as import batches; ``after_commit`` trims them."""

    def __init__(self, client: redis.Redis, keys: Keys, target: str, store: DataStore, progress):
        self.client = client
        self.stream = keys.event_stream
        self.target = target
        self.cursor_name = f"{target}#{self.stream}"
        self.store = store
        self.progress = progress
        self.last_id: str | None = None
        self.entries_added: int | None = None
        #: what the summary reports under ``stream`` (ids read, entries lost)
        self.notes: dict = {}
        self._iterator = self._batches()

    def __iter__(self) -> Iterator[Batch]:
        return self._iterator

    def __next__(self) -> Batch:
        return next(self._iterator)

    def _batches(self) -> Iterator[Batch]:
        try:
            yield from self._read()
        except redis.RedisError as exc:  # e.g. the server went away while it was read
            raise DataError(
                f"Redis at {self.target}: {exc}; nothing was imported, the stream is as it was"
            ) from exc

    def _read(self) -> Iterator[Batch]:
        start, added_before = self._cursor()
        try:
            info = self.client.xinfo_stream(self.stream)
        except redis.ResponseError:  # no stream yet: nothing was ever posted
            return
        end = _text(info["last-generated-id"])  # with entries-added: one atomic reading
        added = info.get("entries-added")  # Redis >= 7
        if start is not None and _id(end) <= _id(start):
            return  # nothing new
        low = f"({start}" if start else "-"
        read = 0
        seen = np.empty(0, dtype=np.uint64)
        first_row = 1
        rows: list[dict] = []
        ids: list[str] = []
        bar = tqdm(desc="import stream", unit="event", disable=not self.progress)
        while True:
            entries = self.client.xrange(self.stream, min=low, max=end, count=READ_COUNT)
            for entry_id, fields in entries:
                ids.append(_text(entry_id))
                rows.append({_text(k): _text(v) for k, v in fields.items()})
            bar.update(len(entries))
            read += len(entries)
            done = len(entries) < READ_COUNT or (entries and _text(entries[-1][0]) == end)
            if entries:
                low = f"({_text(entries[-1][0])}"
            if rows and (done or len(rows) >= BATCH_ROWS):
                batch, seen = self._batch(rows, ids, seen, first_row)
                first_row += len(rows)
                rows, ids = [], []
                yield batch
            if done:
                break
        bar.close()
        # everything up to ``end`` is now imported or lost: the cursor moves there
        self.last_id, self.entries_added = end, added
        known = added is not None and (start is None or added_before is not None)
        lost = added - (added_before or 0) - read if known else None
        if lost is not None and lost < 0:  # the stream was deleted and made anew since
            lost = None
        self.notes = {"from_id": start, "to_id": end, "entries_read": read, "entries_lost": lost}

    @property
    def summary_extra(self) -> dict:
        """What the import summary adds for this source (after the batches are read)."""
        return {"stream": self.notes} if self.notes else {}

    def _batch(self, rows, ids, seen, first_row) -> tuple[Batch, np.ndarray]:
        raw = pd.DataFrame({c: [row.get(c, "") for row in rows] for c in COLUMNS}, dtype=object)
        raw.insert(0, "stream_id", ids)
        events, verdicts = parse_events(raw, f"redis stream {self.stream}")
        ok = verdicts.accepted
        event_id = event_ids(events)
        dup = np.zeros(len(raw), dtype=bool)
        dup[ok] = pd.Series(event_id[ok]).duplicated().to_numpy() | np.isin(event_id[ok], seen)
        verdicts.reject(dup, "duplicate_row")
        ok = verdicts.accepted
        events["event_id"] = event_id
        batch = Batch(
            file=f"redis:{self.stream}",
            rows_read=len(raw),
            accepted=int(ok.sum()),
            tables={"events": events[ok]},
            rejects=verdicts.rejects(raw, first_row),
        )
        return batch, np.union1d(seen, event_id[ok])

    def after_commit(self) -> None:
        """Record the cursor, then trim the imported entries (called once committed).

        The cursor only moves forward: of two imports at once, the one that read
        less may finish last, and must not send the next import back over entries
        the other already imported and trimmed (it would count them as lost).
        """
        if self.last_id is None:
            return
        path = self.store.root / CURSOR_FILE
        with open(self.store.root / f".{CURSOR_FILE}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cursors = json.loads(path.read_text()) if path.exists() else {}
            saved = cursors.get(self.cursor_name)
            saved_id = saved.get("id") if isinstance(saved, dict) else saved
            if saved_id is not None and _id(saved_id) >= _id(self.last_id):
                return  # another import got further, and trimmed up to there
            cursors[self.cursor_name] = {"id": self.last_id, "entries_added": self.entries_added}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cursors, indent=1))
            os.replace(tmp, path)
        ms, seq = (int(part) for part in self.last_id.split("-"))
        try:
            self.client.xtrim(self.stream, minid=f"{ms}-{seq + 1}", approximate=False)
        except redis.RedisError:  # committed, cursor saved: a later import trims them
            self.notes["trimmed"] = False

    def _cursor(self) -> tuple[str | None, int | None]:
        """The last drained id and the stream's ``entries-added`` then (None: unknown)."""
        path = self.store.root / CURSOR_FILE
        if not path.exists():
            return None, None
        saved = json.loads(path.read_text()).get(self.cursor_name)
        if isinstance(saved, dict):
            return saved.get("id"), saved.get("entries_added")
        return saved, None  # a cursor from before the count was kept


def import_stream(src: str, store: DataStore, progress: bool = True) -> StreamImport:
    """The event stream of ``src`` (``redis`` or a Redis URL) as import batches."""
    from recsys.snapshots.connection import (
        NoEmbeddedRedis,
        RedisSettingError,
        keys_from_env,
        open_store,
        redis_target,
    )

    try:
        keys_from_env()  # a malformed prefix first, whatever Redis is meant
        if src == "redis":  # a mistyped --data: no embedded Redis made there to read nothing
            _, client = open_store(store.root, create=False)
    except (RedisSettingError, NoEmbeddedRedis) as exc:  # e.g. a REDIS_URL without its scheme
        raise DataError(str(exc)) from None
    if src == "redis":
        target = redis_target(store.root)
    elif src.startswith(URL_SCHEMES):
        client, target = redis.Redis.from_url(src), src
    else:
        raise DataError(
            f"{src}: for --format stream give `redis` (the data directory's Redis) "
            f"or a {', '.join(URL_SCHEMES)} URL"
        )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise DataError(f"cannot reach Redis at {target}: {exc}") from exc
    return StreamImport(client, Keys.from_env(), target, store, progress)


import_stream.reads_files = False  # SRC names a Redis, not a file


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
