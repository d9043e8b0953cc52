"""The data directory: canonical tables as Parquet parts under one manifest.

Layout of a data directory::

    tables/<table>/part-<uuid>.parquet   immutable parts
    tables/manifest.json                 the parts that make up every table
    tables/.lock                         writers' lock
    tables/.readers.lock                 pinned readers' lock
    rejects/<import id>.parquet          rejected input rows with their reason
    imports.jsonl                        one summary line per import (and per generated shop)

A write stages new parts beside the live ones, then replaces ``manifest.json``
in one ``os.replace``: readers and a crashed writer never see half an import,
and every table of one import changes together. Writers are serialised by an
exclusive lock on ``tables/.lock``. Parts no longer named by the manifest
(left by a crash, or replaced) are deleted by a later writer, and so is the
unfinished rejects file of a killed import.

A job that reads several tables (train, tune, publish, summary, run) reads
them all through one pinned view (``with store.pinned() as view:``): one
manifest, so no import that commits meanwhile gives it events of one version
and items or markets of another. The view holds a shared ``flock`` on
``tables/.readers.lock``; a writer deletes replaced parts only when it gets
that lock exclusively without waiting, and otherwise leaves them to a later
writer. So a writer never waits for a reader (an import of a minute is not
held up by a training, nor a training by an import: a reader waits only for
the deletions of a writer that holds the lock), a pinned job keeps its parts
however long it reads (a publish that refits for minutes between two reads),
and a reader killed outright holds nothing: the kernel drops its lock with
its process. The cost is disk: replaced parts stay while any pinned reader is
open; the last one to close deletes them (unless a writer is busy, which then
does). The alternatives fail
such jobs: readers sharing the writers' ``.lock`` would make an import wait
for the longest job and a job for the longest import; retrying the whole
pinned read, as a single unpinned ``DataStore.read`` does, would repeat
minutes of work; keeping parts for N minutes fails a job that reads longer.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recsys.data.schema import TABLES, Table

MANIFEST = "manifest.json"
#: Held shared by pinned readers; a writer deletes replaced parts only when it is free.
READERS_LOCK = ".readers.lock"


#: How often ``DataStore.read`` starts again when a commit removed the parts it read.
READ_ATTEMPTS = 5


class DataError(Exception):
    """Input that cannot be imported; the message says what to do."""


@dataclass
class UpsertStats:
    """What an upsert did to one table."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"new": self.new, "updated": self.updated, "unchanged": self.unchanged}


class TableReader:
    """The reading side of a data directory: its tables as ``manifest()`` names them."""

    root: Path
    tables_dir: Path

    def manifest(self) -> dict:
        """The manifest read from: ``{"tables": {name: [part, ...]}, ...}``."""
        raise NotImplementedError

    def pinned(self) -> AbstractContextManager[StoreView]:
        """A view of one manifest for a sequence of reads (a view yields itself)."""
        raise NotImplementedError

    def parts(self, table: str) -> list[dict]:
        """The parts of ``table`` (each ``{"file", "rows", "month"}``)."""
        _table(table)
        return list(self.manifest()["tables"].get(table, []))

    def has(self, table: str) -> bool:
        """True if ``table`` holds at least one row."""
        return any(p["rows"] for p in self.parts(table))

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        tables = self.manifest()["tables"]
        return {name: sum(p["rows"] for p in tables.get(name, [])) for name in TABLES}

    def dataset(
        self, table: str, months: list[str] | None = None, categorical: Sequence[str] = ()
    ) -> ds.Dataset:
        """A ``pyarrow.dataset`` over the table's parts, for streaming scans.

        ``months`` (``"YYYY-MM"``) restricts a month-partitioned table; the string
        columns ``categorical`` are read dictionary-encoded (see ``read``).
        """
        spec = _table(table)
        parts = self.parts(table)
        if months is not None:
            wanted = set(months)
            parts = [p for p in parts if p.get("month") in wanted]
        files = [str(self.tables_dir / table / p["file"]) for p in parts]
        if not categorical:
            return ds.dataset(files, schema=spec.schema, format="parquet")
        schema = _dictionary_schema(spec, categorical)
        options = ds.ParquetReadOptions(dictionary_columns=list(categorical))
        return ds.dataset(files, schema=schema, format=ds.ParquetFileFormat(read_options=options))

    def read(
        self,
        table: str,
        columns: list[str] | None = None,
        filter=None,
        categorical: Sequence[str] = (),
    ) -> pd.DataFrame:
        """The whole table (or some columns / rows) as a DataFrame.

        The string columns ``categorical`` come as pandas ``category`` (decoded from
        the Parquet dictionary pages): an int32 code per row instead of each value's
        text, for columns with few distinct values (ids of customers and items,
        event types, countries); a column of mostly distinct values gains nothing.
        """
        data = self.dataset(table, categorical=categorical)
        frame = data.to_table(columns=columns, filter=filter).to_pandas()
        # the Arrow table is freed, but its allocator keeps the pages for reuse by Arrow,
        # which the pandas and numpy work after a read does not do: give them back
        pa.default_memory_pool().release_unused()
        return frame


