"""In-process cost of one request: /v1/recommendations against /healthz, no HTTP server.

Calls the Flask app's WSGI entry directly (no gunicorn, no sockets to a
client), so that what the recommendation path itself costs is measured
without the server's share. Known customers rotate as in
``bench_serving.py``. Two modes:

- ``time`` (default): process CPU time per request of each endpoint,
  interleaved, median of ``--repeats`` passes, and their ratio;
- ``--breakdown``: also the engine's parts alone, each in a tight loop of its
  own over the same customers (process CPU per call, median of the passes):
  the request pipeline (``RedisGateway.fetch`` of MGET + GET + LRANGE +
  SMEMBERS), ``Engine.recommend`` whole, and, where the code has
  ``serving.params.Query``, parsing and validating the query in a request
  context (the bare context subtracted);
- ``--only rec|health``: just run ``--requests`` requests of one endpoint
  after a warm-up, e.g. under ``valgrind --tool=callgrind`` to count
  instructions (repeatable whatever else the machine does): run it with two
  request counts and divide the difference of the totals by the difference of
  the counts.

By default a private ``redis-server`` is started and the data directory's
champion published into it (as ``bench_serving.py`` does); ``--redis-url``
reads an already published snapshot (prefix ``bench``) instead::

    python benchmarks/bench_request_cost.py --data /tmp/shop --json
    valgrind --tool=callgrind python benchmarks/bench_request_cost.py \\
        --data /tmp/shop --redis-url unix:///tmp/r.sock --only rec --requests 600
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import PREFIX, known_customers, recsys, start_redis  # noqa: E402


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
            ("LRANGE", keys.recent_views(user), 0, 4),
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
            query = Query.of(request, engine.config)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Data directory with a champion model.")
    parser.add_argument("--redis-url", help="A Redis already holding the published snapshot.")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=2_000, help="Per pass and endpoint.")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=("rec", "health"), help="Run one endpoint only.")
    parser.add_argument("--breakdown", action="store_true", help="Time the engine's parts too.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

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
        from serving.app import create_app
        from serving.config import ServingConfig

        app = create_app(ServingConfig.from_env(data))
        customers = sorted(known_customers(url, data, args.customers))
        recs = [
            environ("/v1/recommendations", f"user_id={u}&country={c}&n=10") for u, c in customers
        ]
        health = [environ("/healthz", "")]
        gc.collect()
        gc.freeze()  # as recsys serve does before it forks: the loaded snapshot is never scanned
        serve_all(app, recs, len(recs))  # warm-up: snapshot tables, JSON fragments
        serve_all(app, health, 200)
        if args.only:
            serve_all(app, recs if args.only == "rec" else health, args.requests)
            return
        rec_us, health_us = [], []
        for _ in range(args.repeats):
            rec_us.append(cpu_per_request_us(app, recs, args.requests))
            health_us.append(cpu_per_request_us(app, health, args.requests))
        rec, healthz = statistics.median(rec_us), statistics.median(health_us)
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
