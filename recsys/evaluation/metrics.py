"""Top-k ranking metrics over internal indices, vectorised with numpy.

Inputs
------
``recommended``
    An ``(n_users, K)`` integer array of item indices, best first; ``-1`` pads
    a row that holds fewer than ``K`` items. Columns beyond ``K`` (when a
    cutoff ``k > K`` is asked for) count as padding. An item may appear at most
    once per row.
``relevant``
    A CSR matrix ``(n_users, n_items)`` whose row ``u`` holds the test items of
    the user of row ``u`` of ``recommended``: every stored non-zero is one
    relevant item (binary relevance, whatever the value); an item stored twice
    in a row (a non-canonical CSR) counts once.

Definitions (per user; ``rel_r`` is 1 when the item at rank ``r`` is
relevant, ``hits@k = sum(rel_1..rel_k)``, ``R`` is the number of relevant
items). They follow Microsoft Recommenders' ``python_evaluation`` module
(which follows Spark MLlib's ``RankingMetrics``):

* ``precision@k = hits@k / k`` -- padding counts as a miss, so a user with
  fewer than ``k`` recommendations cannot reach 1 (as in Spark).
* ``recall@k = hits@k / R`` -- not ``min(k, R)``: a user with more than ``k``
  test items cannot reach 1.
* ``ndcg@k = DCG@k / IDCG@k`` with binary gains, ``DCG@k = sum_r rel_r /
  log2(r + 1)`` and the ideal DCG over ``min(k, R)`` hits at the top ranks
  (Recommenders' ``ndcg_at_k`` with ``score_type="binary"``; its default
  natural-log discount gives the same ratio).
* ``map@k = sum_r rel_r * precision@r / min(k, R)`` -- Recommenders'
  ``map_at_k`` (not its ``map``, which divides by ``R``).
* ``hit_rate@k = 1 if hits@k > 0 else 0``.
* ``mrr@k = 1 / (rank of the first relevant item)``, 0 when none is in the
  top ``k``.

A user without any relevant item gets NaN for recall, NDCG and MAP (their
denominators are 0); the evaluation only scores users with test items.
Recommenders averages over the users present in both its inputs; averaging
these per-user arrays over the evaluated users gives the same numbers.

Beyond accuracy, over the whole recommendation table:

* ``catalog_coverage@k`` = distinct items in the top ``k`` of all rows /
  catalog size (``n_items``, the number of item columns). Recommenders
  divides by the items seen in train instead; ours also counts items that
  were never interacted with.
* ``novelty@k`` = mean over every non-padding top-``k`` slot of the item's
  self-information ``-log2(n_i / N)``, where ``n_i`` is the number of stored
  interactions (non-zeros) of item ``i`` in the train matrix and ``N`` the
  total (Recommenders' ``novelty``, Castells et al. 2011, item choice model).
  An item absent from train counts as seen once (``n_i = 1``), the novelty of
  the rarest possible item, rather than infinite.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

#: Names of the per-user accuracy metrics, in display order.
RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def hits_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean ``(n_users, K)``: is ``recommended[u, r]`` a relevant item of row ``u``."""
    recommended = _check_recommended(recommended)
    return _hits(recommended, _check_relevant(relevant, recommended.shape[0]))


