"""Cold slice of the synthetic shop in one command: new customers, LightFM against popularity.

Generates the shop of docs/benchmarks.md ("customers with no history") into a
scratch data directory (or uses ``--data``), then, at each cut-off, trains
every variant exactly as ``recsys train`` does (``training.train.train``:
one MLflow run each, in the data directory's own store) and compares each
one's per-user cold NDCG@10 (``reports/cold_users_per_user.csv``) with the
baseline's (``popular --set by=country``) by a paired bootstrap (2,000
resamples, 95 % interval). Variants that take a ``random_state`` run once
per seed.

    python benchmarks/bench_cold.py --scratch /tmp/cold-shop --json
    python benchmarks/bench_cold.py --data /tmp/cold-shop --cutoffs 2024-04-29 \\
        --variants popular-by-country,lightfm-tuned --seeds 0

The default cut-offs are the validation one (2024-04-29) and the test one
(``test``: last event minus 30 days, 2024-05-29 for the default shop).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

#: The tuned LightFM line of docs/benchmarks.md: 10 epochs, user rows normalised,
#: profile-only rows, 30-day-decayed sample weights with equal event-type weights.
LIGHTFM_TUNED = [
    "epochs=10",
    "normalize_features=users",
    "profile_rows=1.0",
    "sample_weights=true",
    "data.half_life_days=30",
    "data.weights.add_to_cart=1",
    "data.weights.purchase=1",
    "data.weights.refund=-1",
]

#: name -> (model, the ``--set`` values of ``recsys train``); the first one is the baseline.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "popular-by-country": ("popular", ["by=country"]),
    "trending-by-country": ("popular", ["by=country", "half_life_days=14"]),
    "lightfm-defaults": ("lightfm", []),
    "lightfm-tuned": ("lightfm", LIGHTFM_TUNED),
    "lightfm-tuned-profile-14d": ("lightfm", [*LIGHTFM_TUNED, "profile_half_life_days=14"]),
    "lightfm-tuned-demand": ("lightfm", [*LIGHTFM_TUNED, "new_users=demand"]),
    "lightfm-tuned-demand-vectors": (
        "lightfm",
        [*LIGHTFM_TUNED, "new_users=demand", "demand_item_features=false"],
    ),
}
DEFAULT_VARIANTS = (
    "popular-by-country",
    "trending-by-country",
    "lightfm-tuned",
    "lightfm-tuned-profile-14d",
    "lightfm-tuned-demand",
    "lightfm-tuned-demand-vectors",
)
SEEDED = {"lightfm"}


def generate(target: Path, users: int, items: int, days: int, seed: int) -> None:
    """The synthetic shop, unless ``target`` already holds events."""
    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop

    store = DataStore(target)
    if store.has("events"):
        print(f"{target} already holds a shop: using it", file=sys.stderr)
        return
    generate_shop(store, users=users, items=items, days=days, seed=seed)


def run_cutoff(
    data_dir: Path,
    cutoff: str | None,
    variants: list[str],
    seeds: list[int],
    against: list[str] = (),
):
    """Train every variant (every seed) at one cut-off; rows with the paired differences
    against the baseline (the first variant) and against each of ``against`` (the run
    of the same seed, or the unseeded one)."""
    import mlflow
    import pandas as pd

    from recsys.data.store import DataStore
    from recsys.protocols import load_protocol
    from training.params import parse_sets
    from training.tracking import open_tracking
    from training.train import COLD_PER_USER_FILE, train

    tracking = open_tracking(data_dir)
    rows = []
    with DataStore(data_dir).pinned() as store:
        data = load_protocol(store, "temporal", cutoff=cutoff)
        split = {
            "cutoff": str(data.params.get("cutoff")),
            "cold_users": int((data.cold_test.getnnz(axis=1) > 0).sum()),
            "cold_purchases": int(data.cold_test.nnz),
        }
        print(f"cut-off {split}", file=sys.stderr, flush=True)
        for name in variants:
            model, sets = VARIANTS[name]
            for seed in seeds if model in SEEDED else [None]:
                values = parse_sets(sets if seed is None else [*sets, f"random_state={seed}"])
                started = time.perf_counter()
                summary = train(
                    data_dir, model, values, data=data, store=store, tracking=tracking,
                    progress=False,
                )  # fmt: skip
                path = mlflow.artifacts.download_artifacts(
                    run_id=summary["run_id"], artifact_path=f"reports/{COLD_PER_USER_FILE}"
                )
                rows.append(
                    {
                        "variant": name,
                        "seed": seed,
                        "run_id": summary["run_id"],
                        "cold_ndcg@10": summary["metrics_cold_users"]["ndcg@10"],
                        "cold_hit@10": summary["metrics_cold_users"].get("hit_rate@10"),
                        "known_ndcg@10": summary["metrics"]["ndcg@10"],
                        "fit_seconds": summary.get("fit_seconds"),
                        "seconds": round(time.perf_counter() - started, 1),
                        "per_user": pd.read_csv(path),
                    }
                )
                print(
                    f"  {name} seed={seed}: cold {rows[-1]['cold_ndcg@10']:.4f} "
                    f"known {rows[-1]['known_ndcg@10']:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    pair_rows(rows, against)
    return {"split": split, "rows": rows}


def pair_rows(rows: list[dict], against: list[str]) -> None:
    """Add ``vs_baseline`` (against the first row) and ``vs`` (against each variant of
    ``against``, same seed) to every row; drops the rows' per-user tables."""
    from recsys.evaluation.compare import paired_bootstrap, paired_metric

    def diff(a, b) -> dict:
        d = paired_bootstrap(*paired_metric(a, b))
        return {"mean": d.mean, "low": d.low, "high": d.high}

    baseline = rows[0]["per_user"]
    for row in rows:
        row["vs_baseline"] = diff(row["per_user"], baseline)
        row["vs"] = {}
        for other in against:
            refs = [r for r in rows if r["variant"] == other and r["seed"] in (row["seed"], None)]
            if refs and other != row["variant"]:
                row["vs"][other] = diff(row["per_user"], refs[0]["per_user"])
    for row in rows:
        row.pop("per_user")


