"""Offline quality on the two fixed protocols: our models beside plain reference baselines.

Online Retail runs the ``temporal`` protocol (cut-off 2011-11-09, test = the
next 30 days' purchases of known customers and items; NDCG@10 on all items
and on new items only), MovieLens 100K the ``stratified`` one (75/25 per item,
seed 42, train items excluded, k = 10). Our models train with the defaults of
``training/params.py`` exactly as ``recsys train`` does; the references are
computed here with plain numpy / implicit code and scored by the same
evaluation functions:

- ``ref: bare ALS``: ``implicit.als.AlternatingLeastSquares()`` with its
  default parameters on the binary purchase (rating) matrix;
- ``ref: popular per country``: buyers per item in the customer's country
  (global for an unknown country, and for MovieLens);
- ``ref: EASE 300``: closed-form EASE, lambda 300, binary matrix;
- ``ref: own purchase counts``: the customer's purchase events per item
  (temporal only: the stratified protocol excludes train items).

    python benchmarks/bench_quality.py \\
        --retail-source ../shared/data/online_retail/online_retail.csv.gz \\
        --movielens-source ../shared/data/ml-100k
    python benchmarks/bench_quality.py --retail-data /tmp/q-retail --skip-movielens --json
    python benchmarks/bench_quality.py --retail-data /tmp/q-retail --retail-cutoff 2011-10-10

``--als-overhead N`` times our ALS fit against a bare implicit fit of the same
matrix (same factors / iterations / threads, N runs each, interleaved).
``--memory`` runs ``recsys train --model M --json -q`` in a fresh process per
model and reports its ``fit_seconds`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

OUR_MODELS = {
    "temporal": [
        "popular",
        "buy-again",
        "itemknn",
        "als",
        "bpr",
        "lightfm",
        "ease",
        "ranker",
        "blend",
    ],
    "stratified": ["popular", "itemknn", "als", "bpr", "lightfm", "ease", "gfcf", "blend"],
}
DATASETS = {
    "retail": {"format": "online-retail", "protocol": "temporal"},
    "movielens": {"format": "movielens", "protocol": "stratified"},
}


# -- data -----------------------------------------------------------------------


def prepare(data_dir: str | None, source: str | None, fmt: str, scratch: Path) -> Path:
    """A data directory: the given one, or a fresh import of ``source`` under ``scratch``."""
    if data_dir:
        return Path(data_dir)
    if not source:
        raise SystemExit(f"give a prepared data dir or a source path for {fmt}")
    from recsys.data.importing import import_source
    from recsys.data.store import DataStore

    target = scratch / fmt
    import_source(DataStore(target), fmt, source, progress=False)
    return target


# -- evaluation -----------------------------------------------------------------


def evaluate_views(model, data, train: sp.csr_matrix) -> dict[str, float]:
    """The metrics ``recsys train`` reports for this protocol (k = 10)."""
    from recsys.evaluation.evaluate import evaluate

    if data.name == "stratified":
        result = evaluate(model, train, data.test, k=10, ks=(10,), progress=False)
        summary = result.summary()
        return {"ndcg@10": summary["ndcg@10"], "precision@10": summary["precision@10"]}
    every = evaluate(
        model, train, data.test, k=10, ks=(10,), exclude_train_items=False, progress=False
    ).summary()
    new = evaluate(
        model, train, data.test_new_items(), k=10, ks=(10,), exclude=data.bought, progress=False
    ).summary()
    return {
        "ndcg@10": every["ndcg@10"],
        "precision@10": every["precision@10"],
        "new_items_ndcg@10": new["ndcg@10"],
    }


class ScoreTable:
    """The ``recommend`` evaluation calls, over a plain ``score(userids) -> dense`` function."""

    def __init__(self, score) -> None:
        self._score = score

    def recommend(self, userids, user_items, N=10, filter_already_liked_items=True, **_):
        scores = np.array(self._score(np.asarray(userids)), dtype=np.float64)
        if filter_already_liked_items:
            liked = sp.csr_matrix(user_items)
            rows = np.repeat(np.arange(liked.shape[0]), np.diff(liked.indptr))
            scores[rows, liked.indices] = -np.inf
        n = min(N, scores.shape[1])
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        ids = np.take_along_axis(top, order, axis=1)
        ids[~np.isfinite(np.take_along_axis(scores, ids, axis=1))] = -1
        return ids, np.take_along_axis(scores, np.maximum(ids, 0), axis=1)


def reference_rows(data, threads: int) -> list[dict]:
    """The plain reference baselines, each fitted and scored here."""
    from implicit.als import AlternatingLeastSquares

    binary = sp.csr_matrix(data.bought, dtype=np.float32)
    binary.data[:] = 1.0
    rows = []

    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(num_threads=threads, random_state=0)
        als.fit(binary, show_progress=False)
    user_factors, item_factors = np.asarray(als.user_factors), np.asarray(als.item_factors)
    rows.append(
        _reference(
            "ref: bare ALS (implicit defaults)",
            lambda u: user_factors[u] @ item_factors.T,
            data,
            binary,
            started,
        )
    )

    started = time.perf_counter()
    country = np.where(data.user_country == "", "?", data.user_country).astype(str)
    markets, market_of = np.unique(country, return_inverse=True)
    coo = binary.tocoo()
    per_market = sp.csr_matrix(
        (coo.data, (market_of[coo.row], coo.col)), shape=(len(markets), binary.shape[1])
    ).toarray()
    overall = np.asarray(binary.sum(axis=0)).ravel()
    per_market[markets == "?"] = overall
    label = "ref: popular per country" if len(markets) > 1 else "ref: popular"
    rows.append(_reference(label, lambda u: per_market[market_of[u]], data, binary, started))

    started = time.perf_counter()
    gram = (binary.T @ binary).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += 300.0
    inverse = scipy.linalg.inv(gram)
    weights = inverse / -np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    rows.append(
        _reference("ref: EASE lambda 300", lambda u: binary[u] @ weights, data, binary, started)
    )

    if data.name == "temporal":
        started = time.perf_counter()
        events = data.split.train
        bought = events[(events["type"] == "purchase") & events["user_id"].notna()]
        users = data.user_map.index(bought["user_id"].astype(str))
        items = data.item_map.index(bought["item_id"].astype(str))
        ok = (users >= 0) & (items >= 0)
        counts = sp.csr_matrix(
            (np.ones(int(ok.sum())), (users[ok], items[ok])), shape=binary.shape
        )  # duplicates add up: one per purchase event
        rows.append(
            _reference(
                "ref: own purchase counts", lambda u: counts[u].toarray(), data, binary, started
            )
        )
        # The same, with ties and short histories filled by global popularity
        # (a fraction of one purchase: it never outranks a count).
        started = time.perf_counter()
        popularity = np.asarray(binary.sum(axis=0)).ravel()
        filler = 1e-3 * popularity / max(popularity.max(), 1.0)
        rows.append(
            _reference(
                "ref: own purchase counts, then popularity",
                lambda u: counts[u].toarray() + filler[None, :],
                data,
                binary,
                started,
            )
        )
    return rows


def _reference(name, score, data, train, started) -> dict:
    fitted = time.perf_counter() - started
    return {"model": name, **evaluate_views(ScoreTable(score), data, train), "fit_seconds": fitted}


def our_rows(data, store, names: list[str], threads: int) -> list[dict]:
    """Our models with the defaults of ``training/params.py`` (as ``recsys train``)."""
    from recsys.models.registry import create_model
    from training import params as hp
    from training.train import FEATURE_MODELS

    rows = []
    for name in names:
        params, config = hp.resolve(name, data.name, {})
        params = _with_threads(name, params, threads)
        train = data.train_matrix(config)
        uses_features = name in FEATURE_MODELS or any(
            p in FEATURE_MODELS for p in params.get("parts", {})
        )
        context = data.fit_context(store if uses_features else None)
        started = time.perf_counter()
        with threadpool_limits(threads):
            model = create_model(name, **params).fit(train, context=context)
            fitted = time.perf_counter() - started
            metrics = evaluate_views(model, data, train)
        rows.append({"model": name, **metrics, "fit_seconds": fitted, "params": params})
        print(f"  {name}: {_brief(metrics)}", file=sys.stderr, flush=True)
    return rows


def _with_threads(name: str, params: dict, threads: int) -> dict:
    """``num_threads`` for the models (and blend parts) that take it, unless their
    parameters set it (``bpr``'s defaults pin one thread) or their class default is
    one thread (``lightfm``): Hogwild SGD on several threads does not repeat, and
    every row should be what ``recsys train`` gives."""
    import inspect

    from recsys.models.registry import MODELS

    def takes_threads(model: str) -> bool:
        parameter = inspect.signature(MODELS[model].__init__).parameters.get("num_threads")
        return parameter is not None and parameter.default != 1

    params = json.loads(json.dumps(params))
    if takes_threads(name):
        params.setdefault("num_threads", threads)
    for part in params.get("parts", {}):
        if takes_threads(part):
            params.setdefault("part_params", {}).setdefault(part, {}).setdefault(
                "num_threads", threads
            )
    return params


def _brief(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


# -- ALS overhead and memory ----------------------------------------------------


def als_overhead(data, runs: int, threads: int) -> dict:
    """Median fit seconds of our ALS and of bare implicit ALS on the same matrix."""
    from implicit.cpu.als import AlternatingLeastSquares

    from recsys.models.registry import create_model
    from training import params as hp

    params, config = hp.resolve("als", data.name, {})
    params["num_threads"] = threads
    train = data.train_matrix(config)
    ours, bare = [], []
    for _ in range(runs):
        started = time.perf_counter()
        create_model("als", **params).fit(train)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        with threadpool_limits(1, "blas"):
            AlternatingLeastSquares(
                factors=params["factors"],
                regularization=params["regularization"],
                alpha=params["alpha"],
                iterations=params["iterations"],
                dtype=np.float32,
                num_threads=threads,
                random_state=0,
            ).fit(train, show_progress=False)
        bare.append(time.perf_counter() - started)
    return {
        "runs": runs,
        "threads": threads,
        "shape": list(train.shape),
        "nnz": int(train.nnz),
        "params": params,
        "ours_median_s": statistics.median(ours),
        "bare_median_s": statistics.median(bare),
        "ratio": statistics.median(ours) / statistics.median(bare),
        "ours_s": ours,
        "bare_s": bare,
    }


def train_memory(data_dir: Path, names: list[str], cutoff: str | None) -> list[dict]:
    """``recsys train --model M --json -q`` in a fresh process per model (own MLflow store)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-mlflow-") as tracking:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tracking}/mlflow.db"}
        for name in names:
            command = [sys.executable, "-m", "recsys", "--data", str(data_dir), "train"]
            command += ["--model", name, "--json", "-q"]
            if cutoff:
                command += ["--cutoff", cutoff]
            started = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            summary = json.loads(done.stdout)
            rows.append(
                {
                    "model": name,
                    "fit_seconds": summary["fit_seconds"],
                    "peak_rss_mb": summary["peak_rss_mb"],
                    "rss_before_fit_mb": summary["rss_before_fit_mb"],
                    "wall_seconds": time.perf_counter() - started,
                    "ndcg@10": summary["metrics"]["ndcg@10"],
                }
            )
            print(f"  {name}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


# -- report -----------------------------------------------------------------------


def table(rows: list[dict], temporal: bool) -> str:
    header = "| model | ndcg@10 | precision@10 |" + (" new items ndcg@10 |" if temporal else "")
    header += " fit s |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        cells = [row["model"], f"{row['ndcg@10']:.4f}", f"{row['precision@10']:.4f}"]
        if temporal:
            cells.append(f"{row['new_items_ndcg@10']:.4f}")
        cells.append(f"{row['fit_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_dataset(key: str, data_dir: Path, args) -> dict:
    from recsys.data.store import DataStore
    from recsys.protocols import load_protocol

    protocol = DATASETS[key]["protocol"]
    cutoff = args.retail_cutoff if protocol == "temporal" else None
    names = args.models.split(",") if args.models else OUR_MODELS[protocol]
    with DataStore(data_dir).pinned() as store:  # the split and the features of one manifest
        data = load_protocol(store, protocol, cutoff=cutoff, seed=args.seed)
        split = data.split.summary()
        print(f"{key}: {protocol} {data.params} {split}", file=sys.stderr, flush=True)
        out = {"protocol": protocol, "params": data.params, "split": split}
        out["rows"] = reference_rows(data, args.threads) + our_rows(
            data, store, names, args.threads
        )
    if args.als_overhead:
        out["als_overhead"] = als_overhead(data, args.als_overhead, args.threads)
    if args.memory:
        out["memory"] = train_memory(data_dir, names, cutoff)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retail-data", help="data dir with Online Retail imported")
    parser.add_argument("--retail-source", help="online_retail.csv.gz, imported into a temp dir")
    parser.add_argument("--retail-cutoff", help="temporal cut-off [default: last event - 30 days]")
    parser.add_argument("--movielens-data", help="data dir with MovieLens 100K imported")
    parser.add_argument("--movielens-source", help="the ml-100k folder, imported into a temp dir")
    parser.add_argument("--seed", type=int, default=42, help="stratified split seed [42]")
    parser.add_argument("--skip-retail", action="store_true")
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--models", help="comma-separated models [the protocol's list]")
    parser.add_argument("--threads", type=int, default=2, help="threads for every model [2]")
    parser.add_argument("--als-overhead", type=int, default=0, metavar="RUNS")
    parser.add_argument("--memory", action="store_true", help="fresh `recsys train` per model")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as scratch:
        wanted = {
            "retail": (args.skip_retail, args.retail_data, args.retail_source),
            "movielens": (args.skip_movielens, args.movielens_data, args.movielens_source),
        }
        for key, (skip, data_dir, source) in wanted.items():
            if skip or not (data_dir or source):
                continue
            path = prepare(data_dir, source, DATASETS[key]["format"], Path(scratch))
            results[key] = run_dataset(key, path, args)
    if args.json:
        print(json.dumps(results, indent=2, default=_json_default))
        return
    for key, result in results.items():
        print(f"\n## {key} ({result['protocol']}, {result['params']})\n")
        print(table(result["rows"], result["protocol"] == "temporal"))
        if "als_overhead" in result:
            o = result["als_overhead"]
            print(
                f"\nALS fit, median of {o['runs']} ({o['threads']} threads): ours "
                f"{o['ours_median_s']:.2f} s, bare implicit {o['bare_median_s']:.2f} s, "
                f"ratio {o['ratio']:.3f}"
            )
        if "memory" in result:
            print(
                "\n| model | fit s | RSS before fit MB | peak RSS MB | wall s |"
                "\n|---|---|---|---|---|"
            )
            for row in result["memory"]:
                print(
                    f"| {row['model']} | {row['fit_seconds']:.1f} | "
                    f"{row['rss_before_fit_mb']:.0f} | {row['peak_rss_mb']:.0f} "
                    f"| {row['wall_seconds']:.0f} |"
                )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {value!r}")


if __name__ == "__main__":
    main()
