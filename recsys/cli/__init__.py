"""The ``recsys`` command line: one entry point for every job.

Sub-commands of the library live here; those of ``training/``, ``serving/``
and ``experiments/`` are loaded only when called, so ``recsys data ...``
never imports MLflow or Flask.
"""

from __future__ import annotations

import importlib

import click

from recsys.cli.common import run_main
from recsys.config import DATA_DIR_ENV, data_dir

#: command name -> "module:attribute", imported on first use.
LAZY_COMMANDS = {
    "data": "recsys.cli.data:data",
    "run": "recsys.cli.run:run",
    "train": "training.cli:train",
    "models": "training.cli:models",
    "publish": "training.cli:publish",
    "tune": "training.cli:tune",
    "serve": "serving.cli:serve",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported when first used."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False),
    envvar=DATA_DIR_ENV,
    default=None,
    help=f"Data directory every job reads and writes [env {DATA_DIR_ENV}; default ./data].",
)
@click.version_option(package_name="recsys-shop")
@click.pass_context
def cli(ctx: click.Context, data: str | None) -> None:
    """Recommendations for cross-border online shops: data, training, publishing, serving."""
    ctx.obj = {"data_dir": data_dir(data)}


def main() -> None:
    """Console entry point."""
    run_main(cli)
