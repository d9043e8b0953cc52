"""``recsys data``: import, generate and inspect the canonical tables."""

from __future__ import annotations

import click

from recsys.cli.common import (
    emit,
    existing_data_dir,
    json_option,
    quiet_option,
    store,
    user_errors,
)
from recsys.data.store import DataStore

FORMATS = ["events", "items", "customers", "online-retail", "movielens", "stream"]


@click.group()
def data() -> None:
    """Import shop data, generate a synthetic shop, inspect the data directory."""


@data.command("import")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="Layout of SRC (see docs/data.md).",
)
@click.argument("src")
@json_option
@quiet_option
@click.pass_context
@user_errors
def import_(ctx, fmt: str, src: str, as_json: bool, quiet: bool) -> None:
    """Validate SRC and merge it into the data directory.

    Every row is accepted or written with its reason to rejects/<import id>.parquet.
    Importing the same file again changes no table (it is logged, with its rejects).
    On an error nothing is written.
    SRC is a file or folder; for --format stream it is `redis` (the event stream that
    POST /v1/events fills, in $REDIS_URL or the embedded Redis) or a redis://,
    rediss:// or unix:// URL: new entries are imported, then trimmed from the stream.
    """
    from recsys.data.importing import import_source

    summary = import_source(store(ctx), fmt, src, progress=not quiet).as_dict()
    rejected = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()) or "none"
    human = (
        f"read {summary['rows_read']} rows: {summary['accepted']} accepted, "
        f"{summary['rejected_total']} rejected ({rejected})\n"
        + "".join(
            f"  {t}: {s['new']} new, {s['updated']} updated, {s['unchanged']} unchanged\n"
            for t, s in summary["tables"].items()
        )
        + (
            f"rejected rows and reasons: {summary['rejects_file']}"
            if summary["rejects_file"]
            else ""
        )
    )
    lost = summary.get("stream", {}).get("entries_lost")
    if lost:
        click.echo(
            f"warning: {lost} stream entries were dropped before they could be imported "
            "(the stream is capped): drain it more often",
            err=True,
        )
    if summary.get("stream", {}).get("trimmed") is False:
        click.echo(
            "warning: Redis went away before the imported entries were trimmed from the "
            "stream; a later import trims them",
            err=True,
        )
    emit(summary, as_json, human.rstrip())


@data.command()
@click.option(
    "--users", type=click.IntRange(1), default=20_000, show_default=True, help="Customers."
)
@click.option(
    "--items", type=click.IntRange(10), default=5_000, show_default=True, help="Catalog size."
)
@click.option(
    "--days", type=click.IntRange(1), default=120, show_default=True, help="Days of logs."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed: the same seed, the same shop."
)
@click.option("--start", default="2024-01-01", show_default=True, help="First day of the logs.")
@json_option
@quiet_option
@click.pass_context
@user_errors
def generate(
    ctx, users: int, items: int, days: int, seed: int, start: str, as_json: bool, quiet: bool
) -> None:
    """Generate a synthetic cross-border shop (replaces the data directory's tables).

    The same seed gives the same shop.
    """
    from recsys.data.synthetic import generate_shop

    summary = generate_shop(
        store(ctx), users=users, items=items, days=days, seed=seed, start=start, progress=not quiet
    )
    emit(
        summary,
        as_json,
        f"generated {summary['events']} events for {summary['users']} customers and "
        f"{summary['items']} items in {len(summary['markets'])} markets "
        f"({summary['seconds']:.1f} s)",
    )


@data.command()
@json_option
@click.pass_context
@user_errors
def summary(ctx, as_json: bool) -> None:
    """Rows per table, event types, time range and markets of the data directory."""
    from recsys.data.describe import describe

    info = describe(DataStore(existing_data_dir(ctx)))
    emit(info, as_json)
