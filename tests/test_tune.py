"""``recsys tune`` against a real MLflow store (the embedded SQLite default) in a temp dir."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from shops import generated_shop

from recsys.cli import cli
from recsys.data.store import DataStore
from recsys.models.registry import MODELS, create_model
from recsys.protocols import load_protocol, protocol_from_split
from recsys.splits import stratified_split
from training.params import ParamError, defaults_for, resolve
from training.search_space import MODEL_SPACES, sample
from training.tracking import open_tracking
from training.train import train
from training.tune import tune, validation_protocol


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune-shop")
    with generated_shop(root, "tune-test", users=300, items=80, days=60, seed=1):
        yield root


@pytest.fixture(scope="module")
def tuned(shop):
    """Five item-kNN trials through the command line (the best is not the defaults), and
    the versions before them."""
    tracking = open_tracking(shop)
    before = tracking.client.search_model_versions(f"name = '{tracking.registered_model}'")
    args = ["--data", str(shop), "tune", "--model", "itemknn", "--trials", "5", "--seed", "1"]
    result = CliRunner().invoke(cli, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    return tracking, json.loads(result.stdout), len(before)


def _children(tracking, parent_run_id):
    return tracking.client.search_runs(
        [tracking.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )


def test_parent_run_holds_one_child_per_trial_and_the_best_run(tuned):
    tracking, summary, _ = tuned
    assert summary["trials"] == 5
    children = _children(tracking, summary["parent_run_id"])
    trials = [r for r in children if "tune_trial" in r.data.tags]
    finals = [r for r in children if r.data.tags.get("tune_best") == "true"]
    assert len(trials) == 5 and len(finals) == 1 and len(children) == 6
    assert finals[0].info.run_id == summary["run_id"]

    scores = [r.data.metrics["validation_ndcg_at_10"] for r in trials]
    assert (
        len({r.data.params["model.K"] + r.data.params["data.half_life_days"] for r in trials}) > 1
    )
    assert summary["best_validation"] == pytest.approx(max(scores), abs=1e-6)
    best_trial = trials[int(np.argmax(scores))]
    assert best_trial.data.params["model.K"] == str(summary["best_params"]["K"])
    assert finals[0].data.tags["tune_trial_run_id"] == best_trial.info.run_id

    parent = tracking.client.get_run(summary["parent_run_id"])
    assert parent.data.metrics["n_trials"] == 5
    assert parent.data.metrics["best_validation_ndcg_at_10"] == pytest.approx(max(scores))
    assert parent.data.params["best.model.similarity"] == summary["best_params"]["similarity"]
    assert summary["metrics"]["ndcg@10"] == pytest.approx(
        parent.data.metrics["best_test_ndcg_at_10"], abs=1e-6
    )


def test_exactly_one_new_version_is_registered_and_tagged_best(tuned, shop):
    tracking, summary, n_before = tuned
    versions = tracking.client.search_model_versions(f"name = '{tracking.registered_model}'")
    assert len(versions) == n_before + 1
    version = tracking.client.get_model_version(
        tracking.registered_model, str(summary["model_version"])
    )
    assert version.tags["tune_best"] == "true"
    assert json.loads(version.tags["tune_params"]) == summary["best_params"]
    run = tracking.client.get_run(version.run_id)
    assert run.data.tags["tune_parent_run_id"] == summary["parent_run_id"]
    main = load_protocol(DataStore(shop), "temporal")
    assert run.data.tags["data_fingerprint"] == main.fingerprint  # what `recsys train` looks up


def test_train_without_sets_uses_the_tuned_parameters(tuned, shop):
    tracking, summary, _ = tuned
    best = dict(summary["best_params"])
    best_data = best.pop("data")
    defaults, default_config = resolve("itemknn", "temporal", {})
    assert (best, best_data) != (defaults, default_config.as_dict())  # tuning changed something

    out = train(shop, "itemknn", None, progress=False, tracking=tracking)
    assert out["params_source"] == "tuned"
    assert out["tune_parent_run_id"] == summary["parent_run_id"]
    assert out["params"] == best
    assert out["interactions"] == best_data
    params = tracking.client.get_run(out["run_id"]).data.params
    assert params["model.K"] == str(best["K"])
    assert params["model.similarity"] == best["similarity"]
    assert params["data.half_life_days"] == str(best_data["half_life_days"])
    assert params["data.weights.view"] == str(best_data["weights"]["view"])


def test_train_summary_says_whether_the_parameters_are_tuned(tuned, shop):
    tracking, summary, _ = tuned
    args = ["--data", str(shop), "train", "--model", "itemknn", "-q"]
    human = CliRunner().invoke(cli, args)
    assert human.exit_code == 0, human.output
    assert f"parameters found by recsys tune (parent run {summary['parent_run_id']})" in (
        human.stdout
    )
    chosen = CliRunner().invoke(cli, [*args, "--set", "K=20", "--json"])
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["params_source"] == "set"
    other = train(shop, "popular", None, progress=False, tracking=tracking)  # never tuned
    assert other["params_source"] == "defaults" and "tune_parent_run_id" not in other


def test_a_tiny_budget_stops_after_the_first_trial(shop):
    tracking = open_tracking(shop)
    summary = tune(shop, "ease", budget_minutes=1e-6, seed=1, progress=False, tracking=tracking)
    assert summary["trials"] == 1
    trials = [
        r for r in _children(tracking, summary["parent_run_id"]) if "tune_trial" in r.data.tags
    ]
    assert len(trials) == 1
    # the one trial ran past the budget, and the summary says by how much
    assert summary["over_budget_seconds"] > 0
    assert summary["over_budget_seconds"] == pytest.approx(
        summary["search_seconds"] - 60e-6, abs=1e-3
    )
    parent = tracking.client.get_run(summary["parent_run_id"])
    assert parent.data.metrics["over_budget_seconds"] > 0


def test_the_human_summary_says_how_far_past_the_budget_the_search_ran(shop):
    args = ["--data", str(shop), "tune", "--model", "ease", "--budget-minutes", "1e-6", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert " s past --budget-minutes)" in result.stdout
    args = ["--data", str(shop), "tune", "--model", "ease", "--trials", "1", "--json", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["over_budget_seconds"] is None  # no budget


def test_bad_limits_are_refused_before_any_run(shop):
    with pytest.raises(ParamError, match="--trials"):
        tune(shop, "itemknn", trials=0, progress=False)
    with pytest.raises(ParamError, match="--budget-minutes"):
        tune(shop, "itemknn", budget_minutes=0, progress=False)
    with pytest.raises(ParamError, match="--budget-minutes"):  # else a search without end
        tune(shop, "itemknn", budget_minutes=math.inf, progress=False)


def test_temporal_validation_window_lies_before_the_test_window(shop):
    main = load_protocol(DataStore(shop), "temporal")
    validation = validation_protocol(main)
    main_cutoff = pd.Timestamp(main.split.cutoff)
    val_cutoff = pd.Timestamp(validation.split.cutoff)
    # 60 days of events, a 30-day test window: ~29 days before it, so a 14-day validation window
    assert validation.params["test_days"] == 14.0
    assert val_cutoff == main_cutoff - pd.Timedelta(days=14)
    assert validation.split.train["timestamp"].max() < val_cutoff
    assert validation.split.test["timestamp"].min() >= val_cutoff
    assert validation.split.test["timestamp"].max() < main_cutoff
    assert validation.test.nnz > 0
    assert validation.fingerprint != main.fingerprint


def test_stratified_validation_splits_the_train_ratings_again():
    rng = np.random.default_rng(0)
    n = 400
    events = pd.DataFrame(
        {
            "event_id": np.arange(1, n + 1, dtype=np.uint64),
            "timestamp": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "user_id": [f"u{u}" for u in rng.integers(0, 40, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, 20, n)],
            "type": "rating",
            "quantity": 1,
            "value": 4.0,
            "country": "DE",
        }
    )
    params = {"test_fraction": 0.25, "by": "item_id", "seed": 42}
    main = protocol_from_split("stratified", stratified_split(events, seed=42), params)
    validation = validation_protocol(main)
    main_train = set(main.split.train["event_id"])
    val_ids = set(validation.split.train["event_id"]) | set(validation.split.test["event_id"])
    assert val_ids == main_train  # the validation split uses train ratings only
    assert not val_ids & set(main.split.test["event_id"])
    assert validation.params["seed"] == 43
    assert 0.15 < len(validation.split.test) / len(main_train) < 0.35


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_has_a_seeded_space_of_valid_points(model):
    for protocol in ("temporal", "stratified"):
        first = sample(model, protocol, np.random.default_rng(3))
        assert first == sample(model, protocol, np.random.default_rng(3))
        params, config = resolve(model, protocol, first)
        create_model(model, **params)  # raises on an invalid point
        weights = config.weights
        if protocol == "temporal":
            assert weights["refund"] == -weights["purchase"]


def test_train_without_sets_uses_the_best_of_several_tunes_not_the_latest(tuned, shop):
    tracking, first, _ = tuned
    later = tune(shop, "itemknn", trials=1, seed=2, progress=False, tracking=tracking)
    assert later["best_validation"] < first["best_validation"]  # a worse, later tune
    assert later["best_params"] != first["best_params"]

    out = train(shop, "itemknn", None, progress=False, tracking=tracking)
    best = dict(first["best_params"])
    assert out["interactions"] == best.pop("data")
    assert out["params"] == best


def test_the_summary_says_why_the_search_stopped(tuned, shop, monkeypatch):
    tracking, summary, _ = tuned
    assert summary["stopped_by"] == "trials"
    parent = tracking.client.get_run(summary["parent_run_id"])
    assert parent.data.tags["tune_stopped_by"] == "trials"
    tiny = tune(shop, "ease", budget_minutes=1e-6, seed=1, progress=False, tracking=tracking)
    assert tiny["stopped_by"] == "budget"
    # a space of one point besides the defaults: the second draw finds nothing new
    monkeypatch.setattr("training.tune.sample", lambda model, protocol, rng: {"K": 20})
    args = ["--data", str(shop), "tune", "--model", "itemknn", "--trials", "5", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (
        "2 trials in" in result.output and "every point of the search space tried" in result.output
    )


def test_a_seeded_bpr_tune_is_reproducible(shop):
    """BPR's Hogwild SGD on several threads differs from fit to fit, whatever its seed."""
    tracking = open_tracking(shop)
    runs = [
        tune(shop, "bpr", trials=2, seed=4, progress=False, tracking=tracking) for _ in range(2)
    ]
    assert runs[0]["best_params"] == runs[1]["best_params"]
    assert runs[0]["best_validation"] == runs[1]["best_validation"]
    assert runs[0]["metrics"] == runs[1]["metrics"]


