"""``recsys train``, ``recsys tune`` and ``recsys models``: the offline jobs."""

from __future__ import annotations

import json

import click

from recsys.cli.common import (
    UserError,
    data_dir,
    emit,
    existing_data_dir,
    json_option,
    memory_per_customer,
    quiet_option,
    user_errors,
)
from recsys.models.registry import MODELS
from recsys.protocols import PROTOCOLS

MODEL_CHOICE = click.Choice(sorted(MODELS))


def _gate_errors(func):
    """Refusals, bad parameters, unusable splits and an MLflow store that cannot be
    opened become one-line errors with exit code 2."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from training.params import ParamError
        from training.promote import PromotionRefused
        from training.tracking import TrackingError
        from training.train import TrainError

        try:
            return func(*args, **kwargs)
        except (ParamError, PromotionRefused, TrainError, TrackingError) as exc:
            raise UserError(str(exc)) from exc

    return wrapper


def _existing_tracking(ctx):
    """The data directory's MLflow store; a one-line error when it has none."""
    from training.tracking import NoTrackingStore, open_tracking

    try:
        return open_tracking(data_dir(ctx), create=False)
    except NoTrackingStore as exc:
        raise UserError(str(exc)) from exc


@click.command()
@click.option("--model", "model_name", type=MODEL_CHOICE, required=True, help="Model to train.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A hyper-parameter (factors=128), an interaction setting "
    "(data.half_life_days=60) or a blend part (parts.als=0.4); repeatable.",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default=None,
    help="Evaluation protocol [default: stratified for ratings, else temporal].",
)
@click.option("--cutoff", default=None, help="Temporal cut-off [default: last event - 30 days].")
@click.option("--promote", is_flag=True, help="Run the promotion gate after training.")
@json_option
@quiet_option
@click.pass_context
@user_errors
@_gate_errors
def train(ctx, model_name, sets, protocol, cutoff, promote, as_json, quiet) -> None:
    """Train MODEL, evaluate it, log the run to MLflow and register a model version.

    With no --set the model trains with the best parameters `recsys tune` found
    for this data, else with sound defaults.
    """
    from training.params import parse_sets
    from training.train import train as run_training

    summary = run_training(
        data_dir(ctx),
        model_name,
        parse_sets(sets),
        protocol=protocol,
        cutoff=cutoff,
        promote=promote,
        progress=not quiet,
    )
    m = summary["metrics"]
    lines = [
        f"{model_name} -> {summary['registered_model']} version {summary['model_version']}"
        f" (run {summary['run_id']})",
        f"  ndcg@10 {m['ndcg@10']:.4f}  precision@10 {m['precision@10']:.4f}  "
        f"recall@10 {m['recall@10']:.4f}  users {int(m['n_users'])}",
    ]
    if summary["params_source"] == "tuned":
        lines.append(
            "  parameters found by recsys tune "
            f"(parent run {summary['tune_parent_run_id']}); --set trains without them"
        )
    if "metrics_new_items" in summary:
        n = summary["metrics_new_items"]
        lines.append(
            f"  new items only: ndcg@10 {n['ndcg@10']:.4f}  precision@10 {n['precision@10']:.4f}"
        )
    if "promotion" in summary:
        gate = summary["promotion"]
        lines.append(
            "  promoted to champion: "
            + ("True" if gate["promoted"] else f"False ({gate.get('refused', 'refused')})")
        )
    emit(summary, as_json, "\n".join(lines))


@click.group()
def models() -> None:
    """List, promote and roll back versions of the shop's registered model."""


