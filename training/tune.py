"""``recsys tune``: seeded random search of hyper-parameters, tracked as nested MLflow runs.

Tuning is honest: every trial is scored on a *validation* split carved out of
the main protocol's train events, so no trial sees the events the final model
is tested on.

- ``temporal``: the validation window is the ``test_days`` days right before
  the main cutoff (shortened to half of the history before the cutoff when
  that is shorter), trained on the events before it.
- ``stratified``: the main train ratings are split again the same way
  (25 % per item) with the next seed.

One parent run holds a child run per trial (its parameters and validation
metrics); the first trial is the defaults (``training.params``), the others are
drawn from ``training.search_space``. The best point is then trained once on the main protocol with
``train()``: that child run is registered as a model version and tagged
``tune_best=true`` and ``tune_params=<json>``, so a later ``recsys train``
without ``--set`` starts from it (``best_known_params``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recsys.data.store import DataStore, TableReader
from recsys.evaluation.evaluate import evaluate
from recsys.models.base import FitContext
from recsys.models.registry import MODELS, create_model
from recsys.protocols import ProtocolData, load_protocol, protocol_from_split
from recsys.splits import stratified_split, temporal_split
from training import params as hp
from training.search_space import sample
from training.tracking import Tracking, open_tracking, owner_tags
from training.train import (
    FEATURE_MODELS,
    PRIMARY_METRIC,
    check_cutoff,
    check_purchases,
    check_split,
    guess_protocol,
    metric_key,
    train,
)

DEFAULT_TRIALS = 20
#: Redraws of an already tried point before the space counts as exhausted.
MAX_REDRAWS = 100
K = 10
VALIDATION_KEY = "validation_" + metric_key(PRIMARY_METRIC)


class TuneError(ValueError):
    """Tuning cannot run on this data (e.g. no history for a validation window)."""


@dataclass
class Trial:
    """One scored point of the search."""

    number: int
    run_id: str
    params: dict[str, Any]  # model parameters plus "data": the interaction config
    validation: dict[str, float]  # empty when the fit failed
    seconds: float
    error: str = ""  # why the fit failed

    @property
    def score(self) -> float:
        value = self.validation.get(PRIMARY_METRIC, math.nan)
        return value if math.isfinite(value) else -math.inf


def validation_protocol(main: ProtocolData) -> ProtocolData:
    """A validation split inside ``main``'s train events (see the module docstring)."""
    train_events = main.split.train
    if main.name == "temporal":
        cutoff = pd.Timestamp(main.split.cutoff)
        history = (cutoff - train_events["timestamp"].min()) / pd.Timedelta(days=1)
        days = float(min(main.params["test_days"], math.floor(history / 2)))
        if days < 1:
            raise TuneError(
                f"only {history:.1f} days of events before the cutoff {cutoff.date()}: "
                "too little history to hold out a validation window"
            )
        val_cutoff = cutoff - pd.Timedelta(days=days)
        split = temporal_split(train_events, val_cutoff, test_days=days, test_types=("purchase",))
        params = {"cutoff": val_cutoff.isoformat(), "test_days": days}
    else:
        seed = int(main.params["seed"]) + 1
        split = stratified_split(
            train_events, main.params["test_fraction"], by=main.params["by"], seed=seed
        )
        params = {"test_fraction": main.params["test_fraction"], "by": main.params["by"]}
        params["seed"] = seed
    validation = protocol_from_split(main.name, split, {**params, "within": main.fingerprint})
    if not validation.test.nnz:
        raise TuneError(f"the validation split {params} has no test interactions")
    return validation


