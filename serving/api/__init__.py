"""The API's blueprints, one per feature."""

from __future__ import annotations

from flask import current_app

from serving.engine import Engine


def engine() -> Engine:
    """The app's recommendation engine."""
    return current_app.extensions["recsys"]
