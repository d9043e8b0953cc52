"""Shared scoring for matrix-factorisation models (user x item dot products)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.models.base import Recommender


def fit_implicit(model, matrix: sp.csr_matrix) -> None:
    """``model.fit`` of an implicit model; NaN factors (a diverged fit: too large a
    learning rate or confidence) are a ``ValueError`` like any unusable parameter."""
    from implicit.recommender_base import ModelFitError

    try:
        model.fit(matrix, show_progress=False)
    except ModelFitError as exc:
        raise ValueError(f"the fit diverged ({exc}); try smaller steps or weights") from None


class FactorRecommender(Recommender):
    """A model whose scores are ``user_factors_[u] @ item_factors_.T``.

    Subclasses set ``user_factors_`` / ``item_factors_`` in ``fit`` and say how
    to represent users unknown at fit time in ``_unknown_user_factors``.
    """

    def _unknown_user_factors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.zeros((len(userids), self.item_factors_.shape[1]), dtype=np.float32)

    def user_vectors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Factors of ``userids``; users beyond the fitted ones come from their rows."""
        userids = np.asarray(userids, dtype=np.int64)
        known = userids < self.n_users_
        vectors = np.empty((len(userids), self.item_factors_.shape[1]), dtype=np.float32)
        vectors[known] = self.user_factors_[userids[known]]
        if not known.all():
            unknown = np.flatnonzero(~known)
            vectors[unknown] = self._unknown_user_factors(
                userids[unknown], sp.csr_matrix(user_items[unknown])
            )
        return vectors

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dot products of user and item factors."""
        self._check_fitted()
        return (self.user_vectors(userids, user_items) @ self.item_factors_.T).astype(np.float32)

    def _similarity_factors(self) -> np.ndarray:
        """Item factors compared by ``similar_items``."""
        return self.item_factors_

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        """Cosine similarity of item factors."""
        factors = self._similarity_factors()
        norms = np.linalg.norm(factors, axis=1)
        norms[norms == 0] = 1e-10
        cosine = (factors[itemids] @ factors.T) / norms[None, :]
        return (cosine / norms[itemids, None]).astype(np.float32)

    def _get_state(self) -> dict[str, Any]:
        return {"user_factors_": self.user_factors_, "item_factors_": self.item_factors_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.user_factors_ = np.asarray(state["user_factors_"], dtype=np.float32)
        self.item_factors_ = np.asarray(state["item_factors_"], dtype=np.float32)
