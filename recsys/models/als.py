"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) via implicit 0.7 on the CPU."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys.models.base import FitContext
from recsys.models.factors import FactorRecommender, fit_implicit


class ALSRecommender(FactorRecommender):
    """Weighted matrix factorisation; confidence = ``alpha`` x the entry of user_items.

    Users added after fitting are folded in from their row (one least-squares
    solve against the item factors), as implicit's ``recalculate_user`` does.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        use_cg: bool = True,
        random_state: int | None = 0,
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        if factors < 1 or iterations < 1:
            raise ValueError("factors and iterations must be >= 1")
        if regularization < 0 or alpha <= 0:
            raise ValueError("regularization must be >= 0 and alpha > 0")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.use_cg = use_cg
        self.random_state = random_state
        self.num_threads = num_threads

    def _implicit_model(self) -> AlternatingLeastSquares:
        # implicit's own threads do the work; BLAS threads on top only contend.
        with threadpool_limits(1, "blas"):
            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                dtype=np.float32,
                use_cg=self.use_cg,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Factorise the users x items confidence matrix."""
        matrix = self._start_fit(user_items)
        self._model = self._implicit_model()
        with threadpool_limits(1, "blas"):
            fit_implicit(self._model, matrix)
        self.user_factors_ = np.asarray(self._model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(self._model.item_factors, dtype=np.float32)
        return self

    def _unknown_user_factors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        with threadpool_limits(1, "blas"):
            return self._model.recalculate_user(userids, user_items)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._model = self._implicit_model()
        self._model.user_factors = self.user_factors_
        self._model.item_factors = self.item_factors_
