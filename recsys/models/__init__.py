"""Recommendation models behind one ``Recommender`` interface (internal indices only)."""

from recsys.models.base import FitContext, NotFittedError, Recommender
from recsys.models.registry import MODELS, create_model, load_model

__all__ = ["MODELS", "FitContext", "NotFittedError", "Recommender", "create_model", "load_model"]
