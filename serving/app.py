"""The Flask app factory."""

from __future__ import annotations

import logging

from flask import Flask

from serving.api import admin, events, health, lists
from serving.config import ServingConfig
from serving.engine import Engine
from serving.errors import register_error_handlers
from serving.gateway import RedisGateway, check_redis_version
from serving.metrics import Metrics
from serving.openapi import bp as openapi_bp
from serving.rules import load_rules_file

log = logging.getLogger(__name__)


def create_app(config: ServingConfig | None = None, warm_up: bool = True) -> Flask:
    """The API over the configured Redis; ``config`` defaults to ``ServingConfig.from_env()``
    of ``$RECSYS_DATA_DIR``. With ``warm_up`` the current snapshot is loaded now when
    Redis answers (else on the first request). A Redis that answers and is older than
    the request path needs raises ``ValueError``."""
    if config is None:
        from recsys.config import data_dir

        config = ServingConfig.from_env(data_dir())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    app.json.compact = True
    metrics = Metrics()
    file_rules = load_rules_file(config.rules_file) if config.rules_file else {}
    gateway = RedisGateway.from_config(config)
    check_redis_version(gateway.client)
    engine = Engine(config, gateway, metrics, file_rules)
    app.extensions["recsys"] = engine
    metrics.init_app(app)
    register_error_handlers(app)
    for blueprint in (lists.create_blueprint(engine), events.bp, admin.bp, health.bp, openapi_bp):
        app.register_blueprint(blueprint)
    if warm_up and not engine.warm_up():
        log.warning("no snapshot loaded at start (Redis down or nothing published yet)")
    return app
