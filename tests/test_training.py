"""Training jobs against a real MLflow store in a temporary data directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from shops import generated_shop

from recsys.bundle import ModelBundle
from recsys.cli import cli
from recsys.data.store import DataStore
from recsys.data.synthetic import generate_shop
from training.params import ParamError, defaults_for, parse_sets, resolve
from training.promote import PromotionRefused, champion, list_versions, promote, rollback
from training.tracking import (
    CHAMPION,
    PID_TAG,
    PROCESS_TAG,
    Tracking,
    close_orphaned_runs,
    open_tracking,
    owner_tags,
)
from training.train import train


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small synthetic shop with its own MLflow store (embedded SQLite default)."""
    root = tmp_path_factory.mktemp("shop")
    with generated_shop(root, "test-shop", users=600, items=120, days=90, seed=3):
        yield root


@pytest.fixture(scope="module")
def trained(shop):
    """Two versions: global popularity and item-kNN, trained on the same split."""
    tracking = open_tracking(shop)
    pop = train(shop, "popular", {"by": "global"}, progress=False, tracking=tracking)
    knn = train(shop, "itemknn", {}, progress=False, tracking=tracking)
    return tracking, pop, knn


def test_a_run_logs_params_metrics_fingerprint_and_artifacts(trained, shop):
    tracking, pop, _ = trained
    assert pop["protocol"] == "temporal"
    assert 0 < pop["metrics"]["ndcg@10"] <= 1
    assert "ndcg@10" in pop["metrics_new_items"]
    run = tracking.client.get_run(pop["run_id"])
    assert run.data.params["model.by"] == "global"
    assert run.data.params["data.weights.purchase"] == "10.0"
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(pop["metrics"]["ndcg@10"], abs=1e-6)
    assert run.data.tags["data_fingerprint"] == pop["data_fingerprint"]
    assert run.data.tags["code_version"]
    # memory: the process's resident set before the fit, and its peak after it
    assert 0 < pop["rss_before_fit_mb"] <= pop["peak_rss_mb"]
    assert run.data.metrics["peak_rss_mb"] == pytest.approx(pop["peak_rss_mb"], abs=0.1)
    artifacts = {a.path for a in tracking.client.list_artifacts(pop["run_id"], "reports")}
    assert artifacts == {
        "reports/metrics_by_slice.csv",
        "reports/metric_vs_k.png",
        "reports/cold_users_per_user.csv",  # popularity ranks new users too
    }
    # the cold slice user by user, keyed by user id: its mean is the logged metric
    cold = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=pop["run_id"], artifact_path="reports/cold_users_per_user.csv"
        )
    )
    assert len(cold) == pop["metrics_cold_users"]["n_users"] and cold["user_id"].is_unique
    assert cold["ndcg@10"].mean() == pytest.approx(pop["metrics_cold_users"]["ndcg@10"], abs=1e-6)
    assert (shop / "mlflow" / "mlflow.db").exists()  # the embedded default store


def test_registered_bundle_loads_and_recommends_like_the_trained_model(trained):
    tracking, _, knn = trained
    path = mlflow.artifacts.download_artifacts(
        f"models:/{tracking.registered_model}/{knn['model_version']}"
    )
    bundle = ModelBundle.load(path)
    assert bundle.model.name == "itemknn"
    assert bundle.meta["data_fingerprint"] == knn["data_fingerprint"]
    assert len(bundle.user_map) > 0 and len(bundle.item_map) > 0
    user = 0
    row = np.zeros((1, len(bundle.item_map)), dtype=np.float32)
    row[0, :3] = 1.0
    import scipy.sparse as sp

    ids, _ = bundle.model.recommend(user, sp.csr_matrix(row), N=5)
    assert len(ids) == 5 and not set(ids) & {0, 1, 2}


def test_promotion_gate_win_loss_force_and_rollback(trained):
    tracking, pop, knn = trained
    better, worse = sorted([pop, knn], key=lambda s: -s["metrics"]["ndcg@10"])
    assert better["metrics"]["ndcg@10"] > worse["metrics"]["ndcg@10"]

    first = promote(tracking, worse["model_version"])  # no champion yet: it wins
    assert first["promoted"] and first["champion_version"] is None
    won = promote(tracking, better["model_version"])
    assert won["promoted"] and won["champion_version"] == worse["model_version"]
    assert int(champion(tracking).version) == better["model_version"]

    with pytest.raises(PromotionRefused, match="lost by") as refused:
        promote(tracking, worse["model_version"])
    gap = better["metrics"]["ndcg@10"] - worse["metrics"]["ndcg@10"]
    assert refused.value.decision["lost_by"] == pytest.approx(gap, abs=1e-5)
    assert int(champion(tracking).version) == better["model_version"]
    args = ["--data", str(tracking.data_dir), "models", "promote", tracking.registered_model]
    lost = CliRunner().invoke(cli, [*args, str(worse["model_version"])])
    assert lost.exit_code == 2 and "lost by" in lost.output
    assert '--force --reason "..." promotes it anyway' in lost.output  # what to do about it

    with pytest.raises(PromotionRefused, match="--reason"):
        promote(tracking, worse["model_version"], force=True)
    forced = promote(tracking, worse["model_version"], force=True, reason="canary of the old one")
    assert forced["promoted"] and forced["forced"]
    version = tracking.client.get_model_version(
        tracking.registered_model, str(worse["model_version"])
    )
    assert version.tags["promotion_reason"] == "canary of the old one"
    assert int(champion(tracking).version) == worse["model_version"]

    back = rollback(tracking)
    assert back["champion_version"] == better["model_version"]
    listed = {v["version"]: v for v in list_versions(tracking)}
    assert CHAMPION in listed[better["model_version"]]["aliases"]
    assert listed[worse["model_version"]]["model"] == worse["model_name"]


