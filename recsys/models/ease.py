"""EASE: embarrassingly shallow autoencoder (Steck 2019), closed form; DLAE with dropout."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.models.base import FitContext
from recsys.models.item_item import DenseItemItemRecommender
from recsys.models.sparse_utils import binarize


class EASERecommender(DenseItemItemRecommender):
    """Item-item weights ``B = I - P / diag(P)`` with ``P = (X'X + lambda_ I)^-1``, zero diagonal.

    Memory and time grow with the square / cube of the number of items (a
    float32 Gram matrix: 20,000 items take 1.6 GB); ``max_items`` guards it.
    ``binary=True`` fits on 0/1 interactions, as in the paper.

    With ``dropout`` = p > 0 the model is DLAE (Steck 2020, "Autoencoders that
    don't overfit towards the identity"): the penalty of item j grows to
    ``lambda_ + p / (1 - p) * G_jj`` (popular items are regularised more) and
    ``B = I - P diag(penalty)`` keeps its diagonal.
    """

    name = "ease"
    label = "EASE"

    def __init__(
        self,
        lambda_: float = 300.0,
        binary: bool = True,
        max_items: int = 30_000,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not lambda_ > 0:
            raise ValueError(f"lambda_ must be positive, got {lambda_!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.lambda_ = lambda_
        self.dropout = dropout
        self.binary = binary
        self.max_items = max_items

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Solve for the item-item weight matrix."""
        matrix = self._start_fit(user_items)
        self._check_size()
        if self.binary:
            matrix = binarize(matrix)
        gram = np.asarray((matrix.T @ matrix).todense(), dtype=np.float32)
        penalty = np.float32(self.lambda_) + np.float32(
            self.dropout / (1.0 - self.dropout)
        ) * np.diag(gram)
        gram[np.diag_indices_from(gram)] += penalty
        inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        if self.dropout > 0:
            weights = -inverse * penalty[None, :]
            weights[np.diag_indices_from(weights)] += 1.0
        else:
            weights = inverse / (-np.diag(inverse))[None, :]
            weights[np.diag_indices_from(weights)] = 0.0
        self.weights_ = weights.astype(np.float32, copy=False)
        return self

    def _rows(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        return binarize(user_items) if self.binary else user_items
