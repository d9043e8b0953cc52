"""``recsys serve``: the API under gunicorn (or Flask's own server with ``--dev``)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile

import click

from recsys.cli.common import UserError, data_dir, existing_data_dir

#: prometheus-client's multiprocess folder (``serving.metrics`` must not load before it is set)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Longest request line gunicorn accepts (bytes); 8190 is the most it allows (0: unlimited).
REQUEST_LINE_MAX = 8190


def check_address(host: str, port: int) -> None:
    """A one-line error when ``host:port`` cannot be listened on (another server holds
    the port, or the host is not an address of this machine), before the snapshot is
    loaded; gunicorn would retry for 5 s and end with exit code 1."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            probe.bind(address)
    except OSError as exc:
        hint = (
            "another server (`recsys serve`?) may hold the port; stop it or pass another --port"
            if exc.errno == errno.EADDRINUSE
            else "check --host"
        )
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): {hint}") from exc


def default_workers() -> int:
    """gunicorn's advice, (2 x cores) + 1 sync workers: while one waits on its Redis
    round trip, another uses the core (measured in docs/benchmarks.md)."""
    return 2 * (os.cpu_count() or 1) + 1


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port."
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    help="gunicorn worker processes [default: 2 x CPUs + 1, gunicorn's own advice].",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Threads per worker (>1 uses gunicorn's gthread worker).",
)
@click.option(
    "--timeout",
    type=click.IntRange(1),
    default=30,
    show_default=True,
    help="gunicorn worker timeout (s).",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON file of pinned / boosted items per market [env RECSYS_RULES_FILE].",
)
@click.option("--dev", is_flag=True, help="Run Flask's development server instead (one process).")
@click.option("--access-log", is_flag=True, help="Log every request (gunicorn access log).")
@click.pass_context
def serve(ctx, host, port, workers, threads, timeout, rules_file, dev, access_log) -> None:
    """Serve /v1/recommendations, similar and popular items, events, health and metrics.

    Reads the snapshot `recsys publish` wrote to Redis ($REDIS_URL, else the
    embedded Redis of the data directory). Write and admin endpoints need the
    header X-API-Key with the key of $RECSYS_API_KEY.
    """
    from recsys.snapshots.connection import REDIS_URL_ENV

    # the embedded Redis lives in the data directory: a mistyped --data is an error
    root = data_dir(ctx) if os.environ.get(REDIS_URL_ENV) else existing_data_dir(ctx)
    check_address(host, port)
    workers = workers or default_workers()
    embedded = None
    if not os.environ.get(REDIS_URL_ENV):
        # the embedded server lives as long as this (master) process; workers use its socket
        from recsys.snapshots.connection import connect

        embedded = connect(root)
        os.environ[REDIS_URL_ENV] = f"unix://{embedded.socket_file}"
    metrics_dir, owner, app = None, os.getpid(), None
    if dev:
        os.environ.pop(MULTIPROC_ENV, None)  # one process: its own registry
    else:
        # multiprocess metrics also with one worker: gunicorn replaces a killed worker (or
        # all, on SIGHUP) by a fork of the master, which would start from the master's
        # counts. A folder of this run's own (in $PROMETHEUS_MULTIPROC_DIR when set): the
        # files of an earlier run, or of another serve sharing that folder, would be summed
        parent = os.environ.get(MULTIPROC_ENV) or tempfile.gettempdir()
        try:
            metrics_dir = tempfile.mkdtemp(prefix="recsys-metrics-", dir=parent)
        except OSError as exc:
            raise UserError(f"{MULTIPROC_ENV}: cannot create a folder in {parent}: {exc}") from exc
        os.environ[MULTIPROC_ENV] = metrics_dir  # before prometheus_client loads
    try:
        from serving.app import create_app
        from serving.config import ServingConfig

        try:
            config = ServingConfig.from_env(root, rules_file=rules_file)
            app = create_app(config)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if dev:
            app.run(host=host, port=port, threaded=True)
            return
        import gc

        from serving.gunicorn_app import run_gunicorn

        gc.collect()
        gc.freeze()  # the loaded snapshot: never scanned by the GC, pages shared by the workers

        run_gunicorn(
            app,
            {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "timeout": timeout,
                "accesslog": "-" if access_log else None,
                # gunicorn's largest finite limit (its default, 4094 bytes, refuses with an
                # HTML page the 100 ids of 64 characters that `exclude` may hold)
                "limit_request_line": REQUEST_LINE_MAX,
            },
        )
    finally:
        # gunicorn workers are forked from here and leave through this block too
        if os.getpid() == owner:
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            if app is not None:
                # the app's own connections would keep the embedded server running
                # after this process ends (it stops when its last client leaves)
                app.extensions["recsys"].gateway.close()
            if embedded is not None:
                from recsys.snapshots.connection import await_sole_client

                await_sole_client(embedded)
        del embedded
