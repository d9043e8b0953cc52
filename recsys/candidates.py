"""Ranked candidates for many users at once, with per-user exclusions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def recommend_excluding(
    model, userids: np.ndarray, rows: sp.csr_matrix, excluded: sp.csr_matrix, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` of the model's unfiltered ranking after removing each user's ``excluded`` items.

    ``rows`` and ``excluded`` hold one row per user of ``userids``; the model
    scores from ``rows`` (e.g. views and purchases) while only ``excluded``
    (e.g. purchases) leaves the list. Rows are padded with -1 / -inf.
    """
    extra = int(np.diff(excluded.indptr).max(initial=0))
    ids, scores = model.recommend(userids, rows, N=n + extra, filter_already_liked_items=False)
    ids, scores = np.atleast_2d(np.asarray(ids)), np.atleast_2d(np.asarray(scores))
    keep = ids >= 0
    if excluded.nnz:
        lookup = np.asarray(
            excluded[np.arange(len(userids))[:, None], np.maximum(ids, 0)].todense()
        )
        keep &= lookup == 0
    out_ids = np.full((len(userids), n), -1, dtype=np.int64)
    out_scores = np.full((len(userids), n), -np.inf, dtype=np.float32)
    for row in range(len(userids)):  # one batch of users; cheap next to the scoring
        kept = np.flatnonzero(keep[row])[:n]
        out_ids[row, : len(kept)] = ids[row, kept]
        out_scores[row, : len(kept)] = scores[row, kept]
    return out_ids, out_scores
