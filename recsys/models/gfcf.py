"""GF-CF: a closed-form graph filter for collaborative filtering (Shen et al. 2021).

Shen, Wu, Zhang, Lei, Cao, Zhu, Jia and Xu, "How Powerful is Graph
Convolution for Recommendation?", CIKM 2021. The paper shows that a linear
filter over the normalised item-item graph plus an ideal low-pass filter,
both in closed form, match trained graph convolution networks. With the
binary users x items matrix ``R``, user degrees ``D_U`` and item degrees
``D_I``:

- normalised matrix ``R~ = D_U^-a R D_I^-b`` (the paper: a = b = 1/2);
- linear filter: the normalised item-item Gram matrix ``P~ = R~' R~``;
- ideal low-pass filter: ``D_I^-b V V' D_I^b``, with ``V`` the top
  ``factors`` right singular vectors of ``R~`` (the top eigenvectors of ``P~``);
- a user's scores: ``r (P~ + alpha D_I^-b V V' D_I^b)``.

The maths is written here from the paper's description. The sum of the two
filters is one dense item-item matrix, so scoring is a row times a matrix,
as for EASE.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.models.base import FitContext
from recsys.models.item_item import DenseItemItemRecommender
from recsys.models.sparse_utils import binarize


def _inverse_power(degrees: np.ndarray, exponent: float) -> np.ndarray:
    """``degrees ** -exponent``, with 1 for a degree of zero (its rows are empty anyway)."""
    safe = np.where(degrees > 0, degrees, 1.0)
    return safe**-exponent


class GFCFRecommender(DenseItemItemRecommender):
    """Item-item filter ``P~ + alpha D_I^-b V V' D_I^b`` of GF-CF on the binary matrix.

    ``user_exponent`` (a) and ``item_exponent`` (b) normalise the matrix,
    ``factors`` is the number of singular vectors of the ideal low-pass
    filter and ``alpha`` its weight (0: the linear filter alone). Memory and
    time grow with the square / cube of the number of items; ``max_items``
    guards it as in EASE.
    """

    name = "gfcf"
    label = "GF-CF"

    def __init__(
        self,
        alpha: float = 1.0,
        factors: int = 32,
        user_exponent: float = 0.5,
        item_exponent: float = 0.5,
        max_items: int = 30_000,
    ):
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if int(factors) != factors or factors < 1:
            raise ValueError(f"factors must be a positive integer, got {factors!r}")
        for label, value in (("user_exponent", user_exponent), ("item_exponent", item_exponent)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be in [0, 1], got {value!r}")
        self.alpha = alpha
        self.factors = int(factors)
        self.user_exponent = user_exponent
        self.item_exponent = item_exponent
        self.max_items = max_items

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Build the normalised Gram matrix and its low-pass part."""
        matrix = self._start_fit(user_items)
        self._check_size()
        matrix = binarize(matrix).astype(np.float64)
        user_degree = np.asarray(matrix.sum(axis=1)).ravel()
        item_degree = np.asarray(matrix.sum(axis=0)).ravel()
        item_scale = _inverse_power(item_degree, self.item_exponent)
        normalised = sp.diags(_inverse_power(user_degree, self.user_exponent)) @ matrix
        normalised = sp.csr_matrix(normalised @ sp.diags(item_scale))
        gram = np.asarray((normalised.T @ normalised).todense(), dtype=np.float64)
        weights = gram  # not needed afterwards: the low-pass part is added in place
        if self.alpha > 0:
            # The top eigenvectors of R~'R~ are the top right singular vectors of R~.
            n = self.n_items_
            k = min(self.factors, n)
            _, vectors = scipy.linalg.eigh(gram, subset_by_index=[n - k, n - 1])
            left = vectors * item_scale[:, None]  # D_I^-b V
            right = vectors / item_scale[:, None]  # D_I^b V
            weights += self.alpha * (left @ right.T)
        self.weights_ = weights.astype(np.float32)
        return self
