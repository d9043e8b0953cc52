"""Top-N selection from dense score blocks, with filtering and padding."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def ranking_keys(scores: np.ndarray) -> np.ndarray:
    """int64 keys ordering each row by (score descending, column ascending), all distinct.

    The float32 score is mapped to an int32 with the same order (sign-magnitude
    to two's complement) in the high 32 bits; the low bits hold the inverted column.
    """
    values = np.asarray(scores, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    bits = values.view(np.int32)
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # negative floats: flip all but the sign
    keys = bits.astype(np.int64)
    keys <<= 32
    keys += np.int64(0xFFFFFFFF) - np.arange(scores.shape[-1], dtype=np.int64)
    return keys


def top_n(
    scores: np.ndarray,
    n: int,
    *,
    exclude: np.ndarray | None = None,
    exclude_per_row: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` columns of each row of ``scores``, best first.

    ``exclude`` is a boolean mask over columns removed for every row;
    ``exclude_per_row`` a sparse matrix whose stored entries are removed from
    their row. Ties go to the smaller column index. Rows with fewer than ``n``
    eligible columns are padded with id -1 and score -inf. Returns (ids int32,
    scores float32), both of shape (rows, n). ``scores`` is modified in place.
    """
    if n < 0:
        raise ValueError(f"N must be >= 0, got {n}")
    n_rows, n_cols = scores.shape
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        scores[:, exclude] = -np.inf
    if exclude_per_row is not None:
        rows = np.repeat(np.arange(n_rows), np.diff(exclude_per_row.indptr))
        scores[rows, exclude_per_row.indices] = -np.inf

    ids = np.full((n_rows, n), -1, dtype=np.int32)
    best = np.full((n_rows, n), -np.inf, dtype=np.float32)
    k = min(n, n_cols)
    if k == 0 or n_rows == 0:
        return ids, best
    if k < n_cols:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # Rows where the k-th score is shared with a column left out: redo them
        # with exact keys so that the smaller column wins the tie.
        kth = np.take_along_axis(scores, candidates, axis=1).min(axis=1)
        tied = np.flatnonzero((kth > -np.inf) & ((scores >= kth[:, None]).sum(axis=1) > k))
        if len(tied):
            keys = ranking_keys(scores[tied])
            candidates[tied] = np.argpartition(keys, n_cols - k, axis=1)[:, n_cols - k :]
    else:
        candidates = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -candidate_scores), axis=-1)
    ids[:, :k] = np.take_along_axis(candidates, order, axis=1)
    best[:, :k] = np.take_along_axis(candidate_scores, order, axis=1)
    ids[best == -np.inf] = -1
    return ids, best
