"""The serving API: a thin Flask app over the snapshots in Redis.

``create_app(config)`` builds it; ``recsys serve`` runs it under gunicorn.
It never imports ``training/``. Names are imported lazily, so that
``recsys serve`` can configure the metrics library before it loads.
"""

from __future__ import annotations

__all__ = ["ServingConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from serving.app import create_app

        return create_app
    if name == "ServingConfig":
        from serving.config import ServingConfig

        return ServingConfig
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
