"""Hyper-parameters from ``--set key=value``, with defaults per model and protocol.

Keys address the model's ``__init__`` parameters (``factors=128``); keys
starting with ``data.`` address the interaction matrix
(``data.half_life_days=60``, ``data.weights.view=0.5``); dotted keys build
nested values (``parts.buy-again=0.6``). For a blend, a key named after a
part model goes to that part (``als.factors=128``). Values are JSON when they
parse as JSON (numbers, true/false, null, lists, objects), else strings.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from recsys.interactions import InteractionConfig
from recsys.models.registry import MODELS, check_param_types
from recsys.protocols import default_interaction_config

#: Event weights of ``default_interaction_config`` divided by 10: one per purchase.
_UNIT_WEIGHTS = {"view": 0.1, "add_to_cart": 0.3, "purchase": 1.0, "refund": -1.0}

#: Sound defaults where the library's own differ for a shop's data. Keys:
#: (model, protocol); "*" matches any protocol. The temporal entries were
#: chosen on a validation split that ends before the test (Online Retail
#: cut-off 2011-10-10). The stratified ``gfcf`` and ``blend`` entries were
#: chosen on re-splits of the seed-42 train part (seeds 1-3); the older
#: stratified entries on re-splits of the whole data (seeds 1-3), which
#: overlap the test. See docs/benchmarks.md (Quality).
DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("als", "*"): {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15},
    # alpha 0.1 on purchase weight 10: confidence = purchase count.
    ("als", "temporal"): {"factors": 100, "regularization": 0.1, "alpha": 0.1, "iterations": 15},
    ("als", "stratified"): {"factors": 200, "regularization": 10.0, "alpha": 1.0, "iterations": 15},
    # one thread: implicit's Hogwild SGD on several threads differs from fit to fit
    # whatever its random_state, so neither a tune nor a training would repeat.
    ("bpr", "*"): {
        "factors": 64,
        "learning_rate": 0.01,
        "regularization": 0.01,
        "iterations": 100,
        "num_threads": 1,
    },
    ("itemknn", "*"): {"similarity": "bm25", "K": 100},
    ("itemknn", "temporal"): {"similarity": "bm25", "K": 50, "data": {"weights": _UNIT_WEIGHTS}},
    ("itemknn", "stratified"): {"similarity": "bm25", "K": 200},
    ("ease", "*"): {"lambda_": 300.0},
    ("ease", "temporal"): {"lambda_": 300.0, "dropout": 0.5},
    ("ease", "stratified"): {"lambda_": 300.0, "dropout": 0.67},
    ("gfcf", "stratified"): {"alpha": 1.0, "factors": 32, "user_exponent": 0.25},
    ("popular", "temporal"): {"by": "country"},
    ("buy-again", "*"): {"half_life_days": 60.0},
    ("buy-again", "temporal"): {"half_life_days": 180.0},
    ("lightfm", "*"): {"no_components": 48, "loss": "warp", "epochs": 20},
    ("ranker", "*"): {"horizon_days": 30.0, "n_windows": 3, "n_neighbours": 100, "n_trending": 50},
    ("blend", "temporal"): {
        "parts": {"ranker": 0.9, "buy-again": 0.1},
        "part_params": {
            "ranker": {"horizon_days": 30.0, "n_windows": 3, "n_neighbours": 100, "n_trending": 50},
            "buy-again": {"half_life_days": 180.0},
        },
    },
    ("blend", "stratified"): {
        "parts": {"ease": 0.65, "gfcf": 0.35},
        "part_params": {
            "ease": {"lambda_": 300.0, "dropout": 0.67},
            "gfcf": {"alpha": 5.0, "factors": 32},
        },
    },
}


class ParamError(ValueError):
    """A ``--set`` that cannot be applied; the message says which and why."""


def parse_sets(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a=1", "data.weights.view=0.5"]`` -> ``{"a": 1, "data": {"weights": {"view": 0.5}}}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParamError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise ParamError(f"--set {pair!r}: empty key")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamError(f"--set {pair!r}: {part!r} is already a value")
        node[parts[-1]] = value
    return out


def defaults_for(model: str, protocol: str) -> dict[str, Any]:
    """The sound default parameters of ``model`` under ``protocol``."""
    for key in ((model, protocol), (model, "*")):
        if key in DEFAULTS:
            return copy.deepcopy(DEFAULTS[key])
    return {}


def resolve(
    model: str, protocol: str, sets: dict[str, Any], base: dict[str, Any] | None = None
) -> tuple[dict[str, Any], InteractionConfig]:
    """Model parameters and the interaction config for one training.

    ``base`` (best known parameters, e.g. from ``recsys tune``) replaces the
    defaults; ``sets`` (from the command line) override both.
    """
    if model not in MODELS:
        raise ParamError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    params = copy.deepcopy(base) if base is not None else defaults_for(model, protocol)
    sets = copy.deepcopy(sets)
    data = params.pop("data", {})
    _merge(data, _settings(sets.pop("data", {}), "data", "data.half_life_days=60"))
    if model == "blend":
        named = [k for k in sets if k in MODELS]
        for name in named:
            part = _settings(sets.pop(name), name, f"{name}.<parameter>=...")
            params.setdefault("part_params", {}).setdefault(name, {}).update(part)
        if "parts" in sets:
            # the parts named replace the default blend
            params["parts"] = _settings(sets.pop("parts"), "parts", "parts.als=0.4")
            params["part_params"] = {
                k: v for k, v in params.get("part_params", {}).items() if k in params["parts"]
            }
        for name in named:
            if name not in params.get("parts", {}):
                parts = ", ".join(params.get("parts", {})) or "none"
                raise ParamError(
                    f"--set {name}.<parameter>: {name} is not a part of this blend ({parts}); "
                    f"add it with --set parts.{name}=0.3"
                )
    _merge(params, sets)
    return params, interaction_config(protocol, data)


def interaction_config(protocol: str, data: dict[str, Any]) -> InteractionConfig:
    """The protocol's default interaction config with ``data`` settings applied."""
    config = default_interaction_config(protocol).as_dict()
    data = dict(data)
    weights = _settings(data.pop("weights", {}), "data.weights", "data.weights.view=0.5")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ParamError(f"data.weights.{name}={json.dumps(weight)}: a weight is a number")
    config["weights"] = {**config["weights"], **weights}
    unknown = set(data) - set(config)
    if unknown:
        raise ParamError(f"unknown data settings {sorted(unknown)}; known: {sorted(config)}")
    config.update(data)
    try:
        check_param_types(InteractionConfig, data)
        return InteractionConfig(**config)
    except (TypeError, ValueError) as exc:
        raise ParamError(f"data settings: {exc}") from exc


def _settings(value: Any, key: str, example: str) -> dict:
    """``value`` if it is a mapping of settings, else a ``ParamError`` naming ``key``."""
    if not isinstance(value, dict):
        raise ParamError(f"{key}={json.dumps(value)}: {key} takes settings, e.g. --set {example}")
    return value


def _merge(target: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
