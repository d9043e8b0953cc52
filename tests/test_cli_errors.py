"""Common mistakes on the command line: one line saying what to do, exit code 2."""

from __future__ import annotations

import json
import socket

import click
import pytest
from click.testing import CliRunner

from recsys.cli import cli


def _invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    lines = result.output.strip().splitlines()
    return result, lines


@pytest.mark.parametrize("url", ["localhost:6379", "127.0.0.1:6379/0", "http://localhost:6379"])
@pytest.mark.parametrize(
    "args", [["publish", "rollback"], ["data", "import", "--format", "stream", "redis"]]
)
def test_a_redis_url_without_a_redis_scheme_is_refused_not_taken_for_a_file(
    tmp_path, monkeypatch, url, args
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", url)
    result, lines = _invoke("--data", str(tmp_path / "data"), *args)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert lines[0].startswith("error: REDIS_URL")
    # no embedded Redis was started in a file named after the URL
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory):
    """A data directory with a small generated shop."""
    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop

    root = tmp_path_factory.mktemp("shop") / "data"
    generate_shop(DataStore(root), users=300, items=60, days=60, seed=2, progress=False)
    return root


@pytest.mark.parametrize(
    ("sets", "named", "known"),
    [
        (["typo=3"], "popular: unknown parameter 'typo'", "known: by, "),
        (["parts.als=1", "als.factor=8"], "blend: als: unknown parameter 'factor'", "factors"),
    ],
)
def test_a_typo_in_a_set_key_names_the_key_and_the_known_ones(
    small_shop, monkeypatch, sets, named, known
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    model = "blend" if sets[0].startswith("parts.") else "popular"
    args = [a for s in sets for a in ("--set", s)]
    result, lines = _invoke("--data", str(small_shop), "train", "--model", model, "-q", *args)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert named in lines[0] and known in lines[0]


def test_run_refuses_a_shop_too_short_for_the_test_window_before_generating_it(tmp_path):
    shop = tmp_path / "shop"
    result, lines = _invoke("--data", str(shop), "run", "--users", "50", "--days", "20", "-q")
    assert result.exit_code == 2, result.output
    assert "--days" in result.output and "--cutoff" not in result.output
    assert not shop.exists()  # no shop generated, no MLflow store


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_cutoff_that_is_not_a_date_names_the_option(small_shop, monkeypatch, command):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["--data", str(small_shop), command, "--model", "popular", "-q"]
    result, lines = _invoke(*args, "--cutoff", "yesterday")
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: --cutoff 'yesterday' is not a date")


@pytest.mark.parametrize(
    ("url", "says"),
    [("redis://127.0.0.1:1/0", "error: Redis: "), ("127.0.0.1:1", "error: REDIS_URL")],
)
def test_run_with_an_unreachable_redis_fails_before_any_step(tmp_path, monkeypatch, url, says):
    from recsys.data.store import DataStore

    monkeypatch.setenv("REDIS_URL", url)  # nothing listens on port 1; no scheme
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shop = tmp_path / "shop"
    result, lines = _invoke("--data", str(shop), "run", "--users", "50", "--days", "40", "-q")
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(says)
    assert not DataStore(shop).has("events")  # no shop generated
    assert not (shop / "mlflow").exists()  # nothing trained


@pytest.mark.parametrize(
    "args",
    [
        ["data", "summary", "--json"],
        ["models", "list", "--json"],
        ["serve", "--dev", "--port", "{busy}"],
    ],
    ids=["summary", "models-list", "serve"],
)
def test_a_data_dir_that_does_not_exist_is_an_error_for_jobs_that_read_it(
    tmp_path, monkeypatch, args
):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    typo = tmp_path / "dtaa"
    with socket.create_server(("127.0.0.1", 0)) as busy:  # a server never starts here
        port = str(busy.getsockname()[1])
        result, lines = _invoke("--data", str(typo), *[a.format(busy=port) for a in args])
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {typo} does not exist: check --data")
    assert not typo.exists()  # no embedded Redis or anything else made there


def test_the_summary_of_an_empty_data_dir_is_zero_rows(tmp_path):
    (tmp_path / "empty").mkdir()
    result, _ = _invoke("--data", str(tmp_path / "empty"), "data", "summary", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == {
        "events": 0,
        "items": 0,
        "item_markets": 0,
        "customers": 0,
    }


def test_models_list_of_a_data_dir_where_nothing_was_trained_is_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "shop").mkdir()
    result, _ = _invoke("--data", str(tmp_path / "shop"), "models", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"versions": []}


def test_publish_after_training_without_promote_says_to_promote(tmp_path, monkeypatch):
    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    shop = tmp_path / "shop"
    generate_shop(DataStore(shop), users=200, items=40, days=45, seed=1, progress=False)
    trained, _ = _invoke("--data", str(shop), "train", "--model", "popular", "-q", "--json")
    assert trained.exit_code == 0, trained.output
    result, lines = _invoke("--data", str(shop), "publish", "-q")
    assert result.exit_code == 2, result.output
    assert lines == [
        "error: shop-recommender has no champion yet: promote a version first "
        "(`recsys models promote shop-recommender 1`; `recsys models list` shows them) "
        "or publish one with --model 1"
    ]
    unknown, lines = _invoke("--data", str(shop), "publish", "-q", "--model", "7")
    assert unknown.exit_code == 2
    assert lines == ["error: no model version '7' in shop-recommender; see `recsys models list`"]


def test_publish_of_a_data_dir_without_events_leaves_the_live_snapshot_alone(
    tmp_path, monkeypatch, redis_url
):
    """With MLflow and Redis shared (MLFLOW_TRACKING_URI, REDIS_URL), a publish from
    a mistyped or empty --data found the champion and replaced the live snapshot with
    one of no customers and no popular lists; a refit that cannot fit was a traceback."""
    import redis

    from recsys.data.store import DataStore
    from recsys.data.synthetic import generate_shop
    from recsys.snapshots.keys import Keys

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "clinoevents")
    shop, other = tmp_path / "shop", tmp_path / "other"
    generate_shop(DataStore(shop), users=200, items=40, days=45, seed=1, progress=False)
    for args in (["train", "--model", "ranker", "--promote"], ["publish"]):
        done, _ = _invoke("--data", str(shop), *args, "-q", "--json")
        assert done.exit_code == 0, done.output
    client = redis.Redis.from_url(redis_url)
    keys = Keys.from_env()
    live = client.get(keys.current)
    try:
        other.mkdir()
        result, lines = _invoke("--data", str(other), "publish", "-q")
        assert result.exit_code == 2, result.output
        assert lines[0].startswith(f"error: {other} holds no events")
        assert client.get(keys.current) == live

        views = tmp_path / "views.csv"  # events without a purchase: no ranker can learn
        views.write_text("timestamp,user_id,item_id,type\n2024-02-01T10:00:00Z,u1,i1,view\n")
        imported, _ = _invoke(
            "--data", str(other), "data", "import", "--format", "events", str(views), "-q"
        )
        assert imported.exit_code == 0, imported.output
        result, lines = _invoke("--data", str(other), "publish", "--refit", "-q")
        assert result.exit_code == 2, result.output
        assert len(lines) == 1 and "cannot be fitted on the events of" in lines[0]
        assert client.get(keys.current) == live
    finally:
        for key in client.scan_iter(f"{keys.prefix}:*"):
            client.delete(key)


