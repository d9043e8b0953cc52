"""An append-only map between external string ids and internal int32 indices.

Models see only indices (rows and columns of the interaction matrix); external
ids are strings at the edges. Like LightFM's ``Dataset`` mapping, a map only
grows: an id keeps its index forever, so a matrix or model built with an older
map stays valid for the first ``len(old)`` indices of a newer one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: The column that holds the ids in the Arrow / Parquet form; row i is index i.
ID_COLUMN = "id"

_MAX_SIZE = np.iinfo(np.int32).max


class IdMap:
    """External string id <-> internal ``int32`` index, append-only.

    New ids are appended in first-seen order; existing ids keep their index
    and are never reordered or removed. Lookups are vectorised (a hashed
    ``pandas.Index``), so maps of millions of ids are cheap to use.
    """

    def __init__(self, ids: Iterable[str] = ()):
        self._index = pd.Index([], dtype=object)
        self.extend(ids)

    # ---- growing ---------------------------------------------------------
    def extend(self, ids: Iterable[str]) -> IdMap:
        """Append the ids not yet known, in first-seen order; returns ``self``.

        Raises ``ValueError`` for a null id and ``TypeError`` for a non-string.
        """
        self.index(ids, add=True)
        return self

    def index(self, ids: Iterable[str], missing: int = -1, add: bool = False) -> np.ndarray:
        """The ``int32`` index of every id (``missing`` for unknown or null ids).

        With ``add=True`` unknown ids are first appended to the map (as
        ``extend`` does), so every id gets an index; null ids then raise.
        """
        codes, uniques = pd.factorize(_as_array(ids), sort=False)
        if add:
            if len(codes) and codes.min() < 0:
                raise ValueError("ids must not be null")
            uniques = _strings(uniques)
            positions = self._index.get_indexer(uniques)
            new = positions < 0
            if new.any():
                start = len(self._index)
                self._append(uniques[new])
                positions[new] = np.arange(start, len(self._index))
        else:
            if not np.iinfo(np.int32).min <= missing <= _MAX_SIZE:
                raise ValueError(f"missing={missing} does not fit in int32")
            positions = self._index.get_indexer(uniques)
            positions[positions < 0] = missing
        if not len(codes):
            return np.empty(0, dtype=np.int32)
        positions = positions.astype(np.int32, copy=False)
        out = positions[np.maximum(codes, 0)]
        out[codes < 0] = missing
        return out

    def _append(self, new_ids: np.ndarray) -> None:
        if len(self._index) + len(new_ids) > _MAX_SIZE:
            raise ValueError("an IdMap holds at most 2**31 - 1 ids")
        # A new Index object: copies taken before (see ``copy``) stay unchanged.
        self._index = self._index.append(pd.Index(new_ids, dtype=object))

    # ---- reading ---------------------------------------------------------
    def ids(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """The external ids at ``indices`` (all ids, in index order, if None).

        Raises ``IndexError`` for an index outside ``0 .. len(self) - 1``
        (including the ``-1`` that ``index`` returns for unknown ids).
        """
        values = self._index.to_numpy()
        if indices is None:
            return values.copy()
        positions = np.asarray(indices)
        if positions.dtype.kind not in "iu":
            if positions.size:
                raise TypeError(f"indices must be integers, not {positions.dtype}")
            positions = positions.astype(np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= len(values)):
            raise IndexError(f"indices must be in 0..{len(values) - 1}")
        return values[positions]

    def copy(self) -> IdMap:
        """An independent map with the same ids (cheap: storage is shared until extended)."""
        clone = IdMap()
        clone._index = self._index
        return clone

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        try:
            return external_id in self._index
        except TypeError:  # unhashable
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdMap):
            return NotImplemented
        return len(self) == len(other) and bool(self._index.equals(other._index))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._index[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"IdMap(n={len(self)}: [{head}{more}])"

    # ---- persistence -----------------------------------------------------
    def to_arrow(self) -> pa.Table:
        """The map as a one-column Arrow table; row ``i`` holds the id of index ``i``."""
        return pa.table({ID_COLUMN: pa.array(self._index.to_numpy(), type=pa.string())})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> IdMap:
        """The map stored by ``to_arrow``; raises ``ValueError`` if it is not a valid map."""
        if ID_COLUMN not in table.column_names:
            raise ValueError(f"an IdMap table needs the column {ID_COLUMN!r}")
        column = table.column(ID_COLUMN)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise ValueError(f"IdMap ids must be strings, got {column.type}")
        if column.null_count:
            raise ValueError("an IdMap table must not hold null ids")
        index = pd.Index(column.to_numpy(zero_copy_only=False), dtype=object)
        if not index.is_unique:
            raise ValueError("an IdMap table must not hold duplicate ids")
        clone = cls()
        clone._index = index
        return clone

    def save(self, path: str | os.PathLike) -> None:
        """Write the map to a Parquet file (atomically: a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(self.to_arrow(), tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> IdMap:
        """Read a map written by ``save``."""
        return cls.from_arrow(pq.read_table(path, columns=[ID_COLUMN]))


def _as_array(ids: Iterable[str]):
    """``ids`` as something ``pd.factorize`` takes, without copying big columns."""
    if isinstance(ids, str | bytes):
        raise TypeError("ids must be a collection of ids, not a single string")
    if isinstance(ids, pa.Array | pa.ChunkedArray):
        return pd.Series(ids.to_pandas(), copy=False)
    if isinstance(ids, pd.Series | pd.Index | np.ndarray | pd.api.extensions.ExtensionArray):
        return ids
    return np.asarray(list(ids), dtype=object)


def _strings(uniques) -> np.ndarray:
    """``uniques`` (non-null) as an object array, or ``TypeError`` if any is not a str."""
    values = np.asarray(uniques, dtype=object)
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if len(values) and kind != "string":
        raise TypeError(f"ids must be strings, got {kind} values")
    return values
