"""Compact values: item indices and scores packed as little-endian arrays.

A candidate list of n items is ``n`` uint32 indices followed by ``n``
float16 scores: 6 bytes per candidate (600 bytes for 100), in rank order.
Padding (-1) is dropped before packing.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

CODEC = "u32+f16/v1"
#: Meta field (value ``"all"``) of a snapshot with an offers table for every market of
#: its ``markets``, empty where nothing is in stock; earlier publishes wrote no table
#: for such a market, so there a missing one means an empty market, not a lost key.
MARKET_OFFERS = "market_offers"
_IDS = np.dtype("<u4")


def as_str(value) -> str | None:
    """A Redis reply (bytes or None) as text."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


_SCORES = np.dtype("<f2")
_MAX_ID = np.iinfo(np.uint32).max


def _checked_ids(ids: np.ndarray) -> np.ndarray:
    """``ids`` as uint32; an index beyond that width would wrap around to another item."""
    if ids.size and int(ids.max()) > _MAX_ID:
        raise ValueError(f"item index {int(ids.max())} does not fit the packed uint32 ids")
    return ids.astype(_IDS)


def pack(ids: np.ndarray, scores: np.ndarray) -> bytes:
    """Pack one ranked list; entries with id < 0 (padding) are dropped."""
    ids = np.asarray(ids)
    keep = ids >= 0
    limit = np.finfo(np.float16).max
    kept = np.clip(np.asarray(scores, dtype=np.float32)[keep], -limit, limit)
    return _checked_ids(ids[keep]).tobytes() + kept.astype(_SCORES).tobytes()


def unpack(blob: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``(ids int64, scores float32)`` of a packed list; empty for ``None``."""
    if not blob:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    per_item = _IDS.itemsize + _SCORES.itemsize
    if len(blob) % per_item:
        raise ValueError(f"packed list of {len(blob)} bytes is not a multiple of {per_item}")
    n = len(blob) // per_item
    ids = np.frombuffer(blob, dtype=_IDS, count=n).astype(np.int64)
    scores = np.frombuffer(blob, dtype=_SCORES, count=n, offset=n * _IDS.itemsize)
    return ids, scores.astype(np.float32)


def unpack_lists(blob: bytes | None) -> tuple[list[int], list[float]]:
    """``unpack`` as plain Python lists (ids, scores), without numpy: cheaper for
    the few dozen entries a request reads."""
    if not blob:
        return [], []
    per_item = _IDS.itemsize + _SCORES.itemsize
    if len(blob) % per_item:
        raise ValueError(f"packed list of {len(blob)} bytes is not a multiple of {per_item}")
    n = len(blob) // per_item
    values = struct.unpack(f"<{n}I{n}e", blob)
    return list(values[:n]), list(values[n:])


#: memoryviews read the packed arrays in place where the machine's byte order is theirs.
_NATIVE_LITTLE = sys.byteorder == "little"
_HALF_FLOATS: list[float] | None = None


def packed_views(blob: bytes) -> tuple[memoryview, memoryview] | None:
    """The ids (uint32) and the raw float16 score bits (uint16) of a packed list as
    memoryviews over ``blob`` (nothing decoded until read; decode the scores with
    ``half_floats()``), or None on a big-endian machine (use ``unpack_lists``)."""
    if not _NATIVE_LITTLE:
        return None
    n = len(blob) // (_IDS.itemsize + _SCORES.itemsize)
    if n * (_IDS.itemsize + _SCORES.itemsize) != len(blob):
        raise ValueError(f"packed list of {len(blob)} bytes is not a multiple of 6")
    view = memoryview(blob)
    split = n * _IDS.itemsize
    return view[:split].cast("I"), view[split:].cast("H")


def half_floats() -> list[float]:
    """Every float16 value by its 16 bits, as Python floats (built once, 2 MB)."""
    global _HALF_FLOATS
    if _HALF_FLOATS is None:
        bits = np.arange(1 << 16, dtype=np.uint16)
        _HALF_FLOATS = bits.view(np.float16).astype(np.float64).tolist()
    return _HALF_FLOATS


def pack_rows(ids: np.ndarray, scores: np.ndarray) -> list[bytes]:
    """``pack`` of every row of 2-D ``ids`` / ``scores``, vectorised for trailing padding."""
    ids = np.atleast_2d(np.asarray(ids))
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    valid = ids >= 0
    if valid.shape[1] > 1 and not np.all(valid[:, 1:] <= valid[:, :-1]):
        return [pack(i, s) for i, s in zip(ids, scores, strict=True)]  # padding in between
    n_rows, n = ids.shape
    limit = np.finfo(np.float16).max
    id_bytes = np.ascontiguousarray(_checked_ids(np.maximum(ids, 0))).view(np.uint8)
    score_bytes = np.ascontiguousarray(np.clip(scores, -limit, limit).astype(_SCORES))
    id_bytes = id_bytes.reshape(n_rows, n * _IDS.itemsize)
    score_bytes = score_bytes.view(np.uint8).reshape(n_rows, n * _SCORES.itemsize)
    lengths = valid.sum(axis=1)
    return [
        id_bytes[r, : length * _IDS.itemsize].tobytes()
        + score_bytes[r, : length * _SCORES.itemsize].tobytes()
        for r, length in enumerate(lengths.tolist())
    ]


_PRICES = np.dtype("<f4")


def pack_offers(ids: np.ndarray, prices: np.ndarray) -> bytes:
    """Item indices (uint32) and their prices (float32; NaN = unknown)."""
    return (
        _checked_ids(np.asarray(ids)).tobytes()
        + np.asarray(prices, dtype=np.float32).astype(_PRICES).tobytes()
    )


def unpack_offers(blob: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``(ids int64, prices float32)`` of ``pack_offers``."""
    if not blob:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    n = len(blob) // (_IDS.itemsize + _PRICES.itemsize)
    ids = np.frombuffer(blob, dtype=_IDS, count=n).astype(np.int64)
    return ids, np.frombuffer(blob, dtype=_PRICES, count=n, offset=n * _IDS.itemsize).copy()


def pack_int32(values: np.ndarray) -> bytes:
    """A plain little-endian int32 array."""
    return np.asarray(values).astype("<i4").tobytes()


def unpack_int32(blob: bytes | None) -> np.ndarray:
    """The array of ``pack_int32``."""
    return np.frombuffer(blob or b"", dtype="<i4").astype(np.int64)