class StoreView(TableReader):
    """The tables of one committed manifest, read-only; see ``DataStore.pinned``."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.tables_dir = root / "tables"
        self._manifest: dict | None = manifest

    def manifest(self) -> dict:
        if self._manifest is None:
            raise RuntimeError("a pinned view of the data was read after its pin was released")
        return self._manifest

    @contextmanager
    def pinned(self) -> Iterator[StoreView]:
        """This view itself: a job handed a view reads that view's manifest."""
        yield self


class DataStore(TableReader):
    """Read and write the canonical tables of one data directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.tables_dir = self.root / "tables"
        self.rejects_dir = self.root / "rejects"

    # ---- reading ---------------------------------------------------------
    def manifest(self) -> dict:
        """The committed manifest: ``{"tables": {name: [part, ...]}, ...}``."""
        path = self.tables_dir / MANIFEST
        if not path.exists():
            return {"tables": {}, "committed_at": None}
        return json.loads(path.read_text())

    def read(self, table: str, *args, **kwargs) -> pd.DataFrame:
        """The whole table (or some columns / rows) as a DataFrame; the arguments of
        ``TableReader.read``.

        A write that commits while this reads deletes the parts it replaced; the
        read then starts again from the new manifest (a few times at most), so it
        returns one committed state of the table, never an error or a mix. Reads of
        several tables that must agree go through one ``pinned`` view.
        """
        for attempt in range(READ_ATTEMPTS):
            try:
                return super().read(table, *args, **kwargs)
            except FileNotFoundError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def pinned(self) -> Iterator[StoreView]:
        """A read-only view of the manifest committed now, whose parts no writer
        deletes until the block ends (see the module docstring)."""
        locked = False
        with ExitStack() as stack:
            manifest = {"tables": {}, "committed_at": None}
            if self.tables_dir.is_dir():  # else nothing is committed; a reader creates nothing
                try:
                    stack.enter_context(_flock(self.tables_dir / READERS_LOCK, fcntl.LOCK_SH))
                    locked = True
                except OSError as exc:
                    # the lock file is missing and may not be created here (a read-only
                    # mount, another user's directory), or the file system refuses locks
                    # (NFS without its lock service: writers here fail on theirs): the
                    # view goes without the lock, as reads did before pinned views
                    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOLCK):
                        raise
                manifest = self.manifest()
            view = StoreView(self.root, manifest)
            try:
                yield view
            finally:
                view._manifest = None
        if locked:
            self._tidy_after_readers()

    def _tidy_after_readers(self) -> None:
        """Delete the parts no manifest names when no pinned reader and no writer is
        busy (each tried without waiting): those a writer kept for readers would
        otherwise stay until the next write. A directory this process may not write
        is left to a later writer."""
        try:
            with _flock(self.tables_dir / ".lock", fcntl.LOCK_EX | fcntl.LOCK_NB) as no_writer:
                if not no_writer:  # a writer collects them when it commits
                    return
                readers = self.tables_dir / READERS_LOCK
                with _flock(readers, fcntl.LOCK_EX | fcntl.LOCK_NB) as no_reader:
                    if no_reader:
                        self._delete_unnamed_parts()
        except OSError:
            pass

    # ---- writing ---------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage writes to several tables and commit them together.

        Leaving the block normally commits; an exception discards the staged
        parts and leaves the committed data as it was.
        """
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        with open(self.tables_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._collect_garbage()
            txn = Transaction(self)
            try:
                yield txn
            except BaseException:
                txn.discard()
                raise
            txn.commit()
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Delete part files that the committed manifest does not name, unless a pinned
        reader may still read them; and the temporary files of killed writers."""
        with _flock(self.tables_dir / READERS_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
            if free:  # else a pinned reader may need them: they stay for a later writer
                self._delete_unnamed_parts()
        for tmp in self.tables_dir.glob(f"{MANIFEST}.*.tmp"):
            tmp.unlink(missing_ok=True)
        # rejects an import was writing when it was killed (one is written only
        # inside a transaction, so none is being written while this holds the lock)
        for tmp in self.rejects_dir.glob(".*.parquet.tmp"):
            tmp.unlink(missing_ok=True)

    def _delete_unnamed_parts(self) -> None:
        live = {
            (name, p["file"]) for name, parts in self.manifest()["tables"].items() for p in parts
        }
        for name in TABLES:
            folder = self.tables_dir / name
            if not folder.is_dir():
                continue
            for path in folder.glob("part-*.parquet"):
                if (name, path.name) not in live:
                    path.unlink(missing_ok=True)


@dataclass
class Transaction:
    """Writes staged against one data directory; see ``DataStore.transaction``."""

    store: DataStore
    tables: dict[str, list[dict]] = field(init=False)
    staged: list[Path] = field(default_factory=list)
    _known: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tables = {k: list(v) for k, v in self.store.manifest()["tables"].items()}

    def write_part(self, table: str, data: pa.Table | pd.DataFrame) -> None:
        """Append ``data`` to ``table`` as new parts, without any merging.

        For a writer that knows its rows are new (the synthetic generator);
        rows of a month-partitioned table are split by month.
        """
        spec = _table(table)
        arrow = to_arrow(spec, data)
        if spec.partition_by_month is None:
            self._add_part(spec, arrow, None)
            return
        months = month_keys(arrow.column(spec.partition_by_month))
        for month in np.unique(months):
            self._add_part(spec, arrow.filter(pa.array(months == month)), str(month))

    def replace_table(self, table: str) -> None:
        """Drop every committed part of ``table`` (at commit time)."""
        _table(table)
        self.tables[table] = [p for p in self.tables.get(table, []) if p.get("staged")]
        self._known.clear()

    def upsert(
        self, table: str, data: pa.Table | pd.DataFrame, keep_stored: tuple[str, ...] = ()
    ) -> UpsertStats:
        """Merge ``data`` into ``table`` by the table's key.

        ``keep_first`` tables (events) keep the stored row and add only new
        keys, touching only the months the new rows fall in; ``keep_last``
        tables (items, customers) replace stored rows by the new ones, except
        in the columns ``keep_stored`` (the source does not have them): there
        a stored row keeps its values.
        """
        spec = _table(table)
        new = to_arrow(spec, data).to_pandas()
        stats = UpsertStats()
        new = new.drop_duplicates(
            list(spec.key), keep="last" if spec.on_conflict == "keep_last" else "first"
        )
        if keep_stored and spec.on_conflict == "keep_last":
            new = self._keep_stored(spec, new, list(keep_stored))
            if "unsubscribed_at" in keep_stored:  # a stored unsubscribe still revokes consent
                new["email_consent"] &= new["unsubscribed_at"].isna()
        if spec.partition_by_month is not None:
            months = month_keys(
                pa.array(
                    new[spec.partition_by_month],
                    type=spec.schema.field(spec.partition_by_month).type,
                )
            )
            for month in np.unique(months):
                rows = new[months == month]
                known = self._known_keys(spec, str(month))
                fresh = rows[~np.isin(rows[spec.key[0]].to_numpy(), known)]
                stats.unchanged += len(rows) - len(fresh)
                stats.new += len(fresh)
                if len(fresh):
                    self._add_part(spec, to_arrow(spec, fresh), str(month))
                    ids = fresh[spec.key[0]].to_numpy()
                    self._known[str(month)] = np.union1d(known, ids)
            return stats
        old = self._read(spec)
        key = list(spec.key)
        merged = pd.concat([old, new], ignore_index=True)
        if len(old):
            old_keys = pd.MultiIndex.from_frame(old[key])
            new_keys = pd.MultiIndex.from_frame(new[key])
            present = new_keys.isin(old_keys)
            same = _rows_equal(old, new[present], key)
            stats.unchanged = int(same)
            stats.updated = int(present.sum()) - int(same)
            stats.new = int((~present).sum())
        else:
            stats.new = len(new)
        merged = merged.drop_duplicates(key, keep="last").sort_values(key, ignore_index=True)
        # ``merged`` holds every current part, staged ones too (an earlier upsert
        # of this transaction): it replaces them all, or their rows would repeat.
        self.tables[table] = []
        self._add_part(spec, to_arrow(spec, merged), None)
        return stats

    # ---- internals -------------------------------------------------------
    def _keep_stored(self, spec: Table, new: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        """``new`` with the stored values of ``columns`` where its key is stored."""
        key = list(spec.key)
        stored = self._read(spec, key + columns)
        found = new[key].merge(stored, on=key, how="left", indicator=True)
        found.index = new.index
        is_stored = found.pop("_merge") == "both"
        out = new.copy()
        for col in columns:
            out[col] = out[col].mask(is_stored, found[col])
        return out

    def _known_keys(self, spec: Table, month: str) -> np.ndarray:
        """Sorted keys of one month of a single-key partitioned table (cached)."""
        if month not in self._known:
            stored = self._read(spec, [spec.key[0]], month=month)[spec.key[0]].to_numpy()
            self._known[month] = np.unique(stored)
        return self._known[month]

    def _read(
        self, spec: Table, columns: list[str] | None = None, month: str | None = None
    ) -> pd.DataFrame:
        parts = self.tables.get(spec.name, [])
        if month is not None:
            parts = [p for p in parts if p.get("month") == month]
        files = [str(self.store.tables_dir / spec.name / p["file"]) for p in parts]
        schema = (
            spec.schema if columns is None else pa.schema([spec.schema.field(c) for c in columns])
        )
        if not files:
            return schema.empty_table().to_pandas()
        return (
            ds.dataset(files, schema=spec.schema, format="parquet")
            .to_table(columns=columns)
            .to_pandas()
        )

    def _add_part(self, spec: Table, arrow: pa.Table, month: str | None) -> None:
        folder = self.store.tables_dir / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        path = folder / name
        self.staged.append(path)
        pq.write_table(arrow, path, compression="zstd")
        self.tables.setdefault(spec.name, []).append(
            {"file": name, "rows": arrow.num_rows, "month": month, "staged": True}
        )

    def commit(self) -> None:
        tables = {
            name: [{k: v for k, v in p.items() if k != "staged"} for p in parts]
            for name, parts in self.tables.items()
        }
        body = {"tables": tables, "committed_at": datetime.now(UTC).isoformat()}
        tmp = self.store.tables_dir / f"{MANIFEST}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as fh:
            json.dump(body, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.store.tables_dir / MANIFEST)

    def discard(self) -> None:
        for path in self.staged:
            path.unlink(missing_ok=True)


def to_arrow(spec: Table, data: pa.Table | pd.DataFrame) -> pa.Table:
    """``data`` cast to the table's schema (columns in schema order)."""
    if isinstance(data, pd.DataFrame):
        missing = [f.name for f in spec.schema if f.name not in data.columns]
        if missing:
            raise DataError(f"{spec.name}: missing columns {missing}")
        return pa.Table.from_pandas(
            data[spec.schema.names], schema=spec.schema, preserve_index=False
        )
    return data.select(spec.schema.names).cast(spec.schema)


@contextmanager
def _flock(path: Path, operation: int) -> Iterator[bool]:
    """``flock(operation)`` held on ``path`` for the block; False when ``LOCK_NB``
    found it taken. The kernel releases it if the process dies."""
    fd = None
    if operation & fcntl.LOCK_EX:  # NFS emulates flock by fcntl locks: EX needs write access
        # (another user's lock file cannot be opened so: read access does off NFS)
        with suppress(PermissionError):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if fd is None:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, operation)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)


