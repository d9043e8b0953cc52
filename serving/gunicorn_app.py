"""Run a ready Flask app under gunicorn (the app is built once, before workers fork)."""

from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication


def _child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class GunicornServer(BaseApplication):
    """gunicorn with settings from a dict and an app object."""

    def __init__(self, app, options: dict):
        self.application = app
        self.options = {k: v for k, v in options.items() if v is not None}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("child_exit", _child_exit)
        self.cfg.set("preload_app", True)
        self.cfg.set("control_socket_disable", True)  # no control socket in $HOME
        if self.options.get("threads", 1) > 1:
            self.cfg.set("worker_class", "gthread")

    def load(self):
        return self.application


def run_gunicorn(app, options: dict) -> None:
    """Serve ``app`` until gunicorn stops (SIGTERM / SIGINT)."""
    GunicornServer(app, options).run()
