"""Two versions of the serving code side by side: which has the better throughput ratio?

On a shared machine the ratio of ``bench_serving.py`` (recommendations /
``/healthz``) moves by several hundredths from one run to the next, more than
most single changes to the request path are worth. This script runs both
versions at once, against one private ``redis-server`` holding one published
snapshot: two ``recsys serve`` servers with the same settings, ``base`` with
``PYTHONPATH`` pointing at another checkout (e.g. ``git worktree add
/tmp/base HEAD~1``), ``new`` with this one. Each repeat measures, back to
back and in an order that rotates, the max throughput of both endpoints on
both servers (``wrk -t1 -c16``, ``--seconds`` each), so that both versions
see the same machine at nearly the same moments.

Reported per version: median requests per second of each endpoint, the ratio
of the medians, the ratios of every repeat; and the paired difference of the
repeat ratios (new - base): median, how many repeats favour ``new``, and a
95 % bootstrap interval of the mean difference
(``recsys.evaluation.compare.paired_bootstrap``)::

    git worktree add /tmp/base <commit>
    python benchmarks/bench_serving_ab.py --data shop --base /tmp/base --repeats 16 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import (  # noqa: E402
    ENDPOINT,
    PREFIX,
    free_port,
    known_customers,
    recsys,
    run_wrk,
    start_redis,
    start_server,
    wrk_script,
)

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Data directory with a champion model.")
    parser.add_argument("--base", required=True, type=Path, help="Checkout of the base code.")
    parser.add_argument("--workers", type=int, default=None, help="[recsys serve's default]")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Per wrk run.")
    parser.add_argument("--repeats", type=int, default=16)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.base / "serving" / "app.py").is_file():
        sys.exit(f"--base {args.base}: not a checkout of this project (no serving/app.py)")
    if not shutil.which("wrk") or not shutil.which("redis-server"):
        sys.exit("needs wrk and redis-server on PATH (apt-get install -y wrk redis-server)")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-ab-"))
    redis_proc, url = start_redis(work, unix=True)
    servers = []
    try:
        env = {**os.environ, "REDIS_URL": url, "RECSYS_REDIS_PREFIX": PREFIX}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        recsys("--data", args.data, "publish", "--quiet", "--json", env=env)
        customers = known_customers(url, Path(args.data), args.customers)
        paths = [f"{ENDPOINT}?user_id={u}&country={c}&n=10" for u, c in customers]
        scripts = {"rec": wrk_script(paths, work)}
        health_dir = work / "healthz"
        health_dir.mkdir()
        scripts["health"] = wrk_script(["/healthz"], health_dir)
        bases = {}
        for name, code in (("base", args.base.resolve()), ("new", HERE)):
            port = free_port()
            bases[name] = f"http://127.0.0.1:{port}"
            serve = ["-m", "recsys", "--data", args.data, "serve", "--port", str(port)]
            if args.workers:
                serve += ["--workers", str(args.workers)]
            servers.append(start_server(serve, {**env, "PYTHONPATH": str(code)}, bases[name]))
        runs = [(name, which) for name in ("base", "new") for which in ("rec", "health")]
        for name, which in runs:  # warm-up
            run_wrk(bases[name], "/", scripts[which], args.connections, 1)
        rps = {run: [] for run in runs}
        non_2xx = 0
        for repeat in range(args.repeats):
            shift = repeat % len(runs)
            order = runs[shift:] + runs[:shift]
            if repeat % 2:
                order.reverse()
            for name, which in order:
                got = run_wrk(bases[name], "/", scripts[which], args.connections, args.seconds)
                rps[(name, which)].append(got["rps"])
                non_2xx += got["non_2xx"]
        report = summarize(rps, args, non_2xx)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in ("base", "new"):
            got = report[name]
            print(
                f"{name}: recommendations {got['recommendations_rps_median']:.0f} req/s, "
                f"/healthz {got['healthz_rps_median']:.0f} req/s, ratio {got['ratio']:.3f}"
            )
        diff = report["new_minus_base"]
        print(
            f"new - base, per repeat: median {diff['median']:+.3f}, mean {diff['mean']:+.3f} "
            f"95% [{diff['mean_ci95'][0]:+.3f}, {diff['mean_ci95'][1]:+.3f}], "
            f"new ahead in {diff['new_ahead']} of {args.repeats}"
        )


def summarize(rps: dict, args, non_2xx: int) -> dict:
    """Medians, ratios and the paired difference of the per-repeat ratios."""
    out: dict = {"data": args.data, "base": {}, "new": {}, "repeats": args.repeats}
    ratios = {}
    for name in ("base", "new"):
        rec, health = np.array(rps[(name, "rec")]), np.array(rps[(name, "health")])
        ratios[name] = rec / health
        out[name] = {
            "recommendations_rps_median": round(statistics.median(rec), 1),
            "healthz_rps_median": round(statistics.median(health), 1),
            "ratio": round(statistics.median(rec) / statistics.median(health), 3),
            "ratio_per_repeat": [round(float(r), 3) for r in ratios[name]],
        }
    from recsys.evaluation.compare import paired_bootstrap

    diff = ratios["new"] - ratios["base"]
    paired = paired_bootstrap(ratios["new"], ratios["base"])
    out["new_minus_base"] = {
        "median": round(float(np.median(diff)), 3),
        "mean": round(paired.mean, 3),
        "mean_ci95": [round(paired.low, 3), round(paired.high, 3)],
        "new_ahead": int((diff > 0).sum()),
    }
    out["workers"] = args.workers or "recsys serve's default"
    out["seconds_per_run"] = args.seconds
    out["non_2xx"] = non_2xx
    return out


if __name__ == "__main__":
    main()
