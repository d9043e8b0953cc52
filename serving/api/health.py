"""Health, readiness and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from serving.api import engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive (no Redis call)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Redis answers and a snapshot is loaded (200 with its version), else 503."""
    eng = engine()
    redis_ok = eng.gateway.ping()
    if redis_ok:
        eng.warm_up()
    snap = eng.snapshot
    ready = redis_ok and snap is not None
    body = {
        "status": "ready" if ready else "unavailable",
        "redis": redis_ok,
        "version": snap.version if snap is not None else None,
    }
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    data, content_type = engine().metrics.exposition()
    return Response(data, content_type=content_type)