def tune(
    data_dir: str | Path,
    model_name: str,
    *,
    budget_minutes: float | None = None,
    trials: int | None = None,
    protocol: str | None = None,
    cutoff: str | None = None,
    seed: int = 0,
    progress: bool = True,
    tracking: Tracking | None = None,
) -> dict:
    """Search ``model_name``'s space on a validation split, then train the best point.

    Stops after ``trials`` trials or when the next trial would end past
    ``budget_minutes`` (the first trial always runs); with neither, runs
    ``DEFAULT_TRIALS``. A running trial is not cut short: the summary's
    ``over_budget_seconds`` says how far the search ran past the budget (None
    without one). Returns the JSON summary.
    """
    max_trials, budget = _limits(trials, budget_minutes)
    if model_name not in MODELS:
        raise hp.ParamError(f"unknown model {model_name!r}; choose one of {', '.join(MODELS)}")
    # one manifest for every read: the protocol, the trials' features, the final training
    with DataStore(data_dir).pinned() as store:
        protocol = protocol or guess_protocol(store)
        check_cutoff(protocol, cutoff)
        check_purchases(store, protocol)
        try:
            main = load_protocol(store, protocol, cutoff=cutoff)
            check_split(main)
        except ValueError as exc:  # no events, a cutoff outside the data
            raise TuneError(str(exc)) from exc
        # only now, as train does: a mistyped --data must not get an MLflow store made in it
        tracking = tracking or open_tracking(data_dir)
        validation = validation_protocol(main)
        _, config = hp.resolve(model_name, protocol, {})
        if not main.train_matrix(config).nnz:  # as train refuses it, after every trial
            raise TuneError(
                f"the {protocol} protocol's interaction settings "
                f"{json.dumps(config.as_dict(), default=str)} leave no interactions to fit on "
                f"(event types: {', '.join(sorted(main.split.train['type'].unique()))})"
            )
        contexts: dict[bool, FitContext] = {}
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        done: list[Trial] = []

        with mlflow.start_run(
            experiment_id=tracking.experiment_id,
            run_name=f"tune-{model_name}-{protocol}",
            tags=owner_tags(),
        ) as parent:
            mlflow.set_tags(
                {
                    "model": model_name,
                    "protocol": protocol,
                    "data_fingerprint": main.fingerprint,
                    "validation_fingerprint": validation.fingerprint,
                    "tune": "parent",
                    "primary_metric": PRIMARY_METRIC,
                }
            )
            mlflow.log_params(
                _flat(
                    {
                        "tune": {
                            "model": model_name,
                            "seed": seed,
                            "max_trials": max_trials,
                            "budget_minutes": budget_minutes,
                        },
                        "validation": validation.params,
                    }
                )
            )
            started = time.monotonic()
            bar = tqdm(
                total=max_trials,
                desc=f"tune {model_name}",
                unit="trial",
                file=sys.stderr,
                disable=not progress,
            )
            stopped_by = "budget" if budget is not None else "trials"
            while _more(done, started, max_trials, budget):
                point = _new_point(model_name, protocol, rng, seen)
                if point is None:
                    stopped_by = "space"  # every point of a small space is tried
                    break
                done.append(
                    _run_trial(len(done), model_name, point, validation, store, contexts, tracking)
                )
                bar.update()
                best = max(done, key=lambda t: t.score)
                bar.set_postfix({PRIMARY_METRIC: f"{best.score:.4f}"})
            bar.close()
            search_seconds = time.monotonic() - started
            if stopped_by != "space" and max_trials is not None and len(done) >= max_trials:
                stopped_by = "trials"
            mlflow.set_tag("tune_stopped_by", stopped_by)
            # a trial is never cut short: one slower than the average seen can end past the budget
            over_budget = None if budget is None else max(0.0, search_seconds - budget)

            best = max(done, key=lambda t: t.score)
            if best.score == -math.inf:
                errors = sorted({t.error for t in done if t.error})
                why = f" ({'; '.join(errors)[:500]})" if errors else ""
                raise TuneError(
                    f"all {len(done)} trials failed{why}; "
                    f"see the child runs of {parent.info.run_id}"
                )
            n_failed = sum(not t.validation for t in done)
            best_model = {k: v for k, v in best.params.items() if k != "data"}
            mlflow.log_params(_flat({"best": {"model": best_model, "data": best.params["data"]}}))
            mlflow.log_metrics(
                {
                    "n_trials": len(done),
                    "n_failed_trials": n_failed,
                    "search_seconds": search_seconds,
                    **({} if over_budget is None else {"over_budget_seconds": over_budget}),
                    "best_" + VALIDATION_KEY: best.score,
                }
            )
            final = train(
                data_dir,
                model_name,
                best.params,
                protocol=protocol,
                data=main,
                store=store,
                progress=progress,
                tracking=tracking,
                nested=True,
                extra_tags={
                    "tune_best": "true",
                    "tune_params": json.dumps(best.params, sort_keys=True),
                    "tune_parent_run_id": parent.info.run_id,
                    "tune_trial_run_id": best.run_id,
                },
            )
            mlflow.log_metric(
                "best_test_" + metric_key(PRIMARY_METRIC), final["metrics"][PRIMARY_METRIC]
            )
            mlflow.set_tags(
                {
                    "tune_best_run_id": final["run_id"],
                    "tune_model_version": str(final["model_version"]),
                }
            )
        return {
            "parent_run_id": parent.info.run_id,
            "trials": len(done),
            "stopped_by": stopped_by,
            "best_params": best.params,
            "best_validation": round(best.score, 6),
            "model_version": final["model_version"],
            "metrics": final["metrics"],
            "model_name": model_name,
            "protocol": protocol,
            "run_id": final["run_id"],
            "registered_model": final["registered_model"],
            "failed_trials": n_failed,
            "search_seconds": round(search_seconds, 3),
            "over_budget_seconds": None if over_budget is None else round(over_budget, 3),
            "validation": {"fingerprint": validation.fingerprint, **validation.params},
        }


