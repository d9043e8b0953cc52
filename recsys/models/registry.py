"""Model names -> classes, and the factory used by training jobs."""

from __future__ import annotations

import os
from typing import Any

from recsys.models.als import ALSRecommender
from recsys.models.base import Recommender
from recsys.models.blend import BlendRecommender
from recsys.models.bpr import BPRRecommender
from recsys.models.buy_again import BuyAgainRecommender
from recsys.models.ease import EASERecommender
from recsys.models.gfcf import GFCFRecommender
from recsys.models.itemknn import ItemKNNRecommender
from recsys.models.lightfm_hybrid import LightFMRecommender
from recsys.models.popular import PopularRecommender
from recsys.models.ranker import RankerRecommender

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        PopularRecommender,
        BuyAgainRecommender,
        ItemKNNRecommender,
        ALSRecommender,
        BPRRecommender,
        LightFMRecommender,
        EASERecommender,
        GFCFRecommender,
        BlendRecommender,
        RankerRecommender,
    )
}


def create_model(name: str, **params: Any) -> Recommender:
    """A new, unfitted model of the registered ``name`` with the given hyper-parameters."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**params)


def load_model(path: str | os.PathLike) -> Recommender:
    """Load any model written by ``Recommender.save``."""
    return Recommender.load(path)
