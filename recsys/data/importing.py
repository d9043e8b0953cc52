"""Import a source file into the data directory, keeping every rejected row.

``import_source`` runs one format adapter (see ``recsys.data.formats``) over
a source, upserts what it accepts into the canonical tables in one
transaction, and writes the rejected rows with their reasons to
``rejects/<import id>.parquet``. The summary always satisfies
``rows_read == accepted + sum(rejected.values())``. On any error nothing is
committed: the existing tables stay as they were.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.store import DataError, DataStore, append_import_log, now_utc

#: Rows per chunk when a format reads its input in chunks.
CHUNK_ROWS = 500_000


@dataclass
class Batch:
    """What an adapter made of some input rows."""

    file: str
    rows_read: int
    accepted: int
    tables: dict[str, pd.DataFrame]
    rejects: pd.DataFrame  # columns: row, reason, then the raw input columns
    #: per table, the columns the source does not have: stored rows keep theirs
    keep_stored: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rows_read != self.accepted + len(self.rejects):
            raise RuntimeError(
                f"{self.file}: {self.rows_read} rows read but {self.accepted} accepted "
                f"+ {len(self.rejects)} rejected"
            )


@dataclass
class ImportSummary:
    """The outcome of one import."""

    format: str
    source: str
    import_id: str
    rows_read: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    files: dict[str, dict] = field(default_factory=dict)
    tables: dict[str, dict] = field(default_factory=dict)
    rejects_file: str | None = None
    seconds: float = 0.0
    #: what the source adds to the summary (e.g. ``stream``: ids read, entries lost)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "source": self.source,
            "import_id": self.import_id,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "files": self.files,
            "tables": self.tables,
            "rejects_file": self.rejects_file,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_read / self.seconds) if self.seconds else None,
            **self.extra,
        }


def import_source(store: DataStore, fmt: str, source: str | os.PathLike, progress: bool = True):
    """Import ``source`` in format ``fmt`` into ``store``; returns an ``ImportSummary``."""
    from recsys.data.formats import ADAPTERS

    if fmt not in ADAPTERS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(ADAPTERS))}")
    adapter = ADAPTERS[fmt]
    reads_files = getattr(adapter, "reads_files", True)  # False: SRC names a service
    src = Path(source)
    if reads_files and not src.exists():
        raise DataError(f"{src}: no such file or directory")
    started = time.perf_counter()
    digest = _short_hash(src) if reads_files else _text_hash(f"{source}{time.time_ns()}")
    # time, format and source, plus a random part: the same file imported twice in
    # one second must not share (and overwrite) one rejects file
    import_id = f"{now_utc():%Y%m%dT%H%M%S}-{fmt}-{digest}-{secrets.token_hex(2)}"
    summary = ImportSummary(fmt, str(source), import_id)
    store.rejects_dir.mkdir(parents=True, exist_ok=True)
    rejects_tmp = store.rejects_dir / f".{import_id}.parquet.tmp"
    writer: pq.ParquetWriter | None = None
    try:
        if reads_files:
            batches = adapter(src, progress=progress)
        else:
            batches = adapter(str(source), store=store, progress=progress)
        with store.transaction() as txn:
            for batch in batches:
                _count(summary, batch)
                for table, frame in batch.tables.items():
                    stats = txn.upsert(table, frame, batch.keep_stored.get(table, ()))
                    total = summary.tables.setdefault(table, Counter())
                    total.update(stats.as_dict())
                if len(batch.rejects):
                    writer = _write_rejects(writer, rejects_tmp, batch)
            if writer is not None:
                writer.close()
                writer = None
                final = store.rejects_dir / f"{import_id}.parquet"
                os.replace(rejects_tmp, final)
                summary.rejects_file = str(final.relative_to(store.root))
    finally:
        if writer is not None:
            writer.close()
        rejects_tmp.unlink(missing_ok=True)
    after_commit = getattr(batches, "after_commit", None)  # e.g. trim a drained stream
    if after_commit is not None:
        after_commit()
    summary.extra = dict(getattr(batches, "summary_extra", None) or {})
    summary.tables = {k: dict(v) for k, v in summary.tables.items()}
    summary.seconds = time.perf_counter() - started
    append_import_log(store.root, summary.as_dict())
    return summary


def _count(summary: ImportSummary, batch: Batch) -> None:
    summary.rows_read += batch.rows_read
    summary.accepted += batch.accepted
    reasons = Counter(batch.rejects["reason"]) if len(batch.rejects) else Counter()
    summary.rejected.update(reasons)
    per_file = summary.files.setdefault(batch.file, {"rows_read": 0, "accepted": 0, "rejected": 0})
    per_file["rows_read"] += batch.rows_read
    per_file["accepted"] += batch.accepted
    per_file["rejected"] += len(batch.rejects)


def _write_rejects(writer, path: Path, batch: Batch) -> pq.ParquetWriter:
    """Append a batch's rejects: row, reason, file and the raw row as JSON text."""
    raw_cols = [c for c in batch.rejects.columns if c not in ("row", "reason")]
    frame = pd.DataFrame(
        {
            "file": batch.file,
            "row": batch.rejects["row"].astype("int64"),
            "reason": batch.rejects["reason"].astype(str),
            "raw": batch.rejects[raw_cols].to_json(orient="records", lines=True).splitlines()
            if raw_cols
            else "",
        }
    )
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(path, arrow.schema, compression="zstd")
    writer.write_table(arrow)
    return writer