def test_when_every_trial_fails_the_error_says_why_and_every_run_is_closed(shop, monkeypatch):
    class Diverging:
        def fit(self, matrix, context=None):
            raise ValueError("factors diverged to NaN")

    monkeypatch.setattr("training.tune.create_model", lambda name, **params: Diverging())
    tracking = open_tracking(shop)
    args = ["--data", str(shop), "tune", "--model", "als", "--trials", "2", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2  # a one-line error
    assert "all 2 trials failed (ValueError: factors diverged to NaN)" in result.output
    parent_id = result.output.rsplit("child runs of ", 1)[1].split()[0]
    assert tracking.client.get_run(parent_id).info.status == "FAILED"
    children = _children(tracking, parent_id)
    assert len(children) == 2 and {r.info.status for r in children} == {"FAILED"}


def test_a_protocol_whose_settings_leave_nothing_to_fit_is_refused_before_any_trial(shop):
    """Shop events hold no ratings, and stratified settings weigh only ratings."""
    tracking = open_tracking(shop)
    before = len(tracking.client.search_runs([tracking.experiment_id], max_results=1000))
    args = ["--data", str(shop), "tune", "--model", "itemknn", "--protocol", "stratified"]
    result = CliRunner().invoke(cli, [*args, "--trials", "2", "-q"])
    assert result.exit_code == 2, result.output
    assert "leave no interactions to fit on" in result.output
    assert len(tracking.client.search_runs([tracking.experiment_id], max_results=1000)) == before


def test_the_first_trial_is_the_defaults_so_a_tune_never_registers_worse(shop):
    tracking = open_tracking(shop)
    summary = tune(shop, "als", trials=3, seed=5, progress=False, tracking=tracking)
    trials = {
        int(r.data.tags["tune_trial"]): r
        for r in _children(tracking, summary["parent_run_id"])
        if "tune_trial" in r.data.tags
    }
    defaults, config = resolve("als", "temporal", {})
    first = trials[0].data.params
    assert first["model.alpha"] == str(defaults["alpha"])
    assert first["model.factors"] == str(defaults["factors"])
    assert first["data.weights.purchase"] == str(config.weights["purchase"])
    scores = [t.data.metrics["validation_ndcg_at_10"] for t in trials.values()]
    assert summary["best_validation"] == pytest.approx(max(scores), abs=1e-6)
    assert summary["best_validation"] >= trials[0].data.metrics["validation_ndcg_at_10"] - 1e-6


@pytest.mark.parametrize("protocol", ["temporal", "stratified"])
@pytest.mark.parametrize("model", sorted(MODEL_SPACES))
def test_every_search_space_holds_the_default_settings(model, protocol):
    """A search confined away from the defaults (ALS's alpha 0.1 under the temporal
    protocol was below the space's 0.5) cannot find settings near the known good ones."""
    params = defaults_for(model, protocol)
    params.pop("data", None)
    effective = create_model(model, **params).get_params()
    for key, sampler in MODEL_SPACES[model].items():
        assert sampler.covers(effective[key]), (model, protocol, key, effective[key])
