"""In-process cost of one request: /v1/recommendations against /healthz, no HTTP server.

Calls the Flask app's WSGI entry directly (no gunicorn, no sockets to a
client), so that what the recommendation path itself costs is measured
without the server's share. Known customers rotate as in
``bench_serving.py``. Two modes:

- ``time`` (default): process CPU time per request of each endpoint,
  interleaved, median of ``--repeats`` passes, and their ratio;
- ``--breakdown``: also the engine's parts alone, each in a tight loop of its
  own over the same customers (process CPU per call, median of the passes):
  the request pipeline (``RedisGateway.fetch`` of MGET + GET + ZRANGE +
  SMEMBERS), ``Engine.recommend`` whole, and, where the code has
  ``serving.params.Query``, parsing and validating the query in a request
  context (the bare context subtracted);
- ``--stages``: also the reference endpoints of ``round_trip_server.py``, which
  answer a recommendation's body after doing only part of its work: nothing
  (``static``), parsing the query (``parse``), parsing and the Redis pipeline
  (``round_trip``); the differences between them split a recommendation's cost;
- ``--instructions``: instructions per request (callgrind) instead of CPU time,
  repeatable whatever else the machine does: the script runs itself under
  ``valgrind --tool=callgrind`` with instrumentation off, switches it on only
  around each endpoint's ``--requests`` requests (``callgrind_control``) and
  divides each part's total by the requests;
- ``--only rec|health``: just run ``--requests`` requests of one endpoint
  after a warm-up (e.g. under a profiler);
- ``--visitors session``: recommendations for anonymous visitors instead of
  known customers, each with ``--session-items`` items of the catalog
  (seeded draw) in ``session_items`` and a known customer's country.

By default a private ``redis-server`` is started and the data directory's
champion published into it (as ``bench_serving.py`` does); ``--redis-url``
reads an already published snapshot (prefix ``bench``) instead::

    python benchmarks/bench_request_cost.py --data /tmp/shop --json
    python benchmarks/bench_request_cost.py --data /tmp/shop --stages --instructions \\
        --requests 1000 --json
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import PREFIX, known_customers, recsys, start_redis  # noqa: E402
from round_trip_server import build_app  # noqa: E402

#: The reference endpoints of ``--stages``, in order of the work they do.
STAGES = {"static": "/bench/static", "parse": "/bench/parse", "round_trip": "/bench/round-trip"}


def environ(path: str, query: str) -> dict:
    """A minimal WSGI environ for a GET."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def serve_all(app, environs: list[dict], count: int) -> None:
    """``count`` requests through ``app``, cycling over ``environs``; bodies read and dropped."""

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise RuntimeError(f"bench request failed: {status}")

    for i in range(count):
        env = dict(environs[i % len(environs)])
        env["wsgi.input"] = io.BytesIO()
        b"".join(app.wsgi_app(env, start_response))


def cpu_per_request_us(app, environs: list[dict], count: int) -> float:
    started = time.process_time()
    serve_all(app, environs, count)
    return (time.process_time() - started) / count * 1e6


def _median_us(call, count: int, repeats: int) -> float:
    passes = []
    for _ in range(repeats):
        started = time.process_time()
        for i in range(count):
            call(i)
        passes.append((time.process_time() - started) / count * 1e6)
    return round(statistics.median(passes), 1)


def breakdown(app, customers: list[tuple[str, str]], recs: list[dict], args) -> dict:
    """CPU per call of the engine's parts, each alone in a tight loop."""
    from serving.engine import Placement, Visitor

    engine = app.extensions["recsys"]
    keys, version = engine.keys, engine.snapshot.version
    pipelines = [
        [
            ("MGET", keys.current, keys.rules_generation),
            ("GET", keys.user(version, user)),
            ("ZRANGE", keys.recent_views(user), 0, 4, "REV"),
            ("SMEMBERS", keys.bought(user)),
        ]
        for user, _ in customers
    ]
    asks = [(Visitor(user_id=user), Placement(country, 10)) for user, country in customers]
    n, count, repeats = len(customers), args.requests, args.repeats
    out = {
        "redis_pipeline": _median_us(
            lambda i: engine.gateway.fetch(pipelines[i % n]), count, repeats
        ),
        "engine_recommend": _median_us(lambda i: engine.recommend(*asks[i % n]), count, repeats),
    }
    try:
        from serving.params import Query
    except ImportError:  # older code: no Query
        return out
    from flask import request

    contexts = [app.test_request_context(f"/v1/recommendations?{e['QUERY_STRING']}") for e in recs]

    def bare(i):
        with contexts[i % n]:
            pass

    def parse(i):
        with contexts[i % n]:
            query = Query.from_environ(request.environ, engine.config)
            Visitor(
                user_id=query.one_id("user_id"),
                session_id=query.one_id("session_id"),
                session_items=query.id_list("session_items"),
                exclude=query.id_list("exclude"),
            )
            Placement(query.country(), query.count(), query.category())

    out["query_parameters"] = round(
        _median_us(parse, count, repeats) - _median_us(bare, count, repeats), 1
    )
    return out


def session_queries(data: Path, customers: list[tuple[str, str]], n_items: int) -> list[str]:
    """One anonymous visitor per customer: ``n_items`` catalog items (seeded draw) as
    the session, in the customer's country."""
    import numpy as np

    from recsys.data.store import DataStore

    items = np.sort(DataStore(data).read("items", columns=["item_id"])["item_id"].to_numpy())
    rng = np.random.default_rng(0)
    queries = []
    for _, country in customers:
        seen = ",".join(rng.choice(items, size=min(n_items, len(items)), replace=False))
        queries.append(f"session_items={seen}&country={country}&n=10")
    return queries


