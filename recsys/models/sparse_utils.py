"""Small helpers on users x items CSR matrices shared by the models."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def as_user_items(matrix, *, name: str = "user_items") -> sp.csr_matrix:
    """Return ``matrix`` as a canonical float32 CSR matrix (sorted, duplicates summed).

    Raises ``ValueError`` when a stored value is NaN or infinite (also after the
    cast to float32): models would fit and rank on it without a word.
    """
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(matrix).__name__}")
    if matrix.ndim == 1:  # one row of a sparse array, e.g. csr_array[u]
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise TypeError(f"{name} must be 2-D, got {matrix.ndim} dimensions")
    if matrix.format == "csr" and matrix.dtype == np.float32 and matrix.has_canonical_format:
        csr = sp.csr_matrix(matrix)
    else:
        csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        csr.sum_duplicates()
        csr.sort_indices()
    if not np.isfinite(csr.data).all():
        bad = int((~np.isfinite(csr.data)).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite values (as float32)")
    return csr


def align_items(matrix: sp.csr_matrix, n_items: int) -> sp.csr_matrix:
    """Cut or pad the columns of ``matrix`` to ``n_items``.

    Items appended to the id map after fitting are unknown to the model: their
    columns are dropped; a narrower matrix is padded with empty columns.
    """
    if matrix.shape[1] == n_items:
        return matrix
    if matrix.shape[1] > n_items:
        return sp.csr_matrix(matrix[:, :n_items])
    padded = matrix.copy()
    padded.resize((matrix.shape[0], n_items))
    return padded


def binarize(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """1.0 where the entry is positive, nothing elsewhere."""
    positive = matrix.multiply(matrix > 0)
    out = sp.csr_matrix(positive, dtype=np.float32)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def users_per_item(matrix: sp.csr_matrix) -> np.ndarray:
    """Number of users with a positive entry for each item (float64)."""
    positive = matrix.indices[matrix.data > 0]
    return np.bincount(positive, minlength=matrix.shape[1]).astype(np.float64)


def rows_or_empty(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows]`` where rows beyond the matrix (users unknown at fit) are empty."""
    rows = np.asarray(rows, dtype=np.int64)
    known = rows < matrix.shape[0]
    picked = sp.csr_matrix(matrix[np.where(known, rows, 0)])
    if not known.all():
        picked = sp.csr_matrix(sp.diags(known.astype(matrix.dtype)) @ picked)
        picked.eliminate_zeros()
    return picked


def dense_rows(matrix: sp.csr_matrix) -> np.ndarray:
    """A CSR matrix as a dense float32 array."""
    return matrix.toarray().astype(np.float32, copy=False)


def structure_mask(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the stored entries of a CSR matrix."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return rows, matrix.indices
