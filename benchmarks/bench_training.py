"""Every training benchmark of docs/benchmarks.md in one command, checked against its target.

Runs, each in its own process and each writing its JSON summary into
``--out``:

1. ``bench_quality.py`` on Online Retail and MovieLens 100K, with the ALS fit
   overhead (3 runs) and each model's training memory -> ``quality.json``;
2. ``bench_cold.py`` on the generated shop (kept under ``--out``) ->
   ``cold.json``;
3. ``bench_bound.py`` on both datasets -> ``bound.json``.

Then prints one line per target of the training issue: the figure measured,
the target and whether it is met.

    python benchmarks/bench_training.py \\
        --retail-source ../shared/data/online_retail/online_retail.csv.gz \\
        --movielens-source ../shared/data/ml-100k --out bench-training
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: bench_cold's variant that the cold-slice target is about (LightFM, new_users=demand)
COLD_MODEL = "lightfm-tuned-demand"


def run(script: str, arguments: list[str], out: Path, reuse: bool = False) -> dict:
    """Run ``benchmarks/script`` with ``--json``; keep its summary in ``out`` (with
    ``reuse``, read the summary ``out`` already holds instead)."""
    if reuse and out.is_file():
        print(f"== {script}: the summary in {out}", file=sys.stderr, flush=True)
        return json.loads(out.read_text())
    command = [sys.executable, str(HERE / script), *arguments, "--json"]
    print(f"== {script} {' '.join(arguments)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{script} failed (exit {done.returncode}); its output is above")
    out.write_text(done.stdout)
    print(f"   {time.perf_counter() - started:.0f} s -> {out}", file=sys.stderr, flush=True)
    return json.loads(done.stdout)


def targets(quality: dict, cold: dict, bound: dict) -> list[dict]:
    """One row per target: what was measured, the target, met or not."""

    def row(name: str, model: str) -> dict:
        return next(r for r in quality[name]["rows"] if r["model"] == model)

    retail, movielens = row("retail", "ranker"), row("movielens", "blend")
    out = [
        ("Online Retail NDCG@10, all items (ranker)", retail["ndcg@10"], 0.40),
        ("Online Retail NDCG@10, new items (ranker)", retail["new_items_ndcg@10"], 0.12),
        ("MovieLens NDCG@10 (blend)", movielens["ndcg@10"], 0.50),
        ("MovieLens precision@10 (blend)", movielens["precision@10"], 0.44),
    ]
    rows = [{"target": t, "measured": m, "at_least": goal, "met": m >= goal} for t, m, goal in out]
    for name, label in (("retail", "Online Retail"), ("movielens", "MovieLens")):
        ratio = quality[name]["als_overhead"]["ratio"]
        rows.append(
            {
                "target": f"ALS fit overhead ({label})",
                "measured": ratio,
                "at_most": 1.2,
                "met": ratio <= 1.2,
            }
        )
    for cutoff, result in cold["cutoffs"].items():
        # vs_baseline: against the first variant, popular by country
        lows = [r["vs_baseline"]["low"] for r in result["rows"] if r["variant"] == COLD_MODEL]
        rows.append(
            {
                "target": f"cold slice at {cutoff}: {COLD_MODEL} beats popular per country",
                "measured": lows,
                "met": bool(lows) and all(low > 0 for low in lows),
                "note": "lower ends of the 95 % paired intervals, one per seed",
            }
        )
    for key, found in bound.items():
        rows.append(
            {
                "target": f"{key}: best on the test split over {found['settings_searched']} "
                "settings (upper bound, not a result)",
                "measured": [
                    found["best_by_ndcg"]["ndcg@10"],
                    found["best_by_precision"]["precision@10"],
                ],
                "met": None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retail-source", required=True, help="online_retail.csv.gz")
    parser.add_argument("--movielens-source", required=True, help="the ml-100k folder")
    parser.add_argument("--out", required=True, help="directory for the JSON summaries")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read the summaries already under --out instead of running their scripts again",
    )
    parser.add_argument("--json", action="store_true", help="print the targets as JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = ["--retail-source", args.retail_source, "--movielens-source", args.movielens_source]
    quality = run(
        "bench_quality.py",
        [*sources, "--als-overhead", "3", "--memory"],
        out / "quality.json",
        args.reuse,
    )
    cold = run(
        "bench_cold.py", ["--scratch", str(out / "cold-shop")], out / "cold.json", args.reuse
    )
    bound = run(
        "bench_bound.py",
        [*sources, "--scratch", str(out / "bound")],
        out / "bound.json",
        args.reuse,
    )
    rows = targets(quality, cold, bound)
    (out / "targets.json").write_text(json.dumps(rows, indent=2))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(line(r))


def line(row: dict) -> str:
    """``met      target: figures (target >= x)`` with figures to four decimals."""
    status = {True: "met", False: "NOT met", None: "-"}[row["met"]]
    values = row["measured"] if isinstance(row["measured"], list) else [row["measured"]]
    text = f"{status:8} {row['target']}: {', '.join(f'{v:.4f}' for v in values)}"
    if "at_least" in row:
        text += f" (target >= {row['at_least']})"
    if "at_most" in row:
        text += f" (target <= {row['at_most']})"
    if "note" in row:
        text += f" ({row['note']})"
    return text


if __name__ == "__main__":
    main()