@models.command("list")
@json_option
@click.pass_context
@_gate_errors
def list_(ctx, as_json) -> None:
    """Every version with its model type, NDCG@10 and aliases."""
    from training.promote import list_versions
    from training.tracking import NoTrackingStore, open_tracking

    try:
        versions = list_versions(open_tracking(data_dir(ctx), create=False))
    except NoTrackingStore:
        existing_data_dir(ctx)  # a mistyped --data is an error, not "no versions yet"
        versions = []
    human = (
        "\n".join(
            f"v{v['version']:<4} {v['model'] or '?':<10} {v['protocol'] or '?':<10} "
            f"ndcg@10 {v['ndcg@10'] if v['ndcg@10'] is None else round(v['ndcg@10'], 4)!s:<8} "
            f"{','.join(v['aliases'])}" + ("  (run deleted)" if v["run_missing"] else "")
            for v in versions
        )
        or "no versions yet: run `recsys train`"
    )
    emit({"versions": versions}, as_json, human)


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--force", is_flag=True, help="Promote even if it does not win.")
@click.option("--reason", default=None, help="Why (required with --force); recorded.")
@click.option("--metric", default="ndcg@10", show_default=True, help="Primary metric.")
@json_option
@click.pass_context
@_gate_errors
def promote_(ctx, name, version, force, reason, metric, as_json) -> None:
    """Make VERSION of registered model NAME the champion, if it beats the current one."""
    from training.promote import PromotionRefused, promote

    if reason is not None and not force:
        raise UserError("--reason is recorded with --force only; add --force to promote anyway")
    tracking = _existing_tracking(ctx)
    if name != tracking.registered_model:
        raise UserError(
            f"this shop's registered model is {tracking.registered_model!r}, "
            f"not {name!r} (set RECSYS_REGISTERED_MODEL to change it)"
        )
    try:
        decision = promote(tracking, version, metric=metric, force=force, reason=reason)
    except PromotionRefused as refused:
        if "lost_by" not in refused.decision:
            raise
        raise UserError(f'{refused}; --force --reason "..." promotes it anyway') from refused
    emit(
        decision,
        as_json,
        f"version {version} is now the champion"
        + (f" (forced: {reason})" if force else "")
        + (" (the champion's recipe, retrained on new data)" if decision.get("refresh") else ""),
    )


@models.command("rollback")
@json_option
@click.pass_context
@_gate_errors
def rollback_(ctx, as_json) -> None:
    """Give the champion alias back to the previous champion."""
    from training.promote import rollback

    out = rollback(_existing_tracking(ctx))
    emit(out, as_json, f"champion is version {out['champion_version']} again")


#: Why a search ended, as ``recsys tune`` says it.
STOPPED_BY = {
    "trials": "all --trials done",
    "budget": "the next trial would have ended past --budget-minutes",
    "space": "every point of the search space tried",
}