def test_a_refused_run_leaves_no_embedded_redis_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RECSYS_SHARED_DATA", str(tmp_path / "nothing-here"))
    shop = tmp_path / "shop"
    result, lines = _invoke("--data", str(shop), "run", "--source", "movielens", "-q")
    assert result.exit_code == 2, result.output
    assert "not found; pass --path" in lines[-1]
    assert not (shop / "redis").exists()


def test_a_blend_weight_that_is_not_a_number_names_the_part(small_shop, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["train", "--model", "blend", "--set", "parts.als=abc", "-q"]
    result, lines = _invoke("--data", str(small_shop), *args)
    assert result.exit_code == 2, result.output
    assert lines == ["error: blend: weight of 'als' must be a number, got 'abc'"]


@pytest.mark.parametrize(
    ("sets", "parts"),
    [(["als.factors=8"], "ranker, buy-again"), (["parts.ease=1", "als.factors=8"], "ease")],
)
def test_parameters_of_a_model_that_is_not_a_part_of_the_blend_are_refused(
    small_shop, monkeypatch, sets, parts
):
    """They were refused with 'part_params for models not in parts', or, with --set
    parts..., silently dropped: the run trained without the parameter asked for."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = [a for s in sets for a in ("--set", s)]
    result, lines = _invoke("--data", str(small_shop), "train", "--model", "blend", "-q", *args)
    assert result.exit_code == 2, result.output
    assert lines == [
        f"error: --set als.<parameter>: als is not a part of this blend ({parts}); "
        "add it with --set parts.als=0.3"
    ]


def test_every_option_of_every_command_says_what_it_is():
    """`--help` of each sub-command explains each of its options (data generate's
    --users, --items, --days and --seed had only their defaults)."""
    from recsys.cli import LAZY_COMMANDS, cli

    ctx = click.Context(cli)
    commands = [cli.get_command(ctx, name) for name in LAZY_COMMANDS]
    while commands:
        command = commands.pop()
        if isinstance(command, click.Group):
            commands += command.commands.values()
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{command.name} {param.opts[0]} has no help"


def test_data_import_help_names_every_stream_source_it_takes():
    """`data import --help` named only redis:// URLs; the stream import takes unix:// too."""
    from recsys.data.formats.stream import URL_SCHEMES

    result, _ = _invoke("data", "import", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "`redis`" in text
    for scheme in URL_SCHEMES:
        assert scheme in text, f"--help does not name {scheme}"


@pytest.mark.parametrize("mode", [["--workers", "1"], ["--dev"]])
def test_serve_on_a_port_in_use_is_one_line_before_loading_anything(tmp_path, monkeypatch, mode):
    monkeypatch.delenv("REDIS_URL", raising=False)
    (tmp_path / "shop").mkdir()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = str(busy.getsockname()[1])
        result, lines = _invoke("--data", str(tmp_path / "shop"), "serve", "--port", port, *mode)
    assert result.exit_code == 2, result.output
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use): another server "
        "(`recsys serve`?) may hold the port; stop it or pass another --port"
    ]
    assert not (tmp_path / "shop" / "redis").exists()  # stopped before the embedded Redis