def test_gate_refuses_a_version_trained_on_other_data(trained, shop):
    tracking, pop, knn = trained
    current = int(champion(tracking).version)
    other = train(
        shop, "popular", {"by": "global"}, cutoff="2024-02-15", progress=False, tracking=tracking
    )
    assert other["data_fingerprint"] != pop["data_fingerprint"]
    with pytest.raises(PromotionRefused, match="other data or protocol"):
        promote(tracking, other["model_version"])
    assert int(champion(tracking).version) == current


def test_activity_slice_labels_a_customer_who_only_browsed_zero():
    """Temporal protocol: activity counts train purchases; a viewer has none."""
    from recsys.protocols import protocol_from_split
    from recsys.splits import temporal_split
    from training.train import _slices

    rows = [
        ("a", "x", "purchase", "2024-01-01"),
        ("a", "y", "purchase", "2024-01-02"),
        ("b", "x", "purchase", "2024-01-03"),
        ("c", "y", "view", "2024-01-04"),  # c only browsed before the cut-off
        ("a", "x", "purchase", "2024-02-02"),
        ("b", "y", "purchase", "2024-02-03"),
        ("c", "x", "purchase", "2024-02-04"),
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "timestamp"])
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True)
    events["event_id"] = np.arange(1, len(events) + 1, dtype=np.uint64)
    events["country"] = "DE"
    data = protocol_from_split("temporal", temporal_split(events, "2024-02-01"))
    labels = _slices(data, data.train_matrix())["activity"]
    users = data.user_map.ids(np.arange(len(data.user_map)))
    assert dict(zip(users, labels, strict=True)) == {"a": "2-5", "b": "1", "c": "0"}


def test_stratified_evaluation_drops_every_train_rating_from_the_ranking():
    """A rating that min_weight keeps out of the matrix is still a train item."""
    from recsys.models import create_model
    from recsys.protocols import protocol_from_split
    from recsys.splits import Split
    from training.train import _evaluate

    def ratings(rows):
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "value"])
        frame["type"] = "rating"
        frame["timestamp"] = pd.Timestamp("2024-01-01", tz="UTC")
        frame["country"] = None
        return frame

    train_events = ratings(
        [("u1", "x", 1.0), ("u2", "x", 1.0), ("u3", "x", 1.0)]  # x: popular, rated low
        + [("u2", "y", 5.0), ("u3", "y", 5.0), ("u1", "w", 5.0)]
    )
    test_events = ratings([("u1", "y", 5.0)])
    train_events["event_id"] = np.arange(1, 7, dtype=np.uint64)
    test_events["event_id"] = np.array([7], dtype=np.uint64)
    data = protocol_from_split("stratified", Split(train_events, test_events, {}))
    _, config = resolve("popular", "stratified", {"data": {"min_weight": 3}})
    matrix = data.train_matrix(config)
    assert matrix[:, data.item_map.index(["x"])].nnz == 0  # u1's rating of x is not in it
    model = create_model("popular").fit(data.bought)  # x most popular, then y
    result = _evaluate(model, data, matrix, {}, progress=False)["all"]
    assert result.summary()["precision@1"] == 1.0  # y, not the already rated x


def test_sets_build_model_data_and_blend_parameters():
    sets = parse_sets(
        ["factors=128", "data.half_life_days=30", "data.weights.view=0.5", "use_cg=false", "name=x"]
    )
    assert sets == {
        "factors": 128,
        "data": {"half_life_days": 30, "weights": {"view": 0.5}},
        "use_cg": False,
        "name": "x",
    }
    params, config = resolve("als", "temporal", sets)
    assert params["factors"] == 128
    assert params["regularization"] == defaults_for("als", "temporal")["regularization"]
    assert config.half_life_days == 30 and config.weights["view"] == 0.5
    assert config.weights["purchase"] == 10.0
    blend, _ = resolve(
        "blend", "temporal", parse_sets(["parts.als=0.5", "parts.buy-again=0.5", "als.factors=16"])
    )
    assert blend["parts"] == {"als": 0.5, "buy-again": 0.5}
    assert blend["part_params"]["als"] == {"factors": 16}
    with pytest.raises(ParamError, match="unknown data settings"):
        resolve("als", "temporal", parse_sets(["data.decay=3"]))
    with pytest.raises(ParamError, match="key=value"):
        parse_sets(["factors"])