def table(result: dict, baseline: str) -> str:
    """Markdown: one line per variant and seed."""
    lines = [
        f"| variant | seed | cold NDCG@10 | − {baseline} (95 % interval) | known NDCG@10 | fit s |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for row in result["rows"]:
        d = row["vs_baseline"]
        lines.append(
            f"| {row['variant']} | {'' if row['seed'] is None else row['seed']} "
            f"| {row['cold_ndcg@10']:.4f} | {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
            f"| {row['known_ndcg@10']:.4f} | {row['fit_seconds'] or 0:.0f} |"
        )
    for variant in dict.fromkeys(row["variant"] for row in result["rows"]):
        runs = [row for row in result["rows"] if row["variant"] == variant]
        if len(runs) > 1:
            cold = sum(row["cold_ndcg@10"] for row in runs) / len(runs)
            known = sum(row["known_ndcg@10"] for row in runs) / len(runs)
            lines.append(f"| {variant} | mean of {len(runs)} | {cold:.4f} | | {known:.4f} | |")
    pairs = [
        f"| {row['variant']} − {other} | {'' if row['seed'] is None else row['seed']} "
        f"| {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] |"
        for row in result["rows"]
        for other, d in row.get("vs", {}).items()
    ]
    if pairs:
        lines += ["", "| difference | seed | mean (95 % interval) |", "|---|---:|---|", *pairs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data", help="a data dir that already holds the shop")
    where.add_argument("--scratch", help="generate the shop here (kept) [a temp dir]")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--shop-seed", type=int, default=0)
    parser.add_argument(
        "--cutoffs", default="2024-04-29,test", help="comma-separated; 'test' = last event - 30 d"
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, the first is the baseline; of {', '.join(VARIANTS)}",
    )
    parser.add_argument("--seeds", default="0,1,2", help="random_state of the seeded models")
    parser.add_argument(
        "--against",
        default="trending-by-country,lightfm-tuned",
        help="comma-separated variants every other one is also paired against (same seed)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    against = [v for v in args.against.split(",") if v in variants]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    cutoffs = [None if c == "test" else c for c in args.cutoffs.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        data_dir = Path(args.data or args.scratch or tmp)
        if not args.data:
            generate(data_dir, args.users, args.items, args.days, args.shop_seed)
        results = {
            str(c or "test"): run_cutoff(data_dir, c, variants, seeds, against) for c in cutoffs
        }
    if args.json:
        print(json.dumps({"variants": {v: VARIANTS[v] for v in variants}, "cutoffs": results}))
        return
    for cutoff, result in results.items():
        print(f"\n## cut-off {cutoff}: {result['split']}\n")
        print(table(result, variants[0]))


if __name__ == "__main__":
    main()
