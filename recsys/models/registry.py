"""Model names -> classes, and the factory used by training jobs."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import types
import typing
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
    check_param_names(MODELS[name], params)
    check_param_types(MODELS[name], params)
    return MODELS[name](**params)


def check_param_names(cls: type, params: dict[str, Any]) -> None:
    """A ``ValueError`` naming the parameters ``cls.__init__`` does not take (a typo
    in ``--set``), with the ones it does take."""
    signature = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in signature):
        return
    known = [p.name for p in signature if p.name != "self"]
    unknown = [key for key in params if key not in known]
    if unknown:
        raise ValueError(
            f"unknown parameter {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )


def check_param_types(cls: type, params: dict[str, Any]) -> None:
    """A ``ValueError`` naming the first hyper-parameter whose value does not fit the
    type ``cls.__init__`` declares for it (``factors=1.5`` for an int, ``"a"`` for a
    float, ``5`` for a mapping, NaN or infinity for a float), before the model or its
    library trips over it."""
    hints = typing.get_type_hints(cls.__init__)
    for key, value in params.items():
        hint = hints.get(key)
        if hint is None:
            continue  # unknown names: check_param_names says so
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        allowed = typing.get_args(hint) if union else (hint,)
        if float in allowed and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}={value!r}: not a finite number")
        if not any(_fits(value, kind) for kind in allowed):
            names = " or ".join(_type_name(kind) for kind in allowed)
            raise ValueError(f"{key}={value!r}: expected {names}")


def _fits(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool | numbers.Integral) and value in (0, 1)
    if isinstance(value, bool):
        return False  # True is an int to Python, never a count or a rate here
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    if kind is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    return True  # anything else is the constructor's to check


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "nothing (null)"
    origin = typing.get_origin(kind) or kind
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
        origin, str(kind)
    )


def load_model(path: str | os.PathLike) -> Recommender:
    """Load any model written by ``Recommender.save``."""
    return Recommender.load(path)
