"""Item-item nearest neighbours (implicit's Cosine / BM25 / TF-IDF recommenders)."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import (
    BM25Recommender,
    CosineRecommender,
    ItemItemRecommender,
    TFIDFRecommender,
    bm25_weight,
    normalize,
    tfidf_weight,
)

from recsys.models.base import FitContext, Recommender
from recsys.models.sparse_utils import structure_mask

SIMILARITIES = ("cosine", "bm25", "tfidf")


class ItemKNNRecommender(Recommender):
    """Score = the user's row times the item-item similarity matrix (top ``K`` neighbours).

    ``similarity`` picks the weighting of implicit 0.7's models; ``K1`` and ``B``
    are the BM25 parameters. ``similar_items`` returns only true neighbours
    (fewer than ``N`` when ``K`` is small: padded with -1).
    """

    name = "itemknn"

    def __init__(
        self,
        similarity: str = "cosine",
        K: int = 50,
        K1: float = 1.2,
        B: float = 0.75,
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        self.similarity = similarity
        self.K = K
        self.K1 = K1
        self.B = B
        self.num_threads = num_threads

    def _weighted(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """The users x items matrix weighted as implicit's model of that name does."""
        item_users = matrix.T
        if self.similarity == "cosine":
            weighted = normalize(item_users)
        elif self.similarity == "tfidf":
            weighted = normalize(tfidf_weight(item_users))
        else:
            weighted = bm25_weight(item_users, self.K1, self.B)
        return sp.csr_matrix(weighted.T)

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Compute the top-``K`` item-item similarity matrix."""
        matrix = self._start_fit(user_items)
        model_cls = {
            "cosine": CosineRecommender,
            "tfidf": TFIDFRecommender,
            "bm25": BM25Recommender,
        }[self.similarity]
        model = model_cls(K=self.K, num_threads=self.num_threads)
        # Same weighting as model.fit, but handed over as CSR (implicit warns on COO).
        ItemItemRecommender.fit(model, self._weighted(matrix), show_progress=False)
        self.similarity_ = sp.csr_matrix(model.similarity, dtype=np.float32)
        return self

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Sum over the user's items j of weight_j * similarity[j, :]."""
        self._check_fitted()
        return np.asarray((user_items @ self.similarity_).todense(), dtype=np.float32)

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        neighbours = sp.csr_matrix(self.similarity_[itemids])
        dense = np.full(neighbours.shape, -np.inf, dtype=np.float32)
        rows, cols = structure_mask(neighbours)
        dense[rows, cols] = neighbours.data
        return dense

    def _get_state(self) -> dict[str, Any]:
        return {"similarity_": self.similarity_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.similarity_ = sp.csr_matrix(state["similarity_"], dtype=np.float32)