def _dictionary_schema(spec: Table, columns: Sequence[str]) -> pa.Schema:
    """``spec``'s schema with the string ``columns`` dictionary-encoded."""
    schema = spec.schema
    for name in columns:
        i = schema.get_field_index(name)
        if i < 0 or not pa.types.is_string(schema.field(i).type):
            raise ValueError(f"{spec.name}.{name} is not a string column; it cannot be categorical")
        schema = schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), pa.string())))
    return schema


def _table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise DataError(f"unknown table {name!r}; tables are {sorted(TABLES)}") from None


def month_keys(timestamps: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``"YYYY-MM"`` of every timestamp."""
    values = timestamps.to_numpy() if isinstance(timestamps, pa.Array) else np.asarray(timestamps)
    return np.datetime_as_string(values.astype("datetime64[M]"), unit="M")


def _rows_equal(old: pd.DataFrame, new: pd.DataFrame, key: list[str]) -> int:
    """How many rows of ``new`` equal the stored row with the same key."""
    if not len(new):
        return 0
    joined = new.merge(old, on=key, how="inner", suffixes=("", "_old"))
    equal = np.ones(len(joined), dtype=bool)
    for col in new.columns:
        if col in key:
            continue
        a, b = joined[col], joined[f"{col}_old"]
        if _is_number(a) and _is_number(b):  # an int column with a null is read as floats
            same = (a.astype("Float64") == b.astype("Float64")).fillna(False)
        else:
            same = a.astype(str) == b.astype(str)
        equal &= (same | (a.isna() & b.isna())).to_numpy(dtype=bool)
    return int(equal.sum())


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


IMPORT_LOG = "imports.jsonl"


def append_import_log(root: Path, summary: dict) -> None:
    """Append one import summary to ``imports.jsonl`` in the data directory."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / IMPORT_LOG, "a") as fh:
        fh.write(json.dumps(summary, default=str) + "\n")


def read_import_log(root: Path) -> list[dict] | None:
    """Every import summary of the data directory, oldest first (None: no log)."""
    path = root / IMPORT_LOG
    if not path.exists():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line]