def _limits(trials: int | None, budget_minutes: float | None) -> tuple[int | None, float | None]:
    """(max trials or None, budget in seconds or None)."""
    if trials is not None and trials < 1:
        raise hp.ParamError(f"--trials must be >= 1, got {trials}")
    if budget_minutes is not None and not 0 < budget_minutes < math.inf:
        raise hp.ParamError(f"--budget-minutes must be a number > 0, got {budget_minutes}")
    if trials is None and budget_minutes is None:
        trials = DEFAULT_TRIALS
    return trials, None if budget_minutes is None else budget_minutes * 60.0


def _more(done: list[Trial], started: float, max_trials: int | None, budget: float | None) -> bool:
    """Whether to start another trial: under the count, and expected to end within budget."""
    if max_trials is not None and len(done) >= max_trials:
        return False
    if budget is None or not done:
        return True
    elapsed = time.monotonic() - started
    return elapsed + elapsed / len(done) <= budget


def _new_point(
    model_name: str, protocol: str, rng: np.random.Generator, seen: set[str]
) -> dict[str, Any] | None:
    """A point not tried yet, resolved to full parameters; None if none turns up.

    The first is the defaults, so that a tune never registers a point worse on
    validation than what ``recsys train`` would use without it."""
    for _ in range(MAX_REDRAWS):
        sets = sample(model_name, protocol, rng) if seen else {}
        model_params, config = hp.resolve(model_name, protocol, sets)
        point = {**model_params, "data": config.as_dict()}
        key = json.dumps(point, sort_keys=True)
        if key not in seen:
            seen.add(key)
            return point
    return None


def _run_trial(
    number: int,
    model_name: str,
    point: dict[str, Any],
    validation: ProtocolData,
    store: TableReader,
    contexts: dict[bool, FitContext],
    tracking: Tracking,
) -> Trial:
    """Fit and score one point on the validation split in a nested run."""
    model_params, config = hp.resolve(model_name, validation.name, {}, point)
    with mlflow.start_run(
        experiment_id=tracking.experiment_id,
        nested=True,
        run_name=f"trial-{number:03d}",
        tags=owner_tags(),
    ) as run:
        mlflow.set_tags(
            {
                "model": model_name,
                "protocol": validation.name,
                "validation_fingerprint": validation.fingerprint,
                "tune_trial": str(number),
            }
        )
        mlflow.log_params(_flat({"model": model_params, "data": config.as_dict()}))
        started = time.perf_counter()
        uses_features = model_name in FEATURE_MODELS or any(
            part in FEATURE_MODELS for part in model_params.get("parts", {})
        )
        if uses_features not in contexts:
            contexts[uses_features] = validation.fit_context(store if uses_features else None)
        try:
            matrix = validation.train_matrix(config)
            model = create_model(model_name, **model_params).fit(
                matrix, context=contexts[uses_features]
            )
            result = evaluate(
                model,
                matrix,
                validation.test,
                k=K,
                ks=(K,),
                exclude_train_items=False,
                exclude=validation.bought if validation.name == "stratified" else None,
                progress=False,
            )
        except (ValueError, FloatingPointError) as exc:  # e.g. a diverged fit
            error = f"{type(exc).__name__}: {exc}"[:1000]
            mlflow.set_tag("tune_error", error)
            mlflow.end_run(status="FAILED")
            return Trial(number, run.info.run_id, point, {}, time.perf_counter() - started, error)
        seconds = time.perf_counter() - started
        metrics = result.summary()
        mlflow.log_metrics({"validation_" + metric_key(k): v for k, v in metrics.items()})
        mlflow.log_metric("trial_seconds", seconds)
    return Trial(number, run.info.run_id, point, metrics, seconds)


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys (None as "None"), as ``train`` logs its parameters."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = "None" if value is None else value
    return out
