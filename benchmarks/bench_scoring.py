"""Benchmark batch scoring: recsys.scoring.batch_recommend vs implicit, and vs numpy's matmul.

One run, on one ALS model (implicit, float32), measures:

(a) the wall time of ``batch_recommend(model, user_items, N=N)`` over every user
    vs implicit's own batch path ``AlternatingLeastSquares.recommend(userids=all
    users, user_items, N=N)`` on the same factors, and how their results agree
    on a sample of users (ours is also checked bit for bit against
    ``model.recommend``);
(b) the GFLOP/s of our product phase vs numpy's float32 ``matmul`` rate on a
    product of comparable shape (M x factors times factors x items), measured
    in the same run;
(c) the seconds of our selection phase vs our product phase.

Times are medians of ``--repeats`` runs. The data is the events of a data
directory (``--data``, e.g. written by ``recsys data generate``) or, without
it, a random sparse matrix. ``--large-users`` adds one run of
``batch_recommend`` alone on random factors (a pure scoring benchmark).

    python benchmarks/bench_scoring.py --data /tmp/shop200k --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from recsys.memory import peak_rss_mb
from recsys.models.als import ALSRecommender
from recsys.scoring import ScoringStats, batch_recommend, batch_similar_items, default_threads


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="data directory with events (default: random matrix)")
    parser.add_argument("--users", type=int, default=200_000, help="random matrix: users")
    parser.add_argument("--items", type=int, default=50_000, help="random matrix: items")
    parser.add_argument("--per-user", type=int, default=20, help="random matrix: items per user")
    parser.add_argument("--factors", type=int, default=64, help="ALS factors (default 64)")
    parser.add_argument("--iterations", type=int, default=3, help="ALS iterations (default 3)")
    parser.add_argument("-N", type=int, default=100, help="items per user (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measure (default 3)")
    parser.add_argument("--sample", type=int, default=2000, help="users compared (default 2000)")
    parser.add_argument("--threads", type=int, help="worker threads (default: every core)")
    parser.add_argument("--block-users", type=int, help="users per block (default: automatic)")
    parser.add_argument("--similar-k", type=int, default=20, help="K of the similar-items run")
    parser.add_argument("--skip-implicit", action="store_true", help="do not time implicit")
    parser.add_argument(
        "--large-users", type=int, default=0, help="also score this many random users (0: no)"
    )
    parser.add_argument("--large-items", type=int, default=100_000, help="items of that run")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser.parse_args()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load(args) -> tuple[sp.csr_matrix, dict]:
    if args.data:
        from recsys.data.store import DataStore
        from recsys.interactions import InteractionConfig, build_interactions

        began = time.perf_counter()
        events = DataStore(args.data).read("events", columns=["user_id", "item_id", "type"])
        matrix = build_interactions(events, InteractionConfig()).matrix
        source = {"source": args.data, "load_seconds": round(time.perf_counter() - began, 1)}
    else:
        matrix = _random_user_items(args.users, args.items, args.per_user, args.seed)
        source = {"source": f"random, {args.per_user} items per user, Zipf-like popularity"}
    source.update(users=matrix.shape[0], items=matrix.shape[1], nnz=int(matrix.nnz))
    return matrix, source


def _random_user_items(n_users: int, n_items: int, per_user: int, seed: int) -> sp.csr_matrix:
    """``per_user`` items per user drawn with Zipf-like popularity (duplicates summed)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    cols = rng.choice(n_items, size=n_users * per_user, p=popularity / popularity.sum())
    rows = np.repeat(np.arange(n_users), per_user)
    data = np.ones(len(cols), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols.astype(np.int32))), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


class MatmulReference:
    """numpy's float32 ``A @ B.T`` (rows x factors times factors x items) as a rate reference."""

    def __init__(self, rows: int, n_items: int, factors: int, products: int = 5):
        rng = np.random.default_rng(1)
        self.left = rng.standard_normal((rows, factors), dtype=np.float32)
        self.right = rng.standard_normal((n_items, factors), dtype=np.float32)
        self.out = np.empty((rows, n_items), dtype=np.float32)
        np.matmul(self.left, self.right.T, out=self.out)  # touch the output pages once
        self.flops = 2.0 * rows * n_items * factors
        self.products = products
        self.shape = f"{rows}x{factors} @ {factors}x{n_items}"

    def gflops(self) -> dict[str, float]:
        """Median rate of ``products`` products with every BLAS thread, and with one."""
        rates = {"all_blas_threads": self._rate()}
        with threadpool_limits(1, "blas"):
            rates["one_blas_thread"] = self._rate()
        return rates

    def _rate(self) -> float:
        times = []
        for _ in range(self.products):
            began = time.perf_counter()
            np.matmul(self.left, self.right.T, out=self.out)
            times.append(time.perf_counter() - began)
        return self.flops / statistics.median(times) / 1e9