def _hits(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Every (row, item) pair becomes one int64 key; look the recommended keys up
    in the sorted relevant keys."""
    n_users, n_items = relevant.shape
    if recommended.size and recommended.max() >= n_items:
        raise ValueError(f"recommended holds item index {recommended.max()} >= n_items {n_items}")
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(relevant.indptr))
    keys = np.sort(rows * n_items + relevant.indices.astype(np.int64))
    if keys.size == 0:
        return np.zeros(recommended.shape, dtype=bool)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + recommended
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return (keys[pos] == query) & (recommended >= 0)


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.csr_matrix, ks: Iterable[int] = (10,)
) -> dict[str, np.ndarray]:
    """Every per-user metric at every cutoff: ``{"ndcg@10": array(n_users), ...}``.

    One membership lookup serves all cutoffs; see the module docstring for
    the definitions.
    """
    ks = _check_ks(ks)
    recommended = _pad_columns(_check_recommended(recommended), max(ks))[:, : max(ks)]
    relevant = _check_relevant(relevant, recommended.shape[0])
    hits = _hits(recommended, relevant).astype(np.float64)
    n_relevant = np.diff(relevant.indptr).astype(np.float64)

    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(hits, axis=1)
    cum_dcg = np.cumsum(hits * discounts, axis=1)
    cum_precision_at_hits = np.cumsum(hits * cum_hits / ranks, axis=1)
    ideal_dcg = np.concatenate([[0.0], np.cumsum(discounts)])
    any_hit = hits.any(axis=1)
    first_rank = np.where(any_hit, hits.argmax(axis=1) + 1, np.iinfo(np.int64).max)

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in ks:
            n_hits = cum_hits[:, k - 1]
            ideal_hits = np.minimum(n_relevant, k)
            no_relevant = n_relevant == 0
            out[f"precision@{k}"] = n_hits / k
            out[f"recall@{k}"] = np.where(no_relevant, np.nan, n_hits / n_relevant)
            idcg = ideal_dcg[ideal_hits.astype(np.int64)]
            out[f"ndcg@{k}"] = np.where(no_relevant, np.nan, cum_dcg[:, k - 1] / idcg)
            ap = cum_precision_at_hits[:, k - 1] / ideal_hits
            out[f"map@{k}"] = np.where(no_relevant, np.nan, ap)
            out[f"hit_rate@{k}"] = (n_hits > 0).astype(np.float64)
            out[f"mrr@{k}"] = np.where(first_rank <= k, 1.0 / first_rank, 0.0)
    return out


def precision_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user ``hits@k / k``."""
    return ranking_metrics(recommended, relevant, (k,))[f"precision@{k}"]


def recall_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user ``hits@k / |relevant|`` (NaN without relevant items)."""
    return ranking_metrics(recommended, relevant, (k,))[f"recall@{k}"]


def ndcg_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user binary NDCG, ideal DCG over ``min(k, |relevant|)`` hits."""
    return ranking_metrics(recommended, relevant, (k,))[f"ndcg@{k}"]


def map_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user average precision: sum of precision at each hit / ``min(k, |relevant|)``."""
    return ranking_metrics(recommended, relevant, (k,))[f"map@{k}"]


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user 1.0 if any relevant item is in the top ``k``, else 0.0."""
    return ranking_metrics(recommended, relevant, (k,))[f"hit_rate@{k}"]


def mrr_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user reciprocal rank of the first relevant item in the top ``k`` (0 if none)."""
    return ranking_metrics(recommended, relevant, (k,))[f"mrr@{k}"]


def catalog_coverage(recommended: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Distinct items in the top ``k`` of all rows / ``n_items`` (``k=None``: all columns)."""
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    top = _check_recommended(recommended)[:, :k]
    items = np.unique(top[top >= 0])
    if items.size and items[-1] >= n_items:
        raise ValueError(f"recommended holds item index {items[-1]} >= n_items {n_items}")
    return items.size / n_items


def item_self_information(train: sp.spmatrix) -> np.ndarray:
    """``-log2(n_i / N)`` per item: ``n_i`` train interactions of item ``i`` (at least 1)."""
    train = sp.csc_matrix(train)
    if train.nnz and not np.all(train.data != 0):
        train = train.copy()  # sp.csc_matrix shares the arrays of a CSC argument
        train.eliminate_zeros()
    counts = np.maximum(np.diff(train.indptr), 1).astype(np.float64)
    total = max(train.nnz, 1)
    return -np.log2(counts / total)


def novelty(recommended: np.ndarray, train: sp.spmatrix, k: int | None = None) -> float:
    """Mean self-information of every non-padding top-``k`` slot (NaN if there is none)."""
    return mean_self_information(recommended, item_self_information(train), k)


def mean_self_information(
    recommended: np.ndarray, self_information: np.ndarray, k: int | None = None
) -> float:
    """:func:`novelty` with the per-item self-information computed once beforehand."""
    top = _check_recommended(recommended)[:, :k]
    items = top[top >= 0]
    if items.size == 0:
        return float("nan")
    if items.max() >= len(self_information):
        raise ValueError(
            f"recommended holds item index {items.max()} >= n_items {len(self_information)}"
        )
    return float(self_information[items].mean())


# ---- validation -----------------------------------------------------------
def _check_recommended(recommended: np.ndarray) -> np.ndarray:
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D (users x ranks), got shape {recommended.shape}")
    if recommended.size == 0:
        return recommended.astype(np.int64)
    if not np.issubdtype(recommended.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got {recommended.dtype}")
    recommended = recommended.astype(np.int64, copy=False)
    if recommended.min() < -1:
        raise ValueError("recommended holds a negative index other than the -1 padding")
    ordered = np.sort(recommended, axis=1)
    if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
        raise ValueError("recommended repeats an item within a row")
    return recommended


def _check_relevant(relevant: sp.spmatrix, n_users: int) -> sp.csr_matrix:
    if not sp.issparse(relevant):
        raise ValueError("relevant must be a scipy sparse matrix (users x items)")
    relevant = sp.csr_matrix(relevant)
    if relevant.shape[0] != n_users:
        raise ValueError(
            f"relevant has {relevant.shape[0]} rows but recommended has {n_users}: "
            "pass only the rows of the evaluated users, in the same order"
        )
    if relevant.nnz and not np.all(relevant.data != 0):
        relevant = relevant.copy()
        relevant.eliminate_zeros()
    if not relevant.has_canonical_format:  # an item stored twice is one relevant item
        relevant = sp.csr_matrix(
            (np.ones(relevant.nnz), relevant.indices[: relevant.nnz], relevant.indptr),
            shape=relevant.shape,
        )
        relevant.sum_duplicates()
    return relevant


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"cutoffs must be positive integers, got {ks}")
    return ks


def _pad_columns(recommended: np.ndarray, width: int) -> np.ndarray:
    missing = width - recommended.shape[1]
    if missing <= 0:
        return recommended
    return np.pad(recommended, ((0, 0), (0, missing)), constant_values=-1)
