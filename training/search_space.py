"""What ``recsys tune`` searches: per model, the hyper-parameters and the interaction settings.

Every space maps a ``--set`` style key (dotted for nested values) to a
sampler ``rng -> value``; ``sample`` draws one point as the nested ``sets``
dict that ``training.params.resolve`` takes. Floats drawn on a log scale are
rounded to three significant digits so that runs stay readable. Every space
holds the defaults of ``training.params`` (a test checks it): a search is
then never confined to a region away from the settings known to work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from training import params as hp

Sampler = Callable[[np.random.Generator], Any]  # choice, log_uniform


class choice:  # noqa: N801 (reads as the sampler it makes: choice(16, 32))
    """A sampler: one of ``values``, uniformly."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def __call__(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def covers(self, value: Any) -> bool:
        """Whether ``value`` can be drawn."""
        return value in self.values


class log_uniform:  # noqa: N801
    """A sampler: a float between ``low`` and ``high``, uniform on a log scale."""

    def __init__(self, low: float, high: float) -> None:
        if not 0 < low < high:
            raise ValueError(f"log_uniform needs 0 < low < high, got {low}, {high}")
        self.low, self.high = low, high

    def __call__(self, rng: np.random.Generator) -> float:
        return _round(float(np.exp(rng.uniform(np.log(self.low), np.log(self.high)))))

    def covers(self, value: Any) -> bool:
        """Whether ``value`` lies in the range drawn from."""
        return isinstance(value, int | float) and self.low <= value <= self.high


#: Model hyper-parameters searched per model.
MODEL_SPACES: dict[str, dict[str, Sampler]] = {
    "als": {  # the defaults: alpha 0.1 (temporal), 200 factors and reg 10 (stratified)
        "factors": choice(16, 32, 64, 100, 128, 200),
        "regularization": log_uniform(1e-3, 30.0),
        "alpha": log_uniform(0.05, 50.0),
        "iterations": choice(10, 15, 25),
    },
    "bpr": {
        "factors": choice(16, 32, 64, 128),
        "learning_rate": log_uniform(1e-3, 0.1),
        "regularization": log_uniform(1e-4, 0.1),
        "iterations": choice(50, 100, 200),
    },
    "itemknn": {
        "K": choice(10, 20, 50, 100, 200),
        "similarity": choice("cosine", "tfidf", "bm25"),
    },
    "ease": {"lambda_": log_uniform(10.0, 5000.0)},
    "gfcf": {
        "alpha": log_uniform(0.1, 20.0),
        "factors": choice(16, 24, 32, 48, 64),
        "user_exponent": choice(0.25, 0.5),
    },
    "lightfm": {
        "no_components": choice(16, 32, 48, 64),
        "epochs": choice(10, 20, 30, 50),
        "learning_rate": log_uniform(0.01, 0.1),
        "loss": choice("warp", "bpr", "warp-kos"),
    },
    "popular": {
        "by": choice("global", "country"),
        "count": choice("users", "weight"),
        "half_life_days": choice(None, 14.0, 30.0, 90.0),
    },
    "buy-again": {"half_life_days": choice(None, 14.0, 30.0, 60.0, 120.0, 180.0)},
    "ranker": {
        "n_windows": choice(2, 3, 4),
        "n_neighbours": choice(50, 100, 200),
        "n_trending": choice(20, 50, 100),
        "trend_half_life_days": choice(3.0, 7.0, 14.0),
        "ease_lambda": log_uniform(50.0, 1000.0),
        "learning_rate": log_uniform(0.02, 0.2),
        "max_leaf_nodes": choice(15, 31, 63),
    },
}

#: Interaction settings searched for every model, per protocol. A temporal
#: refund always weighs minus a purchase (a refunded purchase nets out).
DATA_SPACES: dict[str, dict[str, Sampler]] = {
    "temporal": {
        "weights.view": choice(0.5, 1.0, 2.0),
        "weights.add_to_cart": choice(1.0, 3.0, 5.0),
        "weights.purchase": choice(5.0, 10.0, 20.0),
        "half_life_days": choice(None, 15.0, 30.0, 60.0, 120.0),
        "use_quantity": choice(False, True),
    },
    # Ratings: one event type (its weight only scales) and quantity 1, so the
    # rating value and the decay are what can matter.
    "stratified": {
        "half_life_days": choice(None, 30.0, 180.0, 720.0),
        "use_rating_value": choice(False, True),
    },
}


def sample(model: str, protocol: str, rng: np.random.Generator) -> dict[str, Any]:
    """One random point of ``model``'s space under ``protocol``, as nested ``sets``."""
    if model == "blend":
        sets = _blend_weights(protocol, rng)
    elif model in MODEL_SPACES:
        sets = _nested({key: draw(rng) for key, draw in MODEL_SPACES[model].items()})
    else:
        raise hp.ParamError(f"no search space for model {model!r}")
    data = _nested({key: draw(rng) for key, draw in DATA_SPACES[protocol].items()})
    if "purchase" in data.get("weights", {}):
        data["weights"]["refund"] = -data["weights"]["purchase"]
    return {**sets, "data": data}


def _blend_weights(protocol: str, rng: np.random.Generator) -> dict[str, Any]:
    """Dirichlet weights over the default parts of the protocol's blend."""
    parts = sorted(hp.defaults_for("blend", protocol)["parts"])
    weights = rng.dirichlet(np.ones(len(parts)))
    return {"parts": {name: round(float(w), 3) for name, w in zip(parts, weights, strict=True)}}


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _round(value: float, digits: int = 3) -> float:
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))
