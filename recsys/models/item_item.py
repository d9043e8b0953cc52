"""Base of the closed-form models that fit one dense item-item matrix (EASE, GF-CF)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.models.base import Recommender
from recsys.models.sparse_utils import binarize


class DenseItemItemRecommender(Recommender):
    """Scores are a user's (binary) row times ``weights_``, an items x items matrix.

    Memory and time grow with the square / cube of the number of items;
    ``max_items`` guards the fit (``_check_size``).
    """

    #: How errors name the model.
    label = "this model"
    max_items: int

    def _check_size(self) -> None:
        if self.n_items_ > self.max_items:
            raise ValueError(
                f"{self.label} needs a dense {self.n_items_}^2 matrix; raise max_items "
                f"(now {self.max_items}) if the memory is there"
            )

    def _rows(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        return binarize(user_items)

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """The user's row times the item-item weights."""
        self._check_fitted()
        return np.asarray(self._rows(user_items) @ self.weights_, dtype=np.float32)

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        return self.weights_[itemids]

    def _get_state(self) -> dict[str, Any]:
        return {"weights_": self.weights_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.weights_ = np.asarray(state["weights_"], dtype=np.float32)