def _comparable_rows(n_items: int) -> int:
    """Rows of the reference product: a 256 MB float32 output."""
    return max(64, (256 << 20) // (4 * n_items))


def run_ours(model, matrix, args, threads: int) -> tuple[ScoringStats, np.ndarray]:
    stats = ScoringStats()
    ids, _ = batch_recommend(
        model, matrix, N=args.N, threads=threads, block_users=args.block_users, stats=stats
    )
    return stats, ids


def run_theirs(model, matrix, args) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Seconds and result of implicit's own batch ``recommend`` over every user."""
    implicit_model = model._model  # the implicit AlternatingLeastSquares holding the factors
    began = time.perf_counter()
    result = implicit_model.recommend(np.arange(matrix.shape[0]), matrix, N=args.N)
    return time.perf_counter() - began, result


def rounds(model, matrix, args, threads: int) -> tuple[dict, np.ndarray, tuple | None]:
    """``--repeats`` rounds of: numpy rate, ours, numpy rate again, implicit.

    Interleaving puts each measure under the same load from other jobs; the
    reference rate of a round is the mean of the rates before and after ours.
    """
    reference = MatmulReference(_comparable_rows(matrix.shape[1]), matrix.shape[1], args.factors)
    per_round, our_ids, their = [], None, None
    for index in range(args.repeats):
        before = reference.gflops()
        stats, our_ids = run_ours(model, matrix, args, threads)
        after = reference.gflops()
        row = {
            "ours_seconds": stats.wall_seconds,
            "product_thread_seconds": stats.product_seconds,
            "selection_thread_seconds": stats.selection_seconds,
            "product_gflops": stats.product_gflops,
            "numpy_gflops": (before["all_blas_threads"] + after["all_blas_threads"]) / 2,
            "numpy_gflops_one_thread": (before["one_blas_thread"] + after["one_blas_thread"]) / 2,
        }
        if not args.skip_implicit:
            row["implicit_seconds"], their = run_theirs(model, matrix, args)
        per_round.append(row)
        _log(f"round {index + 1}: " + json.dumps({k: round(v, 2) for k, v in row.items()}))
    return _summary(per_round, stats, matrix.shape[0], reference.shape), our_ids, their


def _summary(per_round: list[dict], stats: ScoringStats, n_users: int, shape: str) -> dict:
    def median(key: str, digits: int = 2) -> float:
        return round(statistics.median(row[key] for row in per_round), digits)

    def median_ratio(top: str, bottom: str) -> float:
        return round(statistics.median(row[top] / row[bottom] for row in per_round), 3)

    ours = {
        "seconds": median("ours_seconds"),
        "users_per_second": round(n_users / median("ours_seconds")),
        "threads": stats.threads,
        "block_users": stats.block_rows,
        "blocks": stats.blocks,
        "product_thread_seconds": median("product_thread_seconds"),
        "selection_thread_seconds": median("selection_thread_seconds"),
        "selection_over_product": median_ratio(
            "selection_thread_seconds", "product_thread_seconds"
        ),
        "product_gflops": median("product_gflops", 1),
        "product_share_of_numpy": median_ratio("product_gflops", "numpy_gflops"),
        "full_sort_rows": stats.full_sort_rows,
    }
    result = {
        "ours": ours,
        "numpy_matmul": {
            "shape": shape,
            "gflops_all_blas_threads": median("numpy_gflops", 1),
            "gflops_one_blas_thread": median("numpy_gflops_one_thread", 1),
        },
        "rounds": [{k: round(v, 2) for k, v in row.items()} for row in per_round],
    }
    if "implicit_seconds" in per_round[0]:
        result["implicit"] = {
            "seconds": median("implicit_seconds"),
            "users_per_second": round(n_users / median("implicit_seconds")),
        }
        result["implicit_over_ours"] = median_ratio("implicit_seconds", "ours_seconds")
    return result


def agreement(model, matrix, our_ids, their, args) -> dict:
    """Ours vs ``model.recommend`` (bit for bit) and vs implicit on a sample of users."""
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(matrix.shape[0], min(args.sample, matrix.shape[0]), replace=False))
    ref_ids, ref_scores = model.recommend(sample, matrix[sample], N=args.N)
    our_sample_ids, our_sample_scores = batch_recommend(model, matrix, sample, N=args.N)
    result = {
        "sample_users": len(sample),
        # ids exactly (from the full run and from a run on the sample alone);
        # scores bit for bit, else their largest difference (BLAS rounding)
        "ids_equal_to_model_recommend": bool(
            np.array_equal(ref_ids, our_ids[sample]) and np.array_equal(ref_ids, our_sample_ids)
        ),
        "scores_bit_for_bit": bool(
            np.array_equal(ref_scores.view(np.int32), our_sample_scores.view(np.int32))
        ),
        "scores_max_abs_difference": _max_difference(ref_scores, our_sample_scores),
    }
    if their is None:
        return result
    their_ids, their_scores = their[0][sample], their[1][sample]
    same_rows = np.all(their_ids == ref_ids, axis=1)
    # implicit orders tied scores by the larger id first: re-sort its lists our way.
    order = np.lexsort((their_ids, -their_scores), axis=-1)
    resorted = np.take_along_axis(their_ids, order, axis=1)
    same_after_ties = np.all(resorted == ref_ids, axis=1)
    same_sets = np.array([set(a) == set(b) for a, b in zip(their_ids, ref_ids, strict=True)])
    result["implicit_scores_max_abs_difference"] = _max_difference(
        np.sort(their_scores, axis=1), np.sort(ref_scores, axis=1)
    )
    result.update(
        implicit_identical_rows=round(float(same_rows.mean()), 4),
        implicit_identical_after_tie_order=round(float(same_after_ties.mean()), 4),
        implicit_same_item_sets=round(float(same_sets.mean()), 4),
    )
    return result