def read_text_table(
    path: Path, chunk_rows: int | None = None, **csv_options
) -> Iterator[pd.DataFrame]:
    """Yield a CSV (optionally compressed) or Parquet file as text columns.

    Raises a one-line ``DataError`` if the file cannot be read.
    """
    try:
        if _is_parquet(path):
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=chunk_rows or CHUNK_ROWS):
                yield _arrow_as_text(batch)
            return
        options = {"dtype": str, "keep_default_na": False, "na_filter": False}
        options.update(csv_options)
        if chunk_rows:
            with pd.read_csv(path, chunksize=chunk_rows, **options) as reader:
                for chunk in reader:
                    yield _without_implicit_index(chunk, path)
        else:
            yield _without_implicit_index(pd.read_csv(path, **options), path)
    except (OSError, EOFError, UnicodeDecodeError, ValueError, pa.ArrowException) as exc:
        if isinstance(exc, DataError):
            raise
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as CSV or Parquet: {first_line}") from exc


def _without_implicit_index(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Undo pandas' implicit index: when the rows have more fields than the header
    has names (a trailing delimiter on every line), pandas makes the first fields
    the index and shifts every column by one. Empty extra fields are dropped;
    extra values are a whole-file error."""
    if isinstance(frame.index, pd.RangeIndex):
        return frame
    fields = pd.concat(
        [frame.index.to_frame(index=False), frame.reset_index(drop=True)],
        axis=1,
        ignore_index=True,
    )
    names = len(frame.columns)
    extra = fields.iloc[:, names:]
    if (extra.apply(lambda c: c.str.strip()) != "").to_numpy().any():
        raise DataError(
            f"{path}: the rows have {fields.shape[1]} fields but the header names {names}"
        )
    fields = fields.iloc[:, :names]
    fields.columns = frame.columns
    return fields


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _arrow_as_text(batch: pa.RecordBatch) -> pd.DataFrame:
    """A Parquet batch as text columns (pandas string dtype), as if read from a CSV file
    that pandas wrote (nulls and float NaN are empty)."""
    columns = []
    for col in batch.columns:
        if pa.types.is_list(col.type):
            col = pc.binary_join(pc.cast(col, pa.list_(pa.string())), "|")
        elif pa.types.is_timestamp(col.type) and col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        elif pa.types.is_floating(col.type):  # NaN is no value, as pandas writes it to CSV
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        columns.append(pc.fill_null(pc.cast(col, pa.string()), ""))
    table = pa.Table.from_arrays(columns, names=batch.schema.names)
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _short_hash(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(path.iterdir()):
            digest.update(child.name.encode())
            digest.update(str(child.stat().st_size).encode())
    else:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:10]
