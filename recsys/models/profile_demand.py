"""Profile embeddings fitted to recent demand, over a model's item representations.

A user with no history is known only by a profile (side features such as
country and language). :func:`fit_profile_demand` learns one embedding per
side feature so that, for every distinct profile of the known users, the
softmax over items of ``(profile @ E) @ W.T + bias`` matches what users of
that profile took recently (recency-weighted events): a multinomial
likelihood, each profile weighted by its share of the demand, with an L2
penalty on ``E``. ``W`` (items x dims: dense vectors, then sparse features)
and ``bias`` are the item side of an already fitted model: e.g. LightFM's
item vectors, its item biases as one more column (so that each profile also
learns how much popularity counts for it) and the items' raw side features
(so that it learns how much each category counts for it now); items without
demand still get scores through ``W``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import logsumexp

#: Profiles x items scored at once while fitting (bounds the dense blocks).
_BLOCK_CELLS = 1 << 22


def distinct_profiles(side: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """(the distinct non-empty rows of ``side``, each row's profile index or -1 if empty)."""
    side = sp.csr_matrix(side, dtype=np.float32)
    side.sort_indices()
    index: dict[bytes, int] = {}
    first: list[int] = []
    profile_of = np.full(side.shape[0], -1, dtype=np.int64)
    for row, (start, end) in enumerate(zip(side.indptr[:-1], side.indptr[1:], strict=True)):
        if start == end:
            continue
        key = side.indices[start:end].tobytes() + side.data[start:end].tobytes()
        if key not in index:
            index[key] = len(first)
            first.append(row)
        profile_of[row] = index[key]
    return sp.csr_matrix(side[first]), profile_of


def profile_scores(
    projected: np.ndarray,
    item_matrix: np.ndarray,
    item_bias: np.ndarray,
    item_features: sp.spmatrix | None = None,
) -> np.ndarray:
    """Scores (profiles x items) of profile embeddings ``projected`` (``profile @ E``)
    over the item side ``[item_matrix | item_features]`` plus ``item_bias``."""
    n_dense = item_matrix.shape[1]
    scores = projected[:, :n_dense] @ item_matrix.T + item_bias[None, :]
    if item_features is not None:
        scores += np.asarray(item_features @ projected[:, n_dense:].T).T
    return scores


def fit_profile_demand(
    profiles: sp.csr_matrix,
    demand: sp.csr_matrix,
    item_matrix: np.ndarray,
    item_bias: np.ndarray,
    item_features: sp.spmatrix | None = None,
    l2: float = 1e-4,
    max_iter: int = 2000,
) -> np.ndarray:
    """Feature embeddings ``E`` (features x dims) fitted to ``demand`` (profiles x items,
    non-negative weights) over the item side ``[item_matrix | item_features]``
    (items x dims: dense vectors, then optional sparse item features) and ``item_bias``.

    Profiles without demand are left out; with no demand at all ``E`` is zero (the
    scores are then the item biases). Warns when L-BFGS stops before converging.
    """
    profiles = sp.csr_matrix(profiles, dtype=np.float64)
    demand = sp.csr_matrix(demand, dtype=np.float64)
    dense = np.asarray(item_matrix, dtype=np.float64)
    if demand.shape[0] != profiles.shape[0] or demand.shape[1] != dense.shape[0]:
        raise ValueError(
            f"demand is {demand.shape}, for {profiles.shape[0]} profiles and {dense.shape[0]} items"
        )
    sparse = None
    if item_features is not None and item_features.shape[1]:
        sparse = sp.csr_matrix(item_features, dtype=np.float64)
        if sparse.shape[0] != dense.shape[0]:
            raise ValueError(f"item_features has {sparse.shape[0]} rows for {dense.shape[0]} items")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    n_features, n_dense = profiles.shape[1], dense.shape[1]
    dims = n_dense + (sparse.shape[1] if sparse is not None else 0)
    mass = np.asarray(demand.sum(axis=1)).ravel()
    keep = np.flatnonzero(mass > 0)
    if not len(keep) or not n_features:
        return np.zeros((n_features, dims), dtype=np.float32)
    x = profiles[keep]
    shares = sp.csr_matrix(sp.diags(1.0 / mass[keep]) @ demand[keep])
    weight = mass[keep] / mass[keep].sum()
    bias = np.asarray(item_bias, dtype=np.float64)
    rows_per_block = max(1, _BLOCK_CELLS // max(dense.shape[0], 1))

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        embeddings = flat.reshape(n_features, dims)
        projected = np.asarray(x @ embeddings)  # profiles x dims
        value = l2 * float(flat @ flat)
        grad_projected = np.empty_like(projected)
        for start in range(0, len(keep), rows_per_block):
            block = slice(start, start + rows_per_block)
            scores = profile_scores(projected[block], dense, bias, sparse)
            lse = logsumexp(scores, axis=1)
            target = shares[block]
            taken = np.asarray(target.multiply(scores).sum(axis=1)).ravel()
            value += float(weight[block] @ (lse - taken))
            prob = np.exp(scores - lse[:, None])
            residual = (prob - target.toarray()) * weight[block, None]
            grad_projected[block, :n_dense] = residual @ dense
            if sparse is not None:
                grad_projected[block, n_dense:] = np.asarray(sparse.T @ residual.T).T
        grad = np.asarray(x.T @ grad_projected) + 2 * l2 * embeddings
        return value, grad.ravel()

    result = minimize(
        objective,
        np.zeros(n_features * dims),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter},
    )
    if not result.success:
        warnings.warn(
            f"profile demand fit stopped before converging: {result.message}",
            RuntimeWarning,
            stacklevel=2,
        )
    return result.x.reshape(n_features, dims).astype(np.float32)
