"""The README's main job, end to end on embedded defaults, in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_recsys_run_goes_from_data_to_a_champion(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REDIS_URL")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys",
            "--data",
            str(tmp_path / "shop"),
            "run",
            "--users",
            "800",
            "--items",
            "150",
            "--days",
            "60",
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    out = json.loads(done.stdout)
    steps = out["steps"]
    assert steps["data"]["users"] == 800 and steps["data"]["events"] > 1000
    assert steps["validation"] == {
        "ok": True,
        "events_checked": steps["data"]["events"],
        "problems": {},
    }
    assert steps["interactions"]["nonzeros"] > 0
    trained = steps["training"]["models"]
    assert [t["model_name"] for t in trained] == ["popular", "blend"]
    assert trained[0]["gate"] == "promoted to champion"  # the first version always wins
    best = max(trained, key=lambda t: t["metrics"]["ndcg@10"])
    assert steps["training"]["champion_version"] == best["model_version"]
    assert (tmp_path / "shop" / "mlflow" / "mlflow.db").exists()
    published = steps["publish"]
    assert published["model_version"] == best["model_version"]
    assert published["refit"]  # the champion's recipe fitted on every event
    assert published["users"] == out["steps"]["interactions"]["users"]  # all of them
    assert published["users"] > 0 and published["bytes_per_user"] <= 1024
    assert (tmp_path / "shop" / "redis" / "recsys.rdb").exists()  # embedded, persisted


def test_recsys_run_refuses_bad_models_before_touching_the_data(tmp_path):
    from click.testing import CliRunner

    from recsys.cli import cli

    shop = tmp_path / "shop"
    for models, message in ((",", "names no model"), ("popular,nope", "unknown model 'nope'")):
        args = ["--data", str(shop), "run", "--users", "50", "--models", models, "-q"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: --models") and message in result.output
        assert not shop.exists()  # no step ran: no shop generated, no MLflow store


def test_recsys_run_reports_a_publish_held_by_another_job_in_one_line(
    tmp_path, redis_url, monkeypatch
):
    import redis
    from click.testing import CliRunner

    from recsys.cli import cli
    from recsys.snapshots.keys import Keys

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "runlocked")
    client = redis.Redis.from_url(redis_url)
    lock = Keys("runlocked").publish_lock
    client.set(lock, "another-publish", px=120_000)  # a publish that is still running
    try:
        args = ["--data", str(tmp_path / "shop"), "run", "--users", "150", "--items", "30"]
        result = CliRunner().invoke(cli, [*args, "--days", "40", "--models", "popular", "-q"])
    finally:
        client.delete(lock)
    assert result.exit_code == 2, result.output
    assert "error: another publish holds" in result.output


def test_recsys_run_on_new_data_retrains_the_champion_and_publishes_a_model_of_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REDIS_URL")}

    def run(*args: str) -> dict:
        cmd = [sys.executable, "-m", "recsys", "--data", str(tmp_path / "shop"), "run"]
        small = ["--users", "600", "--items", "120", "--days", "60", "--json", "--quiet"]
        done = subprocess.run(
            [*cmd, *small, *args], capture_output=True, text=True, env=env, check=True
        )
        return json.loads(done.stdout)["steps"]

    first = run("--models", "itemknn", "--seed", "1")
    assert first["training"]["champion_model"] == "itemknn"
    # a new shop (another seed): the champion's recipe is not among --models, so the
    # run trains it on the new data too; it replaces the champion, then the others
    # must beat it there
    second = run("--seed", "2")
    trained = {t["model_name"]: t for t in second["training"]["models"]}
    assert list(trained) == ["itemknn", "popular", "blend"]  # the refresh is judged first
    assert trained["itemknn"]["gate"] == "refreshed the champion"
    best = max(trained.values(), key=lambda t: t["metrics"]["ndcg@10"])
    assert second["training"]["champion_version"] == best["model_version"]
    assert second["publish"]["model_version"] == best["model_version"]
