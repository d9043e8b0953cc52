"""Bayesian Personalized Ranking (Rendle et al. 2009) via implicit 0.7 on the CPU."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from recsys.models.base import FitContext
from recsys.models.factors import FactorRecommender, fit_implicit


class BPRRecommender(FactorRecommender):
    """Pairwise-ranking matrix factorisation; entries of user_items are taken as binary.

    implicit stores an item bias as the last item factor and a constant 1 as
    the last user factor; users unknown at fit time get only that 1, so they
    are ranked by the learned item bias.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        verify_negative_samples: bool = True,
        random_state: int | None = 0,
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        if factors < 1 or iterations < 1:
            raise ValueError("factors and iterations must be >= 1")
        if learning_rate <= 0 or regularization < 0:
            raise ValueError("learning_rate must be > 0 and regularization >= 0")
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.random_state = random_state
        self.num_threads = num_threads

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Learn factors by SGD on sampled (user, liked item, other item) triples."""
        matrix = self._start_fit(user_items)
        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            dtype=np.float32,
            iterations=self.iterations,
            num_threads=self.num_threads,
            verify_negative_samples=self.verify_negative_samples,
            random_state=self.random_state,
        )
        fit_implicit(model, matrix)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def _unknown_user_factors(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        vectors = np.zeros((len(userids), self.item_factors_.shape[1]), dtype=np.float32)
        vectors[:, -1] = 1.0
        return vectors

    def _similarity_factors(self) -> np.ndarray:
        return self.item_factors_[:, :-1]  # without the item bias