def test_cli_train_json_and_refusal_exit_code(shop, trained, monkeypatch):
    tracking, pop, _ = trained
    monkeypatch.setenv("RECSYS_REGISTERED_MODEL", "test-shop")
    cmd = [
        sys.executable,
        "-m",
        "recsys",
        "--data",
        str(shop),
        "train",
        "--model",
        "popular",
        "--set",
        "by=country",
        "--json",
        "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert {"run_id", "model_name", "model_version", "metrics"} <= set(out)
    assert out["metrics"]["ndcg@10"] > 0
    bad = subprocess.run(
        cmd[:-4] + ["--set", "by=planet", "--quiet"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: popular:")
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys",
            "--data",
            str(shop),
            "models",
            "promote",
            "test-shop",
            "999",
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "no version 999" in refused.stderr
    args = ["--data", str(shop), "models", "promote", "test-shop", str(pop["model_version"])]
    unforced = CliRunner().invoke(cli, [*args, "--reason", "Black Friday"])
    assert unforced.exit_code == 2 and "--reason is recorded with --force only" in unforced.output


def test_cli_train_refuses_unusable_data_and_cutoffs_with_one_line(
    shop, trained, tmp_path, monkeypatch
):
    tracking, _, _ = trained
    before = len(list_versions(tracking))
    runner = CliRunner()
    cases = {
        "garbage": "garbage",  # not a date
        "1999-01-01": "no events to train on",  # before every event
        "2030-01-01": "no test interactions",  # after every event: NaN metrics
    }
    for cutoff, message in cases.items():
        args = ["--data", str(shop), "train", "--model", "popular", "--cutoff", cutoff, "-q"]
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (cutoff, result.output)
        assert result.output.startswith("error: ") and message in result.output
    empty = runner.invoke(cli, ["--data", str(tmp_path), "train", "--model", "popular", "-q"])
    assert empty.exit_code == 2 and "holds no events" in empty.output
    typo = tmp_path / "no-such-shop"  # a mistyped --data is not made into a data directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set by MLflow in this process
    mistyped = runner.invoke(cli, ["--data", str(typo), "train", "--model", "popular", "-q"])
    assert mistyped.exit_code == 2 and "holds no events" in mistyped.output
    assert not typo.exists()
    assert len(list_versions(tracking)) == before  # nothing registered


def test_a_cutoff_the_protocol_would_ignore_is_refused(tmp_path, monkeypatch):
    """Ratings get the stratified protocol, which has no cut-off: --cutoff was
    silently ignored, and the run looked as if evaluated at that date."""
    from recsys.data.importing import import_source

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rng = np.random.default_rng(0)
    n = 600
    ratings = tmp_path / "ratings.csv"
    pd.DataFrame(
        {
            "event_id": np.arange(1, n + 1),
            "timestamp": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "user_id": [f"u{u}" for u in rng.integers(0, 40, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, 20, n)],
            "type": "rating",
            "quantity": 1,
            "value": 4.0,
        }
    ).to_csv(ratings, index=False)
    root = tmp_path / "ratings"
    import_source(DataStore(root), "events", ratings, progress=False)
    for output in _train_and_tune_refusals(root, "--cutoff", "2024-01-10"):
        assert output.startswith("error: --cutoff is for the temporal protocol")
        assert len(output.splitlines()) == 1
    assert not (root / "mlflow").exists()  # refused before any run


def test_sets_of_the_wrong_shape_are_param_errors_not_tracebacks(shop):
    bad = {
        ("als", "data=5"): "data takes settings",
        ("als", "data.weights=3"): "data.weights takes settings",
        ("als", "data.weights.view=[1]"): "a weight is a number",
        ("blend", "als=5"): "als takes settings",
        ("blend", "parts=abc"): "parts takes settings",
        ("popular", "data.use_quantity=5"): "use_quantity=5: expected true or false",
        ("popular", 'data.half_life_days="30"'): "half_life_days='30': expected a number",
        ("popular", "data.min_weight=Infinity"): "min_weight=inf: not a finite number",
    }
    for (model, pair), message in bad.items():
        with pytest.raises(ParamError, match=message):
            resolve(model, "temporal", parse_sets([pair]))
    args = ["--data", str(shop), "train", "--model", "als", "--set", "data=5", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.output.startswith("error: data=5: ")
    for pair, message in {
        "regularization=Infinity": "not a finite number",
        "alpha=1e38": "diverged",
    }.items():
        args = ["--data", str(shop), "train", "--model", "als", "--set", pair, "-q"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: als") and message in result.output


def test_a_stratified_split_too_small_to_use_does_not_advise_a_cutoff(tmp_path, monkeypatch):
    """Its error said "choose a later --cutoff", which the stratified protocol refuses."""
    from recsys.data.importing import import_source

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(
        "event_id,timestamp,user_id,item_id,type,quantity,value\n"
        "1,2024-01-01T00:00:00Z,u1,i1,rating,1,4.0\n"
        "2,2024-01-02T00:00:00Z,u2,i2,rating,1,3.0\n"
    )
    root = tmp_path / "ratings"
    import_source(DataStore(root), "events", ratings, progress=False)
    result = CliRunner().invoke(cli, ["--data", str(root), "train", "--model", "popular", "-q"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: the stratified split (")
    assert "--cutoff" not in result.output and "too few events" in result.output


def test_the_temporal_protocol_on_ratings_says_it_tests_purchases(tmp_path, monkeypatch):
    """--protocol temporal on ratings said to choose another --cutoff, which cannot help:
    the protocol tests purchases, and ratings hold none."""
    from recsys.data.importing import import_source

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ratings = tmp_path / "ratings.csv"
    rows = [f"{i},2024-01-{i:02d}T00:00:00Z,u{i % 5},i{i % 7},rating,1,4.0" for i in range(1, 29)]
    ratings.write_text("event_id,timestamp,user_id,item_id,type,quantity,value\n" + "\n".join(rows))
    root = tmp_path / "ratings"
    import_source(DataStore(root), "events", ratings, progress=False)
    for output in _train_and_tune_refusals(root, "--protocol", "temporal"):
        assert output == (
            "error: the temporal protocol tests purchases, and the events hold none "
            "(types: rating); for ratings use --protocol stratified\n"
        )


def test_a_reference_time_before_the_events_is_a_one_line_error(shop):
    """The interaction matrix refuses events after data.reference_time (decay needs
    ages >= 0): train printed its ValueError as a traceback."""
    sets = ["--set", "data.half_life_days=30", "--set", "data.reference_time=2000-01-01"]
    args = ["--data", str(shop), "train", "--model", "popular", *sets, "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: data settings: events after reference_time")
    assert len(result.output.splitlines()) == 1


def test_interaction_settings_that_keep_nothing_are_refused_before_fitting(shop, trained):
    tracking, _, _ = trained
    before = len(list_versions(tracking))
    no_weights = ("view", "add_to_cart", "purchase")
    cases = {
        ("popular", "data.min_weight=1e9"): "leave no interactions",
        ("itemknn", *(f"data.weights.{t}=0" for t in no_weights)): "leave no interactions",
    }
    for (model, *pairs), message in cases.items():
        sets = [a for pair in pairs for a in ("--set", pair)]
        args = ["--data", str(shop), "train", "--model", model, *sets, "-q"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (pairs, result.output)
        assert result.output.startswith("error: ") and message in result.output, result.output
    assert len(list_versions(tracking)) == before  # nothing registered


def test_cli_train_promote_that_loses_still_prints_the_summary(shop, trained):
    tracking, pop, knn = trained
    better, worse = sorted([pop, knn], key=lambda s: -s["metrics"]["ndcg@10"])
    current = champion(tracking)
    if current is None or int(current.version) != better["model_version"]:
        promote(tracking, better["model_version"], force=True, reason="a known champion")
    sets = [a for k, v in worse["params"].items() for a in ("--set", f"{k}={json.dumps(v)}")]
    args = ["--data", str(shop), "train", "--model", worse["model_name"], *sets, "--promote"]
    result = CliRunner().invoke(cli, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # the run and its registered version are reported
    assert {"run_id", "model_name", "model_version", "metrics"} <= set(out)
    assert out["model_version"] > better["model_version"]
    assert out["promotion"]["promoted"] is False and "lost by" in out["promotion"]["refused"]
    assert int(champion(tracking).version) == better["model_version"]


def _fake_version(tracking, fingerprint, value):
    """A registered version whose run logged ``value`` as its NDCG@10."""
    client = tracking.client
    tags = {"model": "popular", "protocol": "temporal", "data_fingerprint": fingerprint}
    run = client.create_run(tracking.experiment_id, tags=tags)
    client.log_metric(run.info.run_id, "ndcg_at_10", value)
    client.set_terminated(run.info.run_id)
    source = f"runs:/{run.info.run_id}/model"
    return int(
        client.create_model_version(
            tracking.registered_model, source, run_id=run.info.run_id, tags=tags
        ).version
    )


def test_gate_treats_a_nan_metric_as_missing(trained):
    shared, _, _ = trained
    tracking = Tracking(shared.data_dir, shared.tracking_uri, shared.experiment_id, "nan-gate")
    tracking.client.create_registered_model(tracking.registered_model)
    first = _fake_version(tracking, "fp", 0.2)
    nan = _fake_version(tracking, "fp", float("nan"))
    later = _fake_version(tracking, "fp", 0.1)
    promote(tracking, first)

    with pytest.raises(PromotionRefused, match="has no ndcg@10 to compare") as refused:
        promote(tracking, nan)  # not "lost by nan"
    assert refused.value.decision["lost_by"] is None
    assert int(champion(tracking).version) == first

    promote(tracking, nan, force=True, reason="canary")
    won = promote(tracking, later)  # a champion without a number does not block forever
    assert won["promoted"] and won["champion_value"] is None
    listed = {v["version"]: v for v in list_versions(tracking)}
    assert listed[nan]["ndcg@10"] is None  # null in --json, not NaN


def test_rollback_after_the_champion_version_was_deleted_happens_once(trained):
    shared, _, _ = trained
    tracking = Tracking(shared.data_dir, shared.tracking_uri, shared.experiment_id, "gone-gate")
    tracking.client.create_registered_model(tracking.registered_model)
    first = _fake_version(tracking, "fp", 0.1)
    second = _fake_version(tracking, "fp", 0.2)
    promote(tracking, first)
    promote(tracking, second)
    tracking.client.delete_model_version(tracking.registered_model, str(second))
    assert champion(tracking) is None

    back = rollback(tracking)
    assert back["champion_version"] == first and back["previous_champion_version"] is None
    aliases = tracking.client.get_registered_model(tracking.registered_model).aliases
    assert aliases == {CHAMPION: first}  # not previous-champion = champion
    with pytest.raises(PromotionRefused, match="no previous champion"):
        rollback(tracking)  # not a no-op reported as done


def test_a_champion_of_other_data_is_refreshed_by_its_recipe_and_challengers_meet_that(
    shop, monkeypatch
):
    monkeypatch.setenv("RECSYS_REGISTERED_MODEL", "refresh-shop")  # a registry of its own
    tracking = open_tracking(shop)

    def fit(model, sets, cutoff):
        return train(shop, model, dict(sets), cutoff=cutoff, progress=False, tracking=tracking)

    old = fit("popular", {"by": "global"}, "2024-02-10")
    assert promote(tracking, old["model_version"])["promoted"]
    knn = fit("itemknn", {}, "2024-02-20")  # newer data, another recipe: nothing to meet yet
    with pytest.raises(PromotionRefused, match=r"train the champion's recipe \(popular\)"):
        promote(tracking, knn["model_version"])

    again = fit("popular", {"by": "global"}, "2024-02-20")  # the champion's recipe, new data
    assert again["data_fingerprint"] == knn["data_fingerprint"] != old["data_fingerprint"]
    if knn["metrics"]["ndcg@10"] > again["metrics"]["ndcg@10"]:
        won = promote(tracking, knn["model_version"])
        assert won["promoted"] and won["rival_version"] == again["model_version"]
        assert won["champion_value"] == pytest.approx(again["metrics"]["ndcg@10"], abs=1e-6)
    else:
        with pytest.raises(PromotionRefused, match="the champion's recipe retrained") as lost:
            promote(tracking, knn["model_version"])
        assert lost.value.decision["rival_version"] == again["model_version"]
        refreshed = promote(tracking, again["model_version"])  # the recipe on new data
        assert refreshed["promoted"] and refreshed["refresh"]
        assert refreshed["champion_version"] == old["model_version"]
    current = champion(tracking)
    assert current.tags["data_fingerprint"] == knn["data_fingerprint"]

    # whatever won, its own recipe trained on newer data again replaces it, not on older
    recipe = json.loads(current.tags["recipe"])
    sets = {**recipe["params"], "data": recipe["data"]}
    with pytest.raises(PromotionRefused, match="does not go back in time"):
        promote(tracking, fit(recipe["model"], sets, "2024-02-15")["model_version"])
    newer = fit(recipe["model"], sets, "2024-02-25")
    decision = promote(tracking, newer["model_version"])
    assert decision["promoted"] and decision["refresh"]
    assert int(champion(tracking).version) == newer["model_version"]
    assert rollback(tracking)["champion_version"] == int(current.version)
    # on the same data the recipe alone wins nothing: a tie is refused as before
    with pytest.raises(PromotionRefused, match="lost by"):
        promote(tracking, fit(recipe["model"], sets, "2024-02-20")["model_version"])


def test_a_champion_whose_run_was_purged_is_listed_beaten_and_not_published(shop, monkeypatch):
    monkeypatch.setenv("RECSYS_REGISTERED_MODEL", "purged-shop")  # a registry of its own
    tracking = open_tracking(shop)
    gone = train(shop, "popular", {"by": "global"}, progress=False, tracking=tracking)
    other = train(shop, "popular", {"by": "country"}, progress=False, tracking=tracking)
    promote(tracking, gone["model_version"])
    tracking.client.delete_run(gone["run_id"])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri}
    purge = [sys.executable, "-m", "mlflow", "gc", "--run-ids", gone["run_id"]]
    subprocess.run(purge, env=env, check=True, capture_output=True)

    listed = CliRunner().invoke(cli, ["--data", str(shop), "models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {v["version"]: v for v in json.loads(listed.stdout)["versions"]}
    assert rows[gone["model_version"]]["ndcg@10"] is None
    assert rows[gone["model_version"]]["run_missing"] is True
    assert rows[other["model_version"]]["run_missing"] is False

    published = CliRunner().invoke(cli, ["--data", str(shop), "publish", "-q"])
    assert published.exit_code == 2, published.output
    assert "cannot be read" in published.output and "Traceback" not in published.output

    won = promote(tracking, other["model_version"])  # a champion without a number
    assert won["promoted"] and won["champion_value"] is None


def test_each_data_directory_keeps_its_own_store_in_one_process(shop, tmp_path, monkeypatch):
    first = open_tracking(shop)  # MLflow exports this store as MLFLOW_TRACKING_URI
    other = tmp_path / "other shop ü"  # a space and a non-ASCII letter, too
    generate_shop(DataStore(other), users=200, items=40, days=60, seed=5, progress=False)
    out = train(other, "popular", {"by": "global"}, progress=False)
    second = open_tracking(other)
    assert second.tracking_uri != first.tracking_uri
    assert (other / "mlflow" / "mlflow.db").exists()
    assert second.client.get_run(out["run_id"]).info.status == "FINISHED"
    assert open_tracking(shop).tracking_uri == first.tracking_uri

    chosen = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # the user's own choice still wins
    monkeypatch.setenv("MLFLOW_TRACKING_URI", chosen)
    assert open_tracking(other).tracking_uri == chosen


def test_a_copied_data_directory_never_writes_artifacts_into_the_original(tmp_path, monkeypatch):
    """The experiment of a default store names its artifact folder by absolute path:
    a copy's runs wrote their artifacts into the original directory."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECSYS_EXPERIMENT", raising=False)
    original, copy = tmp_path / "original", tmp_path / "copy"
    generate_shop(DataStore(original), users=200, items=40, days=60, seed=5, progress=False)
    train(original, "popular", {"by": "global"}, progress=False)
    shutil.copytree(original, copy)
    runs = sorted(p.name for p in (original / "mlflow" / "artifacts").iterdir())

    for args in (["train", "--model", "popular"], ["tune", "--model", "popular", "--trials", "1"]):
        result = CliRunner().invoke(cli, ["--data", str(copy), *args, "-q"])
        assert result.exit_code == 2, result.output
        assert "copied or moved" in result.output and "RECSYS_EXPERIMENT" in result.output
    assert sorted(p.name for p in (original / "mlflow" / "artifacts").iterdir()) == runs

    monkeypatch.setenv("RECSYS_EXPERIMENT", "copy")
    out = train(copy, "popular", {"by": "global"}, progress=False)
    assert (copy / "mlflow" / "artifacts" / out["run_id"]).is_dir()
    assert sorted(p.name for p in (original / "mlflow" / "artifacts").iterdir()) == runs


def test_a_data_directory_moved_with_a_symlink_left_in_its_place_still_trains(
    tmp_path, monkeypatch
):
    """Its experiment's artifact folder, named by the old path, is reached through the
    symlink: the same folder, so runs are not refused as those of a copy."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECSYS_EXPERIMENT", raising=False)
    old, new = tmp_path / "old", tmp_path / "new"
    generate_shop(DataStore(old), users=200, items=40, days=60, seed=5, progress=False)
    train(old, "popular", {"by": "global"}, progress=False)
    old.rename(new)
    old.symlink_to(new, target_is_directory=True)
    out = train(new, "popular", {"by": "global"}, progress=False)
    assert (new / "mlflow" / "artifacts" / out["run_id"]).is_dir()


KILLED_MID_LOGGING = """
import os, signal, sys
import training.train as job
job._log_reports = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # mid-logging
job.train(sys.argv[1], "popular", {"by": "global"}, progress=False)
"""


def test_a_run_whose_process_was_killed_is_marked_killed_by_the_next_job(shop, trained, caplog):
    tracking, _, _ = trained
    before = len(list_versions(tracking))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "MLFLOW_TRACKING_URI": tracking.tracking_uri}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_LOGGING, str(shop)], env=env, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    running = tracking.client.search_runs([tracking.experiment_id], "attributes.status = 'RUNNING'")
    assert len(running) == 1  # left behind, as MLflow cannot close it
    run_id = running[0].info.run_id

    listed = CliRunner().invoke(cli, ["--data", str(shop), "models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert f"run {run_id}" in caplog.text and "marked KILLED" in caplog.text  # on stderr
    run = tracking.client.get_run(run_id)
    assert run.info.status == "KILLED" and "ended without closing" in run.data.tags["killed"]
    assert len(json.loads(listed.stdout)["versions"]) == before  # nothing half-registered


def test_orphaned_runs_are_told_apart_by_machine_boot_namespace_and_start_time(tmp_path):
    tracking = open_tracking(tmp_path / "shop")
    client = tracking.client
    mine = owner_tags()
    if PROCESS_TAG not in mine:
        pytest.skip("no /proc here: runs are told apart by host and pid only")
    machine, boot, namespace, started = mine[PROCESS_TAG].split("/")
    gone_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    def run_tagged(pid: str, process: str) -> str:
        tags = {**mine, PID_TAG: pid, PROCESS_TAG: process}
        return client.create_run(tracking.experiment_id, tags=tags).info.run_id

    runs = {
        "live": run_tagged(mine[PID_TAG], mine[PROCESS_TAG]),
        # this pid, but a process started at another time: the pid was reused
        "reused_pid": run_tagged(mine[PID_TAG], f"{machine}/{boot}/{namespace}/1"),
        "ended": run_tagged(gone_pid, f"{machine}/{boot}/{namespace}/{started}"),
        "rebooted": run_tagged(mine[PID_TAG], f"{machine}/an-earlier-boot/{namespace}/{started}"),
        # a container of the same host name: other pids, not ours to judge
        "other_namespace": run_tagged(gone_pid, f"{machine}/{boot}/1/{started}"),
        "other_machine": run_tagged(gone_pid, f"another-machine/{boot}/{namespace}/{started}"),
        "unknown_machine": run_tagged(gone_pid, f"/other-boot/{namespace}/{started}"),
        "tagged_before": run_tagged(gone_pid, ""),  # no process tag: the pid alone decides
    }
    closed = set(close_orphaned_runs(tracking))
    killed = {name for name, run_id in runs.items() if run_id in closed}
    assert killed == {"reused_pid", "ended", "rebooted", "tagged_before"}
    for name, run_id in runs.items():
        assert client.get_run(run_id).info.status == ("KILLED" if name in killed else "RUNNING")
    assert "machine restarted" in client.get_run(runs["rebooted"]).data.tags["killed"]


def test_orphaned_runs_without_a_machine_id_are_told_apart_by_boot(tmp_path, monkeypatch):
    """A machine without /etc/machine-id (slim containers) never closed a killed run."""
    import training.tracking as tracking_module

    tracking = open_tracking(tmp_path / "shop")
    mine = owner_tags()
    if PROCESS_TAG not in mine:
        pytest.skip("no /proc here: runs are told apart by host and pid only")
    _, boot, namespace, started = mine[PROCESS_TAG].split("/")
    monkeypatch.setattr(tracking_module, "_pid_scope", lambda: ("", boot, namespace))
    client = tracking.client

    def run_tagged(process: str) -> str:
        tags = {**mine, PROCESS_TAG: process}  # this live pid
        return client.create_run(tracking.experiment_id, tags=tags).info.run_id

    reused = run_tagged(f"/{boot}/{namespace}/1")  # this boot, another process start
    live = run_tagged(f"/{boot}/{namespace}/{started}")
    elsewhere = run_tagged(f"/another-boot/{namespace}/1")  # another machine, or before a restart
    assert set(close_orphaned_runs(tracking)) == {reused}
    assert client.get_run(live).info.status == client.get_run(elsewhere).info.status == "RUNNING"


def test_a_store_mlflow_refuses_to_open_is_a_one_line_error(shop, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())  # a file store
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    for args in (["models", "list"], ["train", "--model", "popular", "-q"]):
        result = CliRunner().invoke(cli, ["--data", str(shop), *args])
        assert result.exit_code == 2, result.output
        assert (
            result.output.startswith("error: the MLflow store file://")
            and len(result.output.splitlines()) == 1
        )


def test_a_database_store_that_cannot_be_opened_is_a_one_line_error(shop, tmp_path, monkeypatch):
    """MLflow lets a path that cannot hold the database file (OSError) and a
    database without its driver (ImportError) through as they are: tracebacks."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    uris = [f"sqlite:///{blocker}/mlflow.db"]
    try:
        import psycopg  # noqa: F401
    except ImportError:
        uris.append("postgresql://user:secret@127.0.0.1:9/shop")
    for uri in uris:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for args in (["models", "list"], ["train", "--model", "popular", "-q"]):
            result = CliRunner().invoke(cli, ["--data", str(shop), *args])
            assert result.exit_code == 2, (uri, result.output, result.exception)
            assert result.output.startswith(f"error: the MLflow store {uri} cannot be opened: ")
            assert len(result.output.splitlines()) == 1


def test_jobs_that_log_runs_refuse_a_deleted_experiment_in_one_line(shop, monkeypatch):
    """An experiment deleted in the MLflow UI: train fitted the model, then MLflow
    refused the run with a traceback."""
    monkeypatch.setenv("RECSYS_EXPERIMENT", "deleted-in-the-ui")
    tracking = open_tracking(shop)
    tracking.client.delete_experiment(tracking.experiment_id)
    runner = CliRunner()
    for args in (["train", "--model", "popular"], ["tune", "--model", "popular", "--trials", "1"]):
        result = runner.invoke(cli, ["--data", str(shop), *args, "-q"])
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert result.output.startswith("error: the MLflow experiment 'deleted-in-the-ui' ")
        assert "is deleted: restore it" in result.output
        assert len(result.output.splitlines()) == 1
    assert runner.invoke(cli, ["--data", str(shop), "models", "list"]).exit_code == 0
    assert not tracking.client.search_runs([tracking.experiment_id])  # no run was started


def test_commands_on_a_mistyped_data_dir_make_no_mlflow_store_there(tmp_path, monkeypatch):
    """models list / promote / rollback, publish and tune read what training made:
    on a directory without it they say so and leave no ``mlflow/mlflow.db`` behind
    (each of them created one, as train did before)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set by MLflow in this process
    typo = tmp_path / "no-such-shop"
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["--data", str(typo), *args])

    listed = run("models", "list", "--json")
    assert listed.exit_code == 2 and "does not exist: check --data" in listed.output
    for args in (
        ["models", "promote", "shop-recommender", "1"],
        ["models", "rollback"],
        ["publish", "-q"],
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "has no MLflow store" in result.output and "train" in result.output
    tuned = run("tune", "--model", "popular", "--trials", "1", "-q")
    assert tuned.exit_code == 2 and "holds no events" in tuned.output
    assert not typo.exists()


def test_train_shows_its_fit_running_on_stderr_and_keeps_json_on_stdout(shop):
    """A fit reports nothing itself (the default blend's takes minutes on Online
    Retail): an elapsed-time line on stderr shows the job is alive."""
    result = CliRunner().invoke(cli, ["--data", str(shop), "train", "--model", "popular", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_name"] == "popular"
    assert "fit popular: " in result.stderr and "elapsed" in result.stderr


HOLD_REGISTRY_LOCK = """
import fcntl, pathlib, sys, time
root = pathlib.Path(sys.argv[1])
with open(root / ".registry.lock", "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)  # another job in the middle of a promote
    print("held", flush=True)
    time.sleep(1.0)
    (root / "released").write_text("")
"""


def test_moves_of_the_champion_wait_for_another_process_in_the_gate(shop, monkeypatch):
    monkeypatch.setenv("RECSYS_REGISTERED_MODEL", "locked-shop")  # a registry of its own
    tracking = open_tracking(shop)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_REGISTRY_LOCK, str(shop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PromotionRefused, match="no previous champion"):
            rollback(tracking)
        assert (shop / "released").exists()  # it waited until the other gate was done
    finally:
        holder.wait(timeout=30)
        (shop / "released").unlink(missing_ok=True)


def _train_and_tune_refusals(root: Path, *args: str) -> list[str]:
    """What `train` and `tune` of ``popular`` with ``args`` print, each refused (exit 2)."""
    outputs = []
    for command in (["train"], ["tune", "--trials", "1"]):
        argv = ["--data", str(root), *command, "--model", "popular", *args, "-q"]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2, (command, result.output, result.exception)
        outputs.append(result.output)
    return outputs


def test_an_undo_puts_back_the_aliases_its_own_promotion_found(tmp_path, monkeypatch):
    """`recsys run` read the aliases to put back before its gate, outside the registry
    lock: a champion another job promoted in between was undone with it."""
    from training.promote import aliases, undo_promotions

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "shop"
    generate_shop(DataStore(root), users=300, items=60, days=60, seed=5, progress=False)
    tracking = open_tracking(root)
    first, second = (
        train(root, "popular", {"by": by}, progress=False, tracking=tracking)["model_version"]
        for by in ("global", "country")
    )
    read_too_early = aliases(tracking)
    promote(tracking, first, force=True, reason="another job's champion")
    ours = promote(tracking, second, force=True, reason="this run's gate")
    assert read_too_early == {"champion": None, "previous-champion": None}
    assert ours["aliases_before"] == {"champion": first, "previous-champion": None}
    assert undo_promotions(tracking, ours["aliases_before"], [second])  # the publish failed
    assert aliases(tracking) == {"champion": first, "previous-champion": None}