def _max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference of two score tables (padding compared as equal)."""
    finite = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0


def large_run(args, threads: int) -> dict:
    """``batch_recommend`` once on random factors (users x items), 10 liked items per user,
    between two measures of the numpy reference rate."""
    rng = np.random.default_rng(args.seed)
    n_users, n_items, factors = args.large_users, args.large_items, args.factors
    model = ALSRecommender(factors=factors)
    model.n_users_, model.n_items_ = n_users, n_items
    model.user_factors_ = rng.standard_normal((n_users, factors), dtype=np.float32)
    model.item_factors_ = rng.standard_normal((n_items, factors), dtype=np.float32)
    per_user = 10
    liked = sp.csr_matrix(
        (
            np.ones(n_users * per_user, dtype=np.float32),
            rng.integers(0, n_items, n_users * per_user, dtype=np.int32),
            np.arange(0, n_users * per_user + 1, per_user),
        ),
        shape=(n_users, n_items),
    )
    liked.sum_duplicates()
    reference = MatmulReference(_comparable_rows(n_items), n_items, factors)
    before = reference.gflops()
    stats, _ = run_ours(model, liked, args, threads)
    after = reference.gflops()
    numpy_gflops = (before["all_blas_threads"] + after["all_blas_threads"]) / 2
    return {
        "users": n_users,
        "items": n_items,
        "factors": factors,
        "data": "random standard-normal factors, 10 random liked items per user",
        "seconds": round(stats.wall_seconds, 1),
        "users_per_second": round(n_users / stats.wall_seconds),
        "product_thread_seconds": round(stats.product_seconds, 1),
        "selection_thread_seconds": round(stats.selection_seconds, 1),
        "selection_over_product": round(stats.selection_seconds / stats.product_seconds, 3),
        "product_gflops": round(stats.product_gflops, 1),
        "numpy_matmul": {
            "shape": reference.shape,
            "gflops_all_blas_threads": round(numpy_gflops, 1),
            "before_after": [
                round(before["all_blas_threads"], 1),
                round(after["all_blas_threads"], 1),
            ],
        },
        "product_share_of_numpy": round(stats.product_gflops / numpy_gflops, 3),
        "block_users": stats.block_rows,
        "full_sort_rows": stats.full_sort_rows,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    args = _parse()
    threads = args.threads or default_threads()
    result: dict = {
        "machine": {
            "cpu_cores": default_threads(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "blas": [
                f"{i['internal_api']} {i['version']} {i.get('architecture', '')}"
                for i in threadpool_info()
                if i["user_api"] == "blas"
            ],
        },
        "N": args.N,
        "repeats": args.repeats,
    }
    matrix, result["data"] = _load(args)
    _log(f"data: {result['data']}")

    began = time.perf_counter()
    model = ALSRecommender(factors=args.factors, iterations=args.iterations, random_state=0)
    model.fit(matrix)
    result["als"] = {
        "factors": args.factors,
        "iterations": args.iterations,
        "fit_seconds": round(time.perf_counter() - began, 1),
    }
    _log(f"ALS fitted: {result['als']}")

    summary, our_ids, their = rounds(model, matrix, args, threads)
    result.update(summary)
    _log(f"summary: { {k: v for k, v in summary.items() if k != 'rounds'} }")

    result["agreement"] = agreement(model, matrix, our_ids, their, args)
    _log(f"agreement: {result['agreement']}")

    stats = ScoringStats()
    began = time.perf_counter()
    batch_similar_items(model, K=args.similar_k, threads=threads, stats=stats)
    result["similar_items"] = {
        "K": args.similar_k,
        "items": matrix.shape[1],
        "seconds": round(time.perf_counter() - began, 2),
        "selection_over_product": round(stats.selection_seconds / stats.product_seconds, 3),
    }
    _log(f"batch_similar_items: {result['similar_items']}")
    result["peak_rss_mb"] = round(peak_rss_mb())

    if args.large_users:
        result["large"] = large_run(args, threads)
        _log(f"large run: {result['large']}")

    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
