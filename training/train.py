"""``recsys train``: fit one model, evaluate it by protocol, track it in MLflow.

One MLflow run per training with the parameters (model and interaction
settings), the metrics, the fingerprint of data + split, the code version,
and artifacts (the model bundle, the per-slice metric table, a plot of metric
vs k). Every training registers a new version of the shop's one registered
model; ``promote=True`` then runs the promotion gate, whose decision (a
refusal too) is the summary's ``promotion``.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from recsys.bundle import ModelBundle
from recsys.data.store import DataStore, TableReader
from recsys.evaluation.cold import evaluate_new_users
from recsys.evaluation.evaluate import EvaluationResult, evaluate
from recsys.memory import peak_rss_mb as peak_rss_mb_now
from recsys.memory import rss_mb
from recsys.models.registry import create_model
from recsys.progress import elapsed
from recsys.protocols import ProtocolData, load_protocol
from training import params as hp
from training.tracking import RECIPE_TAG, Tracking, open_tracking, owner_tags

PRIMARY_METRIC = "ndcg@10"
KS = (1, 5, 10, 20)
ACTIVITY_BINS = [-1, 0, 1, 5, 20, np.inf]
ACTIVITY_LABELS = ["0", "1", "2-5", "6-20", "21+"]
#: Models that use item / user side features (built only when needed).
FEATURE_MODELS = {"lightfm"}
#: Artifact (under ``reports/``) with the cold slice's per-user metrics.
COLD_PER_USER_FILE = "cold_users_per_user.csv"


class TrainError(ValueError):
    """Training cannot run on this data (no events, a cut-off outside them, an empty split)
    or with these parameters (a fit that diverged)."""


def _event_types(store: TableReader) -> set[str]:
    types = store.dataset("events").to_table(columns=["type"]).column("type").unique()
    return set(types.to_pylist())


def guess_protocol(store: TableReader) -> str:
    """``stratified`` for rating data (MovieLens), else ``temporal``."""
    return "stratified" if _event_types(store) == {"rating"} else "temporal"


def check_purchases(store: TableReader, protocol: str) -> None:
    """Refuse the temporal protocol on events without a purchase: it tests purchases."""
    if protocol != "temporal" or not store.has("events"):
        return
    types = _event_types(store)
    if "purchase" not in types:
        raise TrainError(
            "the temporal protocol tests purchases, and the events hold none (types: "
            f"{', '.join(sorted(types))}); for ratings use --protocol stratified"
        )


def train(
    data_dir: str | Path,
    model_name: str,
    sets: dict[str, Any] | None = None,
    *,
    protocol: str | None = None,
    cutoff: str | None = None,
    promote: bool = False,
    progress: bool = True,
    tracking: Tracking | None = None,
    data: ProtocolData | None = None,
    nested: bool = False,
    extra_tags: dict[str, str] | None = None,
    store: TableReader | None = None,
) -> dict:
    """Train, evaluate, log and register one model; returns the JSON summary.

    Every table comes from ``store`` (a pinned view of a job that reads on after
    this), or else from one view of ``data_dir`` pinned while this reads.
    """
    with (store or DataStore(data_dir)).pinned() as store:
        protocol = protocol or (data.name if data else guess_protocol(store))
        check_cutoff(protocol, cutoff)
        if data is None:
            check_purchases(store, protocol)
            try:
                data = load_protocol(store, protocol, cutoff=cutoff)
            except ValueError as exc:  # no events, a cut-off that is not a date
                raise TrainError(str(exc)) from exc
        check_split(data)
        # only now: a mistyped --data must not get an MLflow store made in it
        tracking = tracking or open_tracking(data_dir)
        tuned = None if sets else best_known_params(tracking, model_name, data.fingerprint)
        base = tuned[0] if tuned else None
        model_params, config = hp.resolve(model_name, protocol, sets or {}, base)

        try:
            train_matrix = data.train_matrix(config)
        except ValueError as exc:  # e.g. a data.reference_time before the last train event
            raise hp.ParamError(f"data settings: {exc}") from exc
        if not train_matrix.nnz:
            raise TrainError(
                f"the interaction settings {json.dumps(config.as_dict(), default=str)} leave no "
                "interactions to fit on (every weight 0, or min_weight above every cell)"
            )
        uses_features = model_name in FEATURE_MODELS or any(
            p in FEATURE_MODELS for p in model_params.get("parts", {})
        )
        context = data.fit_context(store if uses_features else None)
    try:
        model = create_model(model_name, **model_params)
    except (TypeError, ValueError) as exc:
        raise hp.ParamError(f"{model_name}: {exc}") from exc
    rss_before_fit_mb = rss_mb()
    started = time.perf_counter()
    try:
        with elapsed(f"fit {model_name}", progress):
            model.fit(train_matrix, context=context)
    except ValueError as exc:  # e.g. a diverged fit (NaN factors)
        raise TrainError(f"{model_name} could not be fitted: {exc}") from exc
    fit_seconds = time.perf_counter() - started
    peak_rss_mb = peak_rss_mb_now()  # VmHWM: never below the RSS measured before

    slices = _slices(data, train_matrix)
    results = _evaluate(model, data, train_matrix, slices, progress)
    metrics = results["all"].summary()
    out_metrics = {k: round(v, 6) for k, v in metrics.items()}
    summary: dict[str, Any] = {
        "model_name": model_name,
        "protocol": protocol,
        "data_fingerprint": data.fingerprint,
        # where the parameters come from: --set, a `recsys tune` of this model and data, defaults
        "params_source": "set" if sets else "tuned" if tuned else "defaults",
        "metrics": out_metrics,
    }
    if tuned:
        summary["tune_parent_run_id"] = tuned[1]
    if "new" in results:
        summary["metrics_new_items"] = {k: round(v, 6) for k, v in results["new"].summary().items()}
    cold = _evaluate_new_users(model, data, train_matrix, progress)
    if cold is not None:
        summary["metrics_cold_users"] = {k: round(v, 6) for k, v in cold.summary().items()}

    tags = {
        "model": model_name,
        "protocol": protocol,
        "data_fingerprint": data.fingerprint,
        "code_version": code_version(),
        "primary_metric": PRIMARY_METRIC,
        RECIPE_TAG: recipe_text(model_name, model_params, config.as_dict()),
        **(extra_tags or {}),
    }
    with mlflow.start_run(
        experiment_id=tracking.experiment_id,
        nested=nested,
        run_name=f"{model_name}-{protocol}",
        tags=owner_tags(),
    ) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            _flat(
                {
                    "model": model_params,
                    "data": config.as_dict(),
                    "protocol": {"name": protocol, **data.params},
                }
            )
        )
        mlflow.log_metrics({metric_key(k): v for k, v in metrics.items()})
        if "new" in results:
            mlflow.log_metrics(
                {metric_key(k, "new_items_"): v for k, v in results["new"].summary().items()}
            )
        if cold is not None:
            mlflow.log_metrics({metric_key(k, "cold_users_"): v for k, v in cold.summary().items()})
        mlflow.log_metrics(
            {
                "fit_seconds": fit_seconds,
                "peak_rss_mb": peak_rss_mb,
                "rss_before_fit_mb": rss_before_fit_mb,
                **{f"data_{k}": v for k, v in data.split.summary().items()},
            }
        )
        bundle = ModelBundle(
            model,
            data.user_map,
            data.item_map,
            config,
            meta={
                "protocol": protocol,
                "data_fingerprint": data.fingerprint,
                "run_id": run.info.run_id,
            },
        )
        with tempfile.TemporaryDirectory() as tmp:
            bundle.save(Path(tmp) / "model")
            mlflow.log_artifacts(str(Path(tmp) / "model"), artifact_path="model")
            _log_reports(results, slices, Path(tmp))
            if cold is not None:
                _log_cold_per_user(cold, data, Path(tmp))
        version = tracking.client.create_model_version(
            tracking.registered_model,
            source=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={**tags, "ndcg_at_10": str(metrics.get(PRIMARY_METRIC))},
            description=f"{model_name} on {protocol} ({data.fingerprint})",
        )
        summary.update(
            {
                "run_id": run.info.run_id,
                "model_version": int(version.version),
                "registered_model": tracking.registered_model,
                "params": model_params,
                "interactions": config.as_dict(),
                "fit_seconds": round(fit_seconds, 3),
                "peak_rss_mb": round(peak_rss_mb, 1),
                "rss_before_fit_mb": round(rss_before_fit_mb, 1),
            }
        )
    if promote:
        from training.promote import PromotionRefused
        from training.promote import promote as run_gate

        try:
            summary["promotion"] = run_gate(tracking, int(version.version))
        except PromotionRefused as refused:  # the version is registered all the same
            summary["promotion"] = {**refused.decision, "promoted": False, "refused": str(refused)}
    return summary


def check_cutoff(protocol: str, cutoff: str | None) -> None:
    """Refuse a ``--cutoff`` that the protocol would ignore (only ``temporal`` has one)."""
    if cutoff is not None and protocol != "temporal":
        raise TrainError(
            f"--cutoff is for the temporal protocol; the {protocol} protocol has none "
            "(drop --cutoff, or add --protocol temporal)"
        )


def check_split(data: ProtocolData) -> None:
    """Refuse a split that leaves nothing to fit or nothing to test (NaN metrics)."""
    where = ", ".join(f"{k} {v}" for k, v in data.params.items())
    temporal = data.name == "temporal"  # the other protocols have no cut-off to move
    if not len(data.user_map) or not len(data.item_map):
        raise TrainError(
            f"the {data.name} split ({where}) leaves no events to train on; "
            + ("choose a later --cutoff" if temporal else "the data holds too few events")
        )
    if not data.test.nnz:
        raise TrainError(
            f"the {data.name} split ({where}) leaves no test interactions; "
            + ("choose an earlier --cutoff" if temporal else "the data holds too few events")
        )


def _evaluate(
    model, data: ProtocolData, train_matrix, slices, progress
) -> dict[str, EvaluationResult]:
    if data.name == "stratified":
        # Every train rating leaves the ranking, also one that the interaction
        # settings (min_weight) kept out of the matrix.
        return {
            "all": evaluate(
                model,
                train_matrix,
                data.test,
                k=10,
                ks=KS,
                exclude=data.bought,
                slices=slices,
                progress=progress,
            )
        }
    return {
        "all": evaluate(
            model,
            train_matrix,
            data.test,
            k=10,
            ks=KS,
            exclude_train_items=False,
            slices=slices,
            progress=progress,
        ),
        "new": evaluate(
            model,
            train_matrix,
            data.test_new_items(),
            k=10,
            ks=KS,
            exclude=data.bought,
            slices=slices,
            progress=progress,
        ),
    }


def _evaluate_new_users(
    model, data: ProtocolData, train_matrix, progress
) -> EvaluationResult | None:
    """The cold-start slice of the temporal protocol, if the model ranks users without history."""
    if data.cold_test is None or not data.cold_test.nnz or not model.supports_new_users:
        return None
    return evaluate_new_users(
        model, data.cold_users, data.cold_test, k=10, ks=KS, train=train_matrix, progress=progress
    )


def _slices(data: ProtocolData, train_matrix) -> dict[str, np.ndarray]:
    """Per-user labels: country and activity bucket (distinct items bought, or rated,
    in train; "0" for a customer who only browsed)."""
    activity = np.diff(data.bought.indptr)
    if not data.bought.nnz:
        activity = np.diff(train_matrix.indptr)
    labels = pd.cut(activity, ACTIVITY_BINS, labels=ACTIVITY_LABELS, right=True)
    return {
        "country": np.where(data.user_country == "", "unknown", data.user_country).astype(str),
        "activity": np.asarray(labels.astype(str)),
    }


def _log_reports(results: dict[str, EvaluationResult], slices, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = []
    for view, result in results.items():
        for name in slices:
            table = result.by_slice(name).reset_index()
            table.insert(0, "slice", name)
            table.insert(0, "view", view)
            tables.append(table.rename(columns={name: "value"}))
    pd.concat(tables, ignore_index=True).to_csv(folder / "metrics_by_slice.csv", index=False)
    mlflow.log_artifact(str(folder / "metrics_by_slice.csv"), artifact_path="reports")
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (view, result) in zip(axes[0], results.items(), strict=True):
        curve = result.metric_vs_k().drop(columns=["novelty"])  # bits, not a 0-1 rate
        for column in curve.columns:
            ax.plot(curve.index, curve[column], marker="o", label=column)
        ax.set_title(f"{view} items: metric vs k")
        ax.set_xlabel("k")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "metric_vs_k.png", dpi=100)
    plt.close(fig)
    mlflow.log_artifact(str(folder / "metric_vs_k.png"), artifact_path="reports")


def _log_cold_per_user(cold: EvaluationResult, data: ProtocolData, folder: Path) -> None:
    """The cold slice's per-user metrics (``reports/cold_users_per_user.csv``), keyed by
    ``user_id`` so that two runs on the same split can be compared user by user."""
    table = cold.per_user.copy()
    user_ids = data.cold_users["user_id"].astype(str).to_numpy()
    table.insert(0, "user_id", user_ids[table.pop("user").to_numpy()])
    table.to_csv(folder / COLD_PER_USER_FILE, index=False)
    mlflow.log_artifact(str(folder / COLD_PER_USER_FILE), artifact_path="reports")


def best_known_params(
    tracking: Tracking, model_name: str, fingerprint: str
) -> tuple[dict, str] | None:
    """The parameters of the best ``recsys tune`` trial for this model and data, and the
    parent run of that tune; None if there is none.

    Of several tunes on the same data (hence the same validation split), the one
    whose best trial scored highest on validation wins; the latest among equals.
    """
    client = tracking.client
    runs = client.search_runs(
        [tracking.experiment_id],
        filter_string=(
            f"tags.model = '{model_name}' and tags.data_fingerprint = '{fingerprint}'"
            " and tags.tune_best = 'true'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    if not runs:
        return None

    def validation(run) -> float:
        try:
            parent = client.get_run(run.data.tags["tune_parent_run_id"])
        except (KeyError, MlflowException):
            return -math.inf
        value = parent.data.metrics.get("best_validation_" + metric_key(PRIMARY_METRIC))
        return value if value is not None and math.isfinite(value) else -math.inf

    best = max(runs, key=validation)  # the first (latest) of equal scores
    return json.loads(best.data.tags["tune_params"]), best.data.tags.get("tune_parent_run_id", "")


def recipe_text(model_name: str, params: dict, data: dict) -> str:
    """What makes a model what it is, whatever data it is trained on: its name, its
    hyper-parameters and its interaction settings, as canonical JSON (the run's and
    the version's ``recipe`` tag; the promotion gate compares recipes)."""
    recipe = {"model": model_name, "params": params, "data": data}
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=str)


def metric_key(name: str, prefix: str = "") -> str:
    """``ndcg@10`` -> ``ndcg_at_10`` (MLflow metric names cannot hold ``@``)."""
    return prefix + name.replace("@", "_at_")


def code_version() -> str:
    """The git commit of the code (with ``-dirty`` if modified), else the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import version

        return version("recsys-shop")


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value if value is not None else "None"
    return out
