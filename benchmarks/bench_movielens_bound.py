"""How far can our MovieLens blend go? Every setting picked on the test split itself.

An upper bound, not a result: it searches the settings of the default
``blend`` (DLAE + GF-CF, each part min-max scaled per user as
``BlendRecommender`` does) and of blends that also hold the tuned ``als`` and
``itemknn``, and keeps whatever scores best *on the test split* of the
``stratified`` protocol. Choosing on the test can only flatter, so if the best
found is below a target, no setting of this family reaches that target on
this split by tuning alone.

    python benchmarks/bench_movielens_bound.py --movielens-source ../shared/data/ml-100k --json

The search, in three steps (k = 10):

1. every part alone: DLAE over ``lambda_`` x ``dropout``, GF-CF over
   ``alpha`` x ``factors``, ALS and item-kNN with their defaults;
2. every DLAE x GF-CF pair, GF-CF weight 0.1 to 0.5;
3. the five best pairs of step 2 with ALS and item-kNN added, weights
   0 to 0.3 each.

The metrics are computed here in numpy for speed; the script checks them
against ``recsys.evaluation.evaluate`` on the default blend first and stops if
they disagree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

DLAE_GRID = {"lambda_": (100.0, 200.0, 300.0, 500.0), "dropout": (0.5, 0.67, 0.75)}
GFCF_GRID = {"alpha": (1.0, 5.0, 20.0), "factors": (24, 32, 48, 64)}
PAIR_WEIGHTS = (0.1, 0.2, 0.3, 0.35, 0.4, 0.5)
EXTRA_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
K = 10


class TopTen:
    """NDCG@10 and precision@10 of dense score rows, train items excluded."""

    def __init__(self, train, test) -> None:
        self.users = np.flatnonzero(np.diff(test.indptr) > 0)
        self.truth = test[self.users].toarray() > 0
        self.seen = train[self.users].toarray() > 0
        self.discount = 1.0 / np.log2(np.arange(2, K + 2))
        ideal = np.cumsum(self.discount)
        self.ideal = ideal[np.minimum(self.truth.sum(axis=1), K) - 1]

    def __call__(self, scores: np.ndarray) -> tuple[float, float]:
        scores = np.where(self.seen, -np.inf, scores)
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        hits = np.take_along_axis(self.truth, np.take_along_axis(top, order, axis=1), axis=1)
        return float((hits @ self.discount / self.ideal).mean()), float(hits.mean())


def part_scores(data, train) -> dict[tuple, np.ndarray]:
    """Min-max scaled score rows of every part setting, keyed (model, settings)."""
    from recsys.models.blend import minmax_rows
    from recsys.models.registry import create_model
    from training import params as hp

    settings = [("ease", setting) for setting in _grid(DLAE_GRID)]
    settings += [("gfcf", setting) for setting in _grid(GFCF_GRID)]
    settings += [(name, hp.resolve(name, "stratified", {})[0]) for name in ("als", "itemknn")]
    users = np.flatnonzero(np.diff(data.test.indptr) > 0)
    context = data.fit_context(None)
    out = {}
    for i, (name, params) in enumerate(settings, 1):
        print(f"  [{i}/{len(settings)}] {name} {params}", file=sys.stderr, flush=True)
        model = create_model(name, **params).fit(train, context=context)
        out[(name, json.dumps(params, sort_keys=True))] = minmax_rows(
            model.score(users, train[users])
        )
    return out


def _grid(grid: dict[str, tuple]) -> list[dict]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def check_metrics(data, train, metric: TopTen) -> dict[str, float]:
    """The default blend by ``recsys.evaluation.evaluate`` and by ``metric``: must agree."""
    from recsys.evaluation.evaluate import evaluate
    from recsys.models.registry import create_model
    from training import params as hp

    params, _ = hp.resolve("blend", "stratified", {})
    model = create_model("blend", **params).fit(train, context=data.fit_context(None))
    summary = evaluate(model, train, data.test, k=K, ks=(K,), progress=False).summary()
    ours = metric(model.score(metric.users, train[metric.users]))
    reference = (summary["ndcg@10"], summary["precision@10"])
    if not np.allclose(ours, reference, atol=1e-9):
        raise SystemExit(f"metric check failed: numpy {ours} vs recsys.evaluation {reference}")
    return {"ndcg@10": reference[0], "precision@10": reference[1]}


def search(parts: dict[tuple, np.ndarray], metric: TopTen) -> dict:
    """Steps 1-3 of the module docstring; the best settings by each metric."""
    rows = []

    def record(weights: dict[tuple, float]) -> None:
        total = sum(w * parts[key] for key, w in weights.items() if w)
        ndcg, precision = metric(total)
        rows.append(
            {
                "parts": {f"{k[0]} {k[1]}": w for k, w in weights.items() if w},
                "ndcg@10": ndcg,
                "precision@10": precision,
            }
        )

    for key in parts:
        record({key: 1.0})
    dlae = [k for k in parts if k[0] == "ease"]
    gfcf = [k for k in parts if k[0] == "gfcf"]
    extras = [k for k in parts if k[0] in ("als", "itemknn")]
    pair_rows = []
    for d, g, w in itertools.product(dlae, gfcf, PAIR_WEIGHTS):
        record({d: 1.0 - w, g: w})
        pair_rows.append((rows[-1]["ndcg@10"], d, g, w))
    for _, d, g, w in sorted(pair_rows, key=lambda r: -r[0])[:5]:
        for extra in itertools.product(EXTRA_WEIGHTS, repeat=len(extras)):
            if any(extra):
                record({d: 1.0 - w, g: w, **dict(zip(extras, extra, strict=True))})
    alone: dict[str, float] = {}
    for key, row in zip(parts, rows[: len(parts)], strict=True):
        alone[key[0]] = max(alone.get(key[0], 0.0), row["ndcg@10"])
    return {
        "settings_searched": len(rows),
        "best_alone_ndcg@10": alone,
        "best_by_ndcg": max(rows, key=lambda r: r["ndcg@10"]),
        "best_by_precision": max(rows, key=lambda r: r["precision@10"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--movielens-source", help="the ml-100k directory, imported into --scratch")
    source.add_argument("--movielens-data", help="a data directory that already holds MovieLens")
    parser.add_argument("--scratch", help="where to import (default: a temporary directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    args = parser.parse_args(argv)

    from bench_quality import prepare

    from recsys.data.store import DataStore
    from recsys.protocols import load_protocol
    from training import params as hp

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.scratch or tmp)
        data_dir = prepare(args.movielens_data, args.movielens_source, "movielens", scratch)
        with DataStore(data_dir).pinned() as store:
            data = load_protocol(store, "stratified")
    train = data.train_matrix(hp.resolve("blend", "stratified", {})[1]).tocsr()
    metric = TopTen(train, data.test.tocsr())
    default = check_metrics(data, train, metric)
    print(f"default blend: {default}", file=sys.stderr, flush=True)
    result = {"default_blend": default, **search(part_scores(data, train), metric)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in ("default_blend", "best_alone_ndcg@10", "best_by_ndcg", "best_by_precision"):
            print(f"{key}: {result[key]}")


if __name__ == "__main__":
    main()
