"""``recsys run``: the main job, end to end on the embedded defaults.

Get data (a synthetic shop, or a real dataset) -> validate -> build the
interaction matrix -> train a baseline and a candidate, each tracked in
MLflow and passed through the promotion gate -> publish the champion's
candidates into Redis (embedded unless ``REDIS_URL``) -> print a summary.
A publish that fails before its snapshot is served undoes the champion moves
of the run's gate (the versions it trained stay registered): the champion is
still the one last published. Every step after the data step reads one pinned
view of the data directory: the data validated is the data trained on and
published, whatever an import commits meanwhile.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from recsys.cli.common import (
    UserError,
    emit,
    json_option,
    memory_per_customer,
    quiet_option,
    store,
    user_errors,
)
from recsys.config import shared_data_dir
from recsys.data.store import read_import_log

#: Fewest days of a generated shop that leave a day of events before the temporal
#: protocol's 30-day test window (its cut-off is the last event - 30 days, floored).
MIN_DAYS = 32

REAL_SOURCES = {
    "online-retail": ("online-retail", "online_retail/online_retail.csv.gz"),
    "movielens": ("movielens", "ml-100k"),
}


@click.command()
@click.option(
    "--source",
    type=click.Choice(["synthetic", *REAL_SOURCES]),
    default="synthetic",
    show_default=True,
    help="Where the data comes from: a generated shop, or a real dataset.",
)
@click.option(
    "--path",
    type=click.Path(exists=True),
    default=None,
    help="File or folder of a real dataset [default: ../shared/data/...].",
)
@click.option(
    "--users",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="Synthetic shop: customers.",
)
@click.option(
    "--items",
    type=click.IntRange(10),
    default=5_000,
    show_default=True,
    help="Synthetic shop: catalog size.",
)
@click.option(
    "--days",
    type=click.IntRange(MIN_DAYS),
    default=120,
    show_default=True,
    help="Synthetic shop: days of logs (the last 30 are the test window).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic shop: seed.")
@click.option(
    "--models",
    "model_names",
    default="popular,blend",
    show_default=True,
    help="Models to train, in order; each goes through the promotion gate.",
)
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="Publish the champion's recipe fitted on every event (the evaluated fit stops "
    "at the cut-off); champions registered without a recipe are published as they are.",
)
@json_option
@quiet_option
@click.pass_context
@user_errors
def run(ctx, source, path, users, items, days, seed, model_names, refit, as_json, quiet) -> None:
    """Run the pipeline end to end: data -> validation -> interactions -> training -> publish."""
    names = _model_names(model_names)
    started = time.perf_counter()
    shop = store(ctx)
    steps: dict = {}
    progress = not quiet
    say = (lambda msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    _check_redis(shop.root)

    say(f"[1/5] data: {source} -> {shop.root}")
    if source == "synthetic":
        from recsys.data.synthetic import generate_shop

        kept = data_a_shop_would_replace(shop)
        if kept:
            raise UserError(
                f"{shop.root} holds data that a generated shop would replace ({kept}): "
                "give the shop a directory of its own (`recsys --data ./shop run`), train "
                "and publish the data already here (`recsys train --model blend --promote`, "
                f"then `recsys publish`), or replace it on purpose with `recsys --data "
                f"{shop.root} data generate` first"
            )
        steps["data"] = generate_shop(
            shop, users=users, items=items, days=days, seed=seed, progress=progress
        )
    else:
        from recsys.data.importing import import_source

        fmt, default = REAL_SOURCES[source]
        src = Path(path) if path else shared_data_dir() / default
        if not src.exists():
            raise UserError(f"{src} not found; pass --path to the {source} dataset")
        other = other_data(shop, fmt)
        if other:
            raise UserError(
                f"{shop.root} already holds other data ({other}): the "
                f"{source} file would be merged into it; give it a data directory of its "
                f"own, e.g. `recsys --data ./{source} run --source {source}` or "
                f"`RECSYS_DATA_DIR=./{source} ./scripts/quickstart.sh --source {source}`"
            )
        steps["data"] = import_source(shop, fmt, src, progress=progress).as_dict()

    with shop.pinned() as view:  # every step from here reads one manifest
        say("[2/5] validate the stored tables")
        from recsys.data.checks import check_store

        steps["validation"] = check_store(view)
        if not steps["validation"]["ok"]:
            raise UserError(
                f"the stored tables break integrity rules: {steps['validation']['problems']}"
            )
        if steps["validation"]["unmatched"]:
            say(f"  events other tables do not know of: {steps['validation']['unmatched']}")

        say("[3/5] build the interaction matrix")
        steps["interactions"] = _interactions(view)

        say(f"[4/5] train, evaluate and promote: {model_names}")
        steps["training"], undo = _train_and_promote(shop.root, names, progress, say, view)

        say("[5/5] publish the champion's candidates into Redis")
        try:
            steps["publish"] = _publish(shop.root, progress, refit, say, view)
        except BaseException as exc:  # the job failed: the moves of its gate do not stand
            from training.publish import PublishedButFailed

            if isinstance(exc.__cause__, PublishedButFailed):
                raise  # ... unless its snapshot is served already: the champion is published
            if not undo() or not isinstance(exc, UserError):
                raise
            raise UserError(f"{exc.message}; the champion moves of this run were undone") from exc

        summary = {
            "data_dir": str(shop.root),
            "source": source,
            "steps": steps,
            "seconds": round(time.perf_counter() - started, 2),
        }
        emit(summary, as_json, _human(summary, view))


def _publish(root: Path, progress: bool, refit: bool, say, view) -> dict:
    from redis import RedisError

    from recsys.snapshots.writer import PublishLocked
    from training.publish import PublishError, publish

    if refit and not _champion_has_recipe(root):
        say("  the champion has no recipe tag (registered by an older version): not refitted")
        refit = False
    try:
        return publish(root, progress=progress, refit=refit, store=view)
    except (PublishError, PublishLocked) as exc:  # e.g. another publish is running
        raise UserError(str(exc)) from exc
    except RedisError as exc:
        raise UserError(f"Redis: {exc}") from exc


def _check_redis(root: Path) -> None:
    """A one-line error now when the Redis of the publish step (``REDIS_URL``) cannot
    be reached, not after the data and training steps. The embedded one is started
    by the publish step: a refused run leaves no server behind in the directory."""
    import os

    from redis import RedisError

    from recsys.snapshots.connection import (
        REDIS_URL_ENV,
        RedisSettingError,
        keys_from_env,
        open_store,
    )

    try:
        if not os.environ.get(REDIS_URL_ENV):
            keys_from_env()  # the embedded server's one setting: the key prefix
            return
        open_store(root)[1].ping()
    except RedisSettingError as exc:  # a bad prefix, a REDIS_URL without its scheme
        raise UserError(str(exc)) from exc
    except RedisError as exc:
        raise UserError(f"Redis: {exc}") from exc


def other_data(shop, fmt: str) -> str | None:
    """What, besides imports of format ``fmt``, the data directory's events came from;
    None when nothing else. ``data generate`` replaces every table and logs itself
    (format ``generate``); live events drained from the event stream are other data
    unless the directory holds imports of ``fmt`` (the same shop's events); events
    with no import of a file in the log are a shop generated before it was logged."""
    if not shop.has("events"):
        return None
    log, generated = _log_since_generated(shop)
    formats = {summary["format"] for summary in log}
    others = sorted(formats - {fmt, "stream", "generate"})
    if others:
        return "imports of format " + ", ".join(others)
    if generated:
        return "a generated shop"
    if fmt in formats:
        return None
    if any(s.get("accepted") for s in log if s.get("format") == "stream"):
        return "live events drained from the event stream"
    return "a generated shop"


def data_a_shop_would_replace(shop) -> str | None:
    """What of the data directory's tables did not come from ``data generate`` (the
    imports logged since the last generated shop that accepted rows: files of
    events, items or customers, drained live events); None when a new synthetic
    shop replaces nothing else. A directory with events and no import log holds a
    shop generated before ``data generate`` logged itself."""
    log, _ = _log_since_generated(shop)
    formats = {s.get("format") for s in log if s.get("accepted", 1)} - {"generate", None}
    return "imports of format " + ", ".join(sorted(formats)) if formats else None


def _log_since_generated(shop) -> tuple[list[dict], bool]:
    """The import log from the last generated shop on (all of it when none was
    generated), and whether one was."""
    log = read_import_log(shop.root) or []
    generated = [i for i, summary in enumerate(log) if summary.get("format") == "generate"]
    return (log[generated[-1] :], True) if generated else (log, False)


def _model_names(model_names: str) -> list[str]:
    """The names of --models, checked before any step runs."""
    from recsys.models.registry import MODELS

    names = [n.strip() for n in model_names.split(",") if n.strip()]
    if not names:
        raise UserError(f"--models {model_names!r} names no model; e.g. --models popular,blend")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise UserError(
            f"--models: unknown model {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(sorted(MODELS))}"
        )
    return names


def _interactions(shop) -> dict:
    from recsys.interactions import InteractionConfig, build_interactions

    events = shop.read(
        "events", columns=["timestamp", "user_id", "item_id", "type", "quantity", "value"]
    )
    inter = build_interactions(events, InteractionConfig())
    n_users, n_items = inter.matrix.shape
    return {
        "users": n_users,
        "items": n_items,
        "nonzeros": int(inter.matrix.nnz),
        "density": inter.matrix.nnz / max(1, n_users * n_items),
    }


def _train_and_promote(root: Path, names: list[str], progress: bool, say, view):
    """Train ``names`` (and the champion's recipe on new data), pass each through the
    gate; returns the step's summary and a function that undoes the gate's moves
    (True if it did) for a publish that fails."""
    from training.params import ParamError
    from training.promote import PromotionRefused, champion, promote, undo_promotions
    from training.tracking import RECIPE_TAG, TrackingError, open_tracking
    from training.train import TrainError, train

    try:
        tracking = open_tracking(root)
    except TrackingError as exc:
        raise UserError(str(exc)) from exc

    def fit(name: str, sets: dict) -> dict:
        try:
            return train(root, name, sets, progress=progress, tracking=tracking, store=view)
        except (ParamError, TrainError) as exc:
            raise UserError(str(exc)) from exc

    results = []
    for name in names:
        say(f"  training {name}")
        results.append(fit(name, {}))
    refit = _champion_to_retrain(tracking, results)
    if refit is not None:  # the champion is of other data: measure its recipe on this data
        say(f"  training the champion's recipe ({refit['model']}) on this data")
        results.append(fit(refit["model"], {**refit["params"], "data": refit["data"]}))
    current = champion(tracking)
    recipe = current.tags.get(RECIPE_TAG) if current is not None else None
    # the champion's recipe first: on new data it replaces the champion (a refresh),
    # and the others are then compared with it on the same data
    order = sorted(results, key=lambda r: _recipe(r) != recipe)
    trained, before, promoted = [], {}, []
    for result in order:
        try:
            decision = promote(tracking, result["model_version"])
            before = before or decision["aliases_before"]  # as the first move found them
            promoted.append(result["model_version"])
            result["gate"] = (
                "refreshed the champion" if decision["refresh"] else "promoted to champion"
            )
        except PromotionRefused as refused:
            result["gate"] = f"not promoted: {refused}"
        trained.append(
            {k: result[k] for k in ("model_name", "model_version", "run_id", "metrics", "gate")}
        )
    best = champion(tracking)
    summary = {
        "models": trained,
        "registered_model": tracking.registered_model,
        "champion_version": int(best.version) if best else None,
        "champion_model": best.tags.get("model") if best else None,
        "tracking_uri": tracking.tracking_uri,
    }
    return summary, lambda: undo_promotions(tracking, before, promoted)


def _champion_has_recipe(root: Path) -> bool:
    from training.promote import champion
    from training.tracking import RECIPE_TAG, open_tracking

    current = champion(open_tracking(root))
    return current is not None and RECIPE_TAG in current.tags


def _recipe(result: dict) -> str:
    from training.train import recipe_text

    return recipe_text(result["model_name"], result["params"], result["interactions"])


def _champion_to_retrain(tracking, results: list[dict]) -> dict | None:
    """The champion's recipe (model, params, data settings) when the champion was
    trained on other data than ``results`` and none of them has its recipe."""
    from training.promote import champion
    from training.tracking import RECIPE_TAG

    current = champion(tracking)
    if current is None or not results or RECIPE_TAG not in current.tags:
        return None
    same_data = all(current.tags.get(k) == results[0][k] for k in ("data_fingerprint", "protocol"))
    recipe = current.tags[RECIPE_TAG]
    if same_data or any(_recipe(r) == recipe for r in results):
        return None
    return json.loads(recipe)


def _human(summary: dict, shop) -> str:
    steps = summary["steps"]
    inter, training = steps["interactions"], steps["training"]
    lines = [
        f"done in {summary['seconds']} s: {shop.counts()['events']} events; interactions "
        f"{inter['users']} users x {inter['items']} items, {inter['nonzeros']} non-zeros "
        f"(density {inter['density']:.2e})",
    ]
    for t in training["models"]:
        lines.append(
            f"  {t['model_name']:<10} v{t['model_version']:<3} ndcg@10 "
            f"{t['metrics']['ndcg@10']:.4f}  {t['gate']}"
        )
    lines.append(
        f"champion of {training['registered_model']}: version "
        f"{training['champion_version']} ({training['champion_model']})"
    )
    pub = steps["publish"]
    lines.append(
        f"published snapshot {pub['version']}: {pub['users']} customers, "
        f"{memory_per_customer(pub['bytes_per_user'])} each in Redis ({pub['seconds']} s"
        + (", champion refitted on every event)" if pub.get("refit") else ")")
    )
    lines.append(f"next: recsys --data {shop.root} models list")
    lines.append(f"      mlflow ui --backend-store-uri {training['tracking_uri']}")
    return "\n".join(lines)