def instructions_per_request(argv: list[str], requests: int) -> dict[str, int]:
    """Run this script again under callgrind (``--in-callgrind``); instructions per
    request of every endpoint it measured there."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("--instructions needs valgrind (apt-get install -y valgrind)")
    out_dir = Path(tempfile.mkdtemp(prefix="bench-cost-cg-"))
    try:
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out_dir}/callgrind.%p",
                sys.executable,
                *argv,
                "--in-callgrind",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        counts = {}
        for dump in out_dir.glob("callgrind.*.*"):
            text = dump.read_text(errors="replace")
            name = re.search(r"^desc: Trigger: dump (\S+)", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if name and total:
                counts[name.group(1)] = round(int(total.group(1)) / requests)
        return counts
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def callgrind_parts(app, endpoints: dict[str, list[dict]], requests: int) -> None:
    """Inside callgrind: instrument each endpoint's requests alone, one dump each."""

    def control(*args: str) -> None:
        command = ["callgrind_control", *args, str(os.getpid())]
        subprocess.run(command, check=True, capture_output=True)

    for name, environs in endpoints.items():
        control("-i", "on")
        serve_all(app, environs, requests)
        control("-i", "off")
        control("-d", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Data directory with a champion model.")
    parser.add_argument("--redis-url", help="A Redis already holding the published snapshot.")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=2_000, help="Per pass and endpoint.")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=("rec", "health"), help="Run one endpoint only.")
    parser.add_argument(
        "--visitors",
        choices=("known", "session"),
        default="known",
        help="Known customers, or anonymous visitors with session items [known].",
    )
    parser.add_argument("--session-items", type=int, default=3, help="Per session visitor [3].")
    parser.add_argument("--breakdown", action="store_true", help="Time the engine's parts too.")
    parser.add_argument(
        "--stages", action="store_true", help="Also the reference endpoints (see above)."
    )
    parser.add_argument(
        "--instructions", action="store_true", help="Count instructions (callgrind), not CPU."
    )
    parser.add_argument("--in-callgrind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.visitors == "session" and (args.breakdown or args.stages):
        parser.error("--breakdown and --stages measure known customers only")

    data = Path(args.data)
    server = None
    url = args.redis_url
    if url is None:
        server, url = start_redis(Path(tempfile.mkdtemp(prefix="bench-cost-")), unix=True)
        env = {**os.environ, "REDIS_URL": url, "RECSYS_REDIS_PREFIX": PREFIX}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        recsys("--data", str(data), "publish", "--quiet", "--json", env=env)
    try:
        os.environ.update(REDIS_URL=url, RECSYS_REDIS_PREFIX=PREFIX)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if args.instructions and not args.in_callgrind:
            argv = [a for a in sys.argv if a != "--json"] + ["--redis-url", url]
            counts = instructions_per_request(argv, args.requests)
            out = {"requests": args.requests, "instructions_per_request": counts}
            if "healthz" in counts and "recommendations" in counts:
                out["extra_over_healthz"] = counts["recommendations"] - counts["healthz"]
            print(json.dumps(out, indent=2) if args.json else out)
            return
        customers = sorted(known_customers(url, data, args.customers))
        queries = [f"user_id={u}&country={c}&n=10" for u, c in customers]
        if args.visitors == "session":
            queries = session_queries(data, customers, args.session_items)
        recs = [environ("/v1/recommendations", q) for q in queries]
        endpoints = {"healthz": [environ("/healthz", "")], "recommendations": recs}
        app = build_app(data)
        if args.stages:  # the reference endpoints answer a real recommendation's body
            body = b"".join(app.wsgi_app(dict(recs[0]), lambda *a: None)).decode()
            app = build_app(data, body)
            for name, path in STAGES.items():
                endpoints[name] = [environ(path, q) for q in queries]
        gc.collect()
        gc.freeze()  # as recsys serve does before it forks: the loaded snapshot is never scanned
        for environs in endpoints.values():  # warm-up: snapshot tables, JSON fragments
            serve_all(app, environs, len(environs))
        if args.in_callgrind:
            callgrind_parts(app, endpoints, args.requests)
            return
        if args.only:
            serve_all(
                app,
                endpoints["recommendations" if args.only == "rec" else "healthz"],
                args.requests,
            )
            return
        cpu: dict[str, list[float]] = {name: [] for name in endpoints}
        for _ in range(args.repeats):
            for name, environs in endpoints.items():
                cpu[name].append(cpu_per_request_us(app, environs, args.requests))
        medians = {name: statistics.median(values) for name, values in cpu.items()}
        rec, healthz = medians["recommendations"], medians["healthz"]
        out = {
            "customers": len(recs),
            "requests_per_pass": args.requests,
            "repeats": args.repeats,
            "recommendations_cpu_us": round(rec, 1),
            "healthz_cpu_us": round(healthz, 1),
            "extra_us": round(rec - healthz, 1),
            "cpu_ratio": round(healthz / rec, 3),
            "load_average": os.getloadavg(),
        }
        if args.stages:
            out["stages_cpu_us"] = {name: round(medians[name], 1) for name in STAGES}
        if args.breakdown:
            out["breakdown_us"] = breakdown(app, customers, recs, args)
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            print(
                f"recommendations {rec:.0f} µs, /healthz {healthz:.0f} µs per request "
                f"(process CPU, median of {args.repeats}); ratio {healthz / rec:.3f}"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