@click.command()
@click.option("--model", "model_name", type=MODEL_CHOICE, required=True, help="Model to tune.")
@click.option(
    "--budget-minutes",
    type=float,
    default=None,
    help="Stop starting trials when the next one would end past this many minutes"
    " (a running trial is not cut short).",
)
@click.option(
    "--trials",
    type=int,
    default=None,
    help="At most this many trials [default: 20 without --budget-minutes, else no limit].",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default=None,
    help="Evaluation protocol [default: stratified for ratings, else temporal].",
)
@click.option("--cutoff", default=None, help="Temporal cut-off [default: last event - 30 days].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
@json_option
@quiet_option
@click.pass_context
@user_errors
@_gate_errors
def tune(ctx, model_name, budget_minutes, trials, protocol, cutoff, seed, as_json, quiet) -> None:
    """Search MODEL's hyper-parameters on a validation split, then train the best once.

    Each trial is a nested MLflow run under one parent run; the best point is
    trained on the real protocol, registered and tagged, so that a later
    `recsys train --model MODEL` without --set uses it.
    """
    from training.tune import TuneError
    from training.tune import tune as run_tuning

    try:
        summary = run_tuning(
            data_dir(ctx),
            model_name,
            budget_minutes=budget_minutes,
            trials=trials,
            protocol=protocol,
            cutoff=cutoff,
            seed=seed,
            progress=not quiet,
        )
    except TuneError as exc:
        raise UserError(str(exc)) from exc
    m = summary["metrics"]
    over = summary["over_budget_seconds"]
    overrun = f" (the search ended {over:.1f} s past --budget-minutes)" if over else ""
    human = "\n".join(
        [
            f"tuned {model_name}: {summary['trials']} trials in {summary['search_seconds']:.0f} s,"
            f" {STOPPED_BY[summary['stopped_by']]}{overrun}"
            f" (parent run {summary['parent_run_id']})",
            f"  best validation ndcg@10 {summary['best_validation']:.4f} with "
            + json.dumps(summary["best_params"], sort_keys=True),
            f"  -> {summary['registered_model']} version {summary['model_version']}"
            f" (run {summary['run_id']}): test ndcg@10 {m['ndcg@10']:.4f}",
        ]
    )
    emit(summary, as_json, human)


@click.group(invoke_without_command=True)
@click.option(
    "--model",
    "model_ref",
    default="champion",
    show_default=True,
    help="Model version to publish: champion, NAME@ALIAS, NAME/VERSION or VERSION.",
)
@click.option(
    "--n",
    "n",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Candidates per customer.",
)
@click.option(
    "--k-similar",
    type=click.IntRange(1, 500),
    default=20,
    show_default=True,
    help="Similar items per item.",
)
@click.option(
    "--exclude-purchased/--keep-purchased",
    default=None,
    help="Leave items a customer bought out of their candidates "
    "[default: yes, unless the model recommends buying again].",
)
@click.option(
    "--lock-ttl",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="Seconds the publish lock outlives a writer that died (it is renewed while "
    "the lists are scored and written).",
)
@click.option(
    "--refit",
    is_flag=True,
    help="Fit the version's recipe again on every event before publishing (its "
    "evaluation fit stopped at the cut-off): fresher item relations, and candidates "
    "for customers who arrived since.",
)
@click.option(
    "--max-write-rate",
    type=click.FloatRange(min=1),
    default=None,
    help="Keys per second at most, to spare a busy shared Redis [default: no limit].",
)
@json_option
@quiet_option
@click.pass_context
def publish(
    ctx, model_ref, n, k_similar, exclude_purchased, lock_ttl, refit, max_write_rate, as_json, quiet
) -> None:
    """Write the model's candidates into Redis as a new snapshot, then flip `current`.

    Readers never see half a snapshot; the previous one stays for `recsys publish rollback`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from redis import RedisError

    from recsys.snapshots.writer import PublishLocked
    from training.publish import PublishError
    from training.publish import publish as run_publish
    from training.tracking import TrackingError

    try:
        out = run_publish(
            data_dir(ctx),
            model_ref,
            n=n,
            k_similar=k_similar,
            exclude_purchased=exclude_purchased,
            progress=not quiet,
            max_rate=max_write_rate,
            lock_ttl_s=lock_ttl,
            refit=refit,
        )
    except (PublishError, PublishLocked, TrackingError) as exc:
        raise UserError(str(exc)) from exc
    except RedisError as exc:
        raise UserError(f"Redis: {exc}") from exc
    emit(
        out,
        as_json,
        f"published snapshot {out['version']} of {out['model_name']} v{out['model_version']} "
        f"({out['model']}): {out['users']} customers, {out['items']} items, {out['keys']} keys, "
        f"{memory_per_customer(out['bytes_per_user'])} per customer in Redis, {out['seconds']} s",
    )


@publish.command("rollback")
@json_option
@click.pass_context
def publish_rollback(ctx, as_json) -> None:
    """Point `current` back at the previous snapshot (and keep this one as previous)."""
    from redis import RedisError

    from recsys.snapshots.connection import RedisSettingError, is_embedded, open_store, persist
    from recsys.snapshots.writer import rollback

    try:
        keys, client = open_store(data_dir(ctx), create=False)
        out = rollback(client, keys)
        if is_embedded(client):
            persist(client)  # as publish does: the file holds the pointer now
    except (LookupError, RedisSettingError) as exc:
        raise UserError(str(exc)) from exc
    except RedisError as exc:
        raise UserError(f"Redis: {exc}") from exc
    emit(out, as_json, f"current snapshot is {out['version']} again (was {out['previous']})")
