"""A reference server for bench_serving: the API plus one endpoint that only does
a recommendation's Redis round trip.

``GET /bench/round-trip?user_id=&country=&n=`` parses the query as
``/v1/recommendations`` does, sends the same pipeline (``MGET current
rules-generation``, the customer's candidates, recent views, items bought)
through the same engine, and answers a static JSON list: what a recommendation
costs before any list is built or rendered. gunicorn runs it with the settings
of ``recsys serve`` (sync workers, app loaded before the fork, GC frozen,
multiprocess metrics), so its throughput beside ``/healthz`` and
``/v1/recommendations`` shows how the cost of a recommendation splits.

    python benchmarks/round_trip_server.py --data DIR --port P --workers W

(``REDIS_URL`` and ``RECSYS_REDIS_PREFIX`` name the Redis holding the snapshot.)
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
from pathlib import Path


def build_app(data: Path, body: str = '{"items":[]}'):
    """The API app with the reference endpoints added, each answering ``body``:

    - ``/bench/static``: nothing but the answer;
    - ``/bench/parse``: parses and validates the query as ``/v1/recommendations``;
    - ``/bench/round-trip``: that, plus the recommendation's Redis pipeline.
    """
    from flask import Response, request

    from serving.app import create_app
    from serving.config import ServingConfig
    from serving.params import Query

    app = create_app(ServingConfig.from_env(data))
    engine = app.extensions["recsys"]
    keys = engine.keys
    last = max(engine.config.session_seeds - 1, 0)

    def parse() -> str | None:
        query = Query.from_environ(request.environ, engine.config)
        user = query.one_id("user_id")
        query.one_id("session_id"), query.id_list("session_items"), query.id_list("exclude")
        query.country(), query.count(), query.category()
        return user

    @app.get("/bench/static")
    def static_answer():
        return Response(body, mimetype="application/json")

    @app.get("/bench/parse")
    def parse_only():
        parse()
        return Response(body, mimetype="application/json")

    @app.get("/bench/round-trip")
    def round_trip():
        user = parse()

        def commands(snap):
            return [
                ("GET", keys.user(snap.version, user)),
                ("ZRANGE", keys.recent_views(user), 0, last, "REV"),
                ("SMEMBERS", keys.bought(user)),
            ]

        engine._fetch(commands)
        return Response(body, mimetype="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--workers", required=True, type=int)
    args = parser.parse_args()
    metrics_dir = tempfile.mkdtemp(prefix="bench-rt-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # as recsys serve does
    owner = os.getpid()
    try:
        app = build_app(args.data)
        from serving.gunicorn_app import run_gunicorn

        gc.collect()
        gc.freeze()
        run_gunicorn(
            app, {"bind": f"127.0.0.1:{args.port}", "workers": args.workers, "timeout": 30}
        )
    finally:
        if os.getpid() == owner:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
