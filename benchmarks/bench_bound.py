"""How far can our models go on the two protocols? Every setting picked on the test split.

An upper bound, not a result: for each dataset it searches settings of our
best models and blends of them (each part min-max scaled per user, as
``BlendRecommender`` does) and keeps whatever scores best *on the test split*
itself. Choosing on the test can only flatter, so if the best found is below
a target, no setting searched here reaches that target by tuning alone.

    python benchmarks/bench_bound.py --movielens-source ../shared/data/ml-100k \\
        --retail-source ../shared/data/online_retail/online_retail.csv.gz --json

The search, per dataset (k = 10; Online Retail: the ``temporal`` protocol at
cut-off 2011-11-09, all items; MovieLens: ``stratified``):

1. every part alone (the grids hold the default blend's parts, so step 2
   holds the default blend): a grid of the main model (MovieLens: DLAE over
   ``lambda_`` x ``dropout``; Online Retail: the ranker over candidate
   neighbours x training windows x tree size), a grid of its partner
   (GF-CF over ``alpha`` x ``factors``; buy-again over its half-life) and
   two more models with the defaults ``recsys train`` uses;
2. every main x partner pair, the partner's weight 0.1 to 0.5;
3. the five best pairs of step 2 with the two other models added, weights
   0 to 0.3 each.

The metrics are computed here in numpy for speed; the script first checks
them against ``recsys.evaluation.evaluate`` on the default blend and stops
if they disagree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

K = 10
PAIR_WEIGHTS = (0.1, 0.2, 0.3, 0.35, 0.4, 0.5)
EXTRA_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
#: dataset -> protocol, cut-off, main grid, partner grid, other models
SEARCH = {
    "movielens": {
        "protocol": "stratified",
        "cutoff": None,
        "main": ("ease", {"lambda_": (100.0, 200.0, 300.0, 500.0), "dropout": (0.5, 0.67, 0.75)}),
        "partner": ("gfcf", {"alpha": (1.0, 5.0, 20.0), "factors": (24, 32, 48, 64)}),
        "others": ("als", "itemknn"),
    },
    "retail": {
        "protocol": "temporal",
        "cutoff": "2011-11-09",
        "main": (
            "ranker",
            {"n_neighbours": (100, 200), "n_windows": (3, 4), "max_leaf_nodes": (15, 31)},
        ),
        "partner": ("buy-again", {"half_life_days": (60.0, 180.0, 365.0)}),
        "others": ("ease", "itemknn"),
    },
}


class TopTen:
    """NDCG@10 and precision@10 of dense score rows of the test users, ranked by
    ``recsys.models.topn.top_n`` as the evaluation ranks them (ties: smaller item id)."""

    def __init__(self, test, exclude=None) -> None:
        self.users = np.flatnonzero(np.diff(test.indptr) > 0)
        self.truth = test[self.users].toarray() > 0
        self.seen = None if exclude is None else exclude[self.users].tocsr()
        self.discount = 1.0 / np.log2(np.arange(2, K + 2))
        self.ideal = np.cumsum(self.discount)[np.minimum(self.truth.sum(axis=1), K) - 1]

    def __call__(self, scores: np.ndarray) -> tuple[float, float]:
        from recsys.models.topn import top_n

        ids, _ = top_n(np.array(scores, dtype=np.float32), K, exclude_per_row=self.seen)
        hits = np.take_along_axis(self.truth, np.maximum(ids, 0), axis=1) & (ids >= 0)
        return float((hits @ self.discount / self.ideal).mean()), float(hits.mean())


def _grid(grid: dict[str, tuple]) -> list[dict]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _fit(name: str, params: dict | None, data, context):
    """Fit ``name`` on the train matrix ``recsys train`` builds for it, with ``params``
    over the class defaults (None: the defaults ``recsys train`` uses)."""
    from recsys.models.registry import create_model
    from training import params as hp

    defaults, config = hp.resolve(name, data.name, {})
    train = data.train_matrix(config)
    model = create_model(name, **(defaults if params is None else params))
    return model.fit(train, context=context), train


def part_scores(data, search: dict, users: np.ndarray) -> dict[tuple, np.ndarray]:
    """Min-max scaled score rows of every part setting, keyed (model, settings)."""
    from recsys.models.blend import minmax_rows

    settings = [(search["main"][0], s) for s in _grid(search["main"][1])]
    settings += [(search["partner"][0], s) for s in _grid(search["partner"][1])]
    settings += [(name, None) for name in search["others"]]
    context = data.fit_context(None)
    out = {}
    for i, (name, params) in enumerate(settings, 1):
        print(f"  [{i}/{len(settings)}] {name} {params}", file=sys.stderr, flush=True)
        model, train = _fit(name, params, data, context)
        out[(name, json.dumps(params or "defaults", sort_keys=True))] = minmax_rows(
            model.score(users, train[users])
        )
    return out


def check_metrics(data, metric: TopTen) -> dict[str, float]:
    """The default blend by ``recsys.evaluation.evaluate`` and by ``metric``: must agree."""
    from recsys.evaluation.evaluate import evaluate

    model, train = _fit("blend", None, data, data.fit_context(None))
    excluded = metric.seen is not None
    summary = evaluate(
        model, train, data.test, k=K, ks=(K,), exclude_train_items=excluded, progress=False
    ).summary()
    ours = metric(model.score(metric.users, train[metric.users]))
    reference = (summary["ndcg@10"], summary["precision@10"])
    if not np.allclose(ours, reference, atol=1e-9):
        raise SystemExit(f"metric check failed: numpy {ours} vs recsys.evaluation {reference}")
    return {"ndcg@10": reference[0], "precision@10": reference[1]}


def search_blends(parts: dict[tuple, np.ndarray], search: dict, metric: TopTen) -> dict:
    """Steps 1-3 of the module docstring; the best settings by each metric."""
    rows = []

    def record(weights: dict[tuple, float]) -> float:
        total = sum(w * parts[key] for key, w in weights.items() if w)
        ndcg, precision = metric(total)
        used = {f"{k[0]} {k[1]}": w for k, w in weights.items() if w}
        rows.append({"parts": used, "ndcg@10": ndcg, "precision@10": precision})
        return ndcg

    alone: dict[str, float] = {}
    for key in parts:
        alone[key[0]] = max(alone.get(key[0], 0.0), record({key: 1.0}))
    mains = [k for k in parts if k[0] == search["main"][0]]
    partners = [k for k in parts if k[0] == search["partner"][0]]
    others = [k for k in parts if k[0] in search["others"]]
    pairs = [
        (record({m: 1.0 - w, p: w}), m, p, w)
        for m, p, w in itertools.product(mains, partners, PAIR_WEIGHTS)
    ]
    for _, m, p, w in sorted(pairs, key=lambda r: -r[0])[:5]:
        for extra in itertools.product(EXTRA_WEIGHTS, repeat=len(others)):
            if any(extra):
                record({m: 1.0 - w, p: w, **dict(zip(others, extra, strict=True))})
    return {
        "settings_searched": len(rows),
        "best_alone_ndcg@10": alone,
        "best_by_ndcg": max(rows, key=lambda r: r["ndcg@10"]),
        "best_by_precision": max(rows, key=lambda r: r["precision@10"]),
    }


def bound(key: str, data_dir: Path) -> dict:
    """The default blend and the best settings found on ``key``'s test split."""
    from recsys.data.store import DataStore
    from recsys.protocols import load_protocol

    search = SEARCH[key]
    with DataStore(data_dir).pinned() as store:
        data = load_protocol(store, search["protocol"], cutoff=search["cutoff"])
    exclude = data.bought if search["protocol"] == "stratified" else None
    metric = TopTen(data.test.tocsr(), exclude)
    default = check_metrics(data, metric)
    print(f"{key}: default blend {default}", file=sys.stderr, flush=True)
    found = search_blends(part_scores(data, search, metric.users), search, metric)
    return {"protocol": search["protocol"], "default_blend": default, **found}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key, label in (("movielens", "the ml-100k directory"), ("retail", "Online Retail csv")):
        parser.add_argument(f"--{key}-source", help=f"{label}, imported into --scratch")
        parser.add_argument(f"--{key}-data", help=f"a data directory that already holds {key}")
    parser.add_argument("--scratch", help="where to import (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    args = parser.parse_args(argv)
    chosen = [k for k in SEARCH if getattr(args, f"{k}_source") or getattr(args, f"{k}_data")]
    if not chosen:
        parser.error("give a MovieLens or an Online Retail source or data directory")

    from bench_quality import prepare

    fmt = {"movielens": "movielens", "retail": "online-retail"}
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.scratch or tmp)
        for key in chosen:
            source, data = getattr(args, f"{key}_source"), getattr(args, f"{key}_data")
            result[key] = bound(key, prepare(data, source, fmt[key], scratch))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, found in result.items():
        for name in ("default_blend", "best_alone_ndcg@10", "best_by_ndcg", "best_by_precision"):
            print(f"{key} {name}: {found[name]}")


if __name__ == "__main__":
    main()
