"""``recsys publish``: the champion's candidates into Redis as one new snapshot.

From the model version behind an alias (``champion`` by default) it computes
the top-N items of every customer the model knows (items they bought are
left out unless the model recommends buying again), the top-K similar items
of every item, and popular and trending items per market and per category as
fallbacks; and writes them under a new snapshot version, each batch of lists
as soon as it is scored (memory holds two batches, not every customer's
list), then flips ``current`` (see ``recsys.snapshots.writer``).

A registered version was fitted on the events before its evaluation cut-off.
With ``refit`` the version's recipe (model, parameters, interaction settings)
is fitted again on every event before it is published: the last weeks'
item relations count too, and customers who arrived after the cut-off get
candidates of their own.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import redis
import scipy.sparse as sp
from mlflow.exceptions import MlflowException
from tqdm import tqdm

from recsys.bundle import ModelBundle
from recsys.data.store import DataStore, TableReader
from recsys.idmap import IdMap
from recsys.interactions import InteractionConfig, build_interactions
from recsys.progress import elapsed
from recsys.scoring import iter_recommend, iter_similar_items
from recsys.snapshots.codec import MARKET_OFFERS, pack_int32, pack_offers
from recsys.snapshots.connection import RedisSettingError, is_embedded, open_store, persist
from recsys.snapshots.keys import Keys
from recsys.snapshots.writer import SnapshotWriter
from training.tracking import CHAMPION, RECIPE_TAG, NoTrackingStore, Tracking, open_tracking

EVENT_COLUMNS = [
    "timestamp",
    "user_id",
    "session_id",
    "item_id",
    "type",
    "quantity",
    "value",
    "country",
]
#: Read as pandas ``category``: few distinct values, so an int32 code per event instead of
#: its text. Not ``session_id``: nearly one value per few events, and joining the Parquet
#: parts' dictionaries of over a million sessions costs more than it saves.
CATEGORICAL_EVENT_COLUMNS = ["user_id", "item_id", "type", "country"]
USER_BATCH = 2_048
POPULAR_WINDOW_DAYS = 90
TRENDING_HALF_LIFE_DAYS = 7.0


class PublishError(RuntimeError):
    """The publish cannot start; the message says what to do."""


class PublishedButFailed(PublishError):
    """The new snapshot is served (``current`` flipped to it), but a step after the
    flip failed (the cleanup of old versions, saving the embedded Redis)."""

    def __init__(self, version: str, step: str, cause: Exception):
        super().__init__(
            f"snapshot {version} is published and served, but {step} failed ({cause}); "
            "publish again once that is fixed"
        )
        self.version = version


@dataclass
class Popularity:
    """Ranked popular / trending lists keyed by (kind, country, category index)."""

    lists: dict[tuple[str, str | None, int | None], tuple[np.ndarray, np.ndarray]]
    categories: list[str]
    item_category: np.ndarray  # per item index: index of its full category path, -1 if none


def resolve_version(tracking: Tracking, ref: str) -> tuple[str, str]:
    """``champion``, ``NAME@ALIAS``, ``NAME/VERSION`` or ``VERSION`` -> (name, version)."""
    name, client = tracking.registered_model, tracking.client
    try:
        if "@" in ref or ref == CHAMPION:
            name, alias = ref.split("@", 1) if "@" in ref else (name, ref)
            return name, str(client.get_model_version_by_alias(name, alias).version)
        if "/" in ref:
            name, version = ref.split("/", 1)
        else:
            version = ref
        return name, str(client.get_model_version(name, version).version)
    except MlflowException:
        pass
    try:
        latest = max(
            (int(v.version) for v in client.search_model_versions(f"name = '{name}'")),
            default=None,
        )
    except MlflowException:
        latest = None
    if latest is not None and ref == CHAMPION:  # trained without --promote
        raise PublishError(
            f"{name} has no champion yet: promote a version first (`recsys models "
            f"promote {name} {latest}`; `recsys models list` shows them) or publish one "
            f"with --model {latest}"
        )
    if latest is not None:
        raise PublishError(f"no model version {ref!r} in {name}; see `recsys models list`")
    raise PublishError(
        f"no model version {ref!r} in {tracking.registered_model}: train and "
        "promote one first (`recsys train --model blend --promote`)"
    )


def load_bundle(name: str, version: int | str) -> ModelBundle:
    """The registered version's model bundle, read from a download that is removed
    afterwards (MLflow would otherwise leave a copy in a new temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="recsys-bundle-") as tmp:
        artifacts = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp)
        return ModelBundle.load(artifacts)


def publish(
    data_dir: str | Path,
    model_ref: str = CHAMPION,
    n: int = 100,
    k_similar: int = 20,
    exclude_purchased: bool | None = None,
    progress: bool = True,
    max_rate: float | None = None,
    lock_ttl_s: float = 30.0,
    refit: bool = False,
    store: TableReader | None = None,
) -> dict:
    """Compute and write one snapshot; returns the JSON summary.

    Every table comes from ``store`` (a pinned view of the job that publishes),
    or else from one view of ``data_dir`` pinned while this reads.
    """
    started = time.perf_counter()
    try:
        tracking = open_tracking(data_dir, create=False)
    except NoTrackingStore as exc:
        raise PublishError(str(exc)) from None
    name, version = resolve_version(tracking, model_ref)
    # every table from one manifest; the pin ends before Redis is written
    with (store or DataStore(data_dir)).pinned() as store:
        if not store.has("events"):  # the snapshot would replace the current one with empty lists
            raise PublishError(
                f"{data_dir} holds no events: a snapshot of it would have no customer and no "
                "popular list; check --data (the events the model was trained on live there)"
            )
        try:
            keys, client = open_store(data_dir)
        except RedisSettingError as exc:
            raise PublishError(str(exc)) from None
        client.ping()  # an unreachable Redis fails now, not after computing every list
        _refuse_evicting(client)
        mv = tracking.client.get_model_version(name, version)
        refit_seconds = None
        if refit:
            fit_started = time.perf_counter()
            try:
                bundle = refit_on_all_events(store, mv, progress)
            except ValueError as exc:  # e.g. a ranker's recipe on events without purchases
                raise PublishError(
                    f"the recipe of {name} version {version} cannot be fitted on the events of "
                    f"{data_dir} ({exc}); publish without --refit, or another version"
                ) from exc
            refit_seconds = round(time.perf_counter() - fit_started, 2)
        else:
            try:
                bundle = load_bundle(name, version)
            except (MlflowException, OSError) as exc:  # its run or artifacts were deleted
                raise PublishError(
                    f"the model bundle of {name} version {version} cannot be read ({exc}); "
                    "publish another version, or train and promote a new one"
                ) from None
        events = store.read("events", columns=EVENT_COLUMNS, categorical=CATEGORICAL_EVENT_COLUMNS)

        model = bundle.model
        if exclude_purchased is None:
            exclude_purchased = not getattr(model, "recommends_already_liked", False)
        users, user_rows, purchased = _user_matrices(events, bundle)
        item_map = bundle.item_map.copy().extend(_catalog_ids(store, events))
        popularity = _popularity(store, events, item_map, n)
        # read before taking the lock, which a writer renews only as it scores and sends batches
        offers, currencies = _offers(store, item_map), _currencies(store)

    with SnapshotWriter(
        client, keys, batch=USER_BATCH, max_rate=max_rate, lock_ttl_ms=int(lock_ttl_s * 1000)
    ) as writer:
        snapshot = writer.version
        writer.set(keys.item_ids(snapshot), "\n".join(item_map.ids()))
        writer.set(keys.categories(snapshot), "\n".join(popularity.categories))
        writer.set(keys.item_categories(snapshot), pack_int32(popularity.item_category))
        nothing = (np.empty(0, np.int64), np.empty(0, np.float32))
        for country in currencies:  # a market with nothing in stock too: an empty table
            offer_ids, prices = offers.get(country, nothing)
            writer.set(keys.market(snapshot, country), pack_offers(offer_ids, prices))
        # each batch is written as soon as it is scored (the next one is scored meanwhile):
        # memory holds two batches, not every customer's list; the lock is renewed while
        # the blocks are scored, however long one takes
        bar = tqdm(
            total=len(users) + model.n_items_, desc="write", unit="key", disable=not progress
        )
        candidates = _candidates(
            model, users, user_rows, purchased, n, exclude_purchased, progress, writer.keep_lock
        )
        # closed when a write fails too: a suspended generator keeps its scoring threads
        # and BLAS held to one thread for as long as the exception's frames live
        with closing(candidates):
            for rows, ids, scores in candidates:
                writer.set_lists(keys.users(snapshot, bundle.user_map.ids(rows)), ids, scores)
                bar.update(len(rows))
        n_similar = 0
        with closing(_similar(model, k_similar, progress, writer.keep_lock)) as similar:
            for rows, ids, scores in similar:
                writer.set_lists([keys.similar(snapshot, i) for i in rows], ids, scores)
                n_similar += len(rows)
                bar.update(len(rows))
        bar.close()
        for (kind, country, category), (ids, scores) in popularity.lists.items():
            key = (
                keys.popular(snapshot, country, category)
                if kind == "popular"
                else keys.trending(snapshot, country)
            )
            writer.set_list(key, ids, scores)
        counts = {
            "users": len(users),
            "items": len(item_map),
            "similar": n_similar,
            "popular_lists": len(popularity.lists),
        }
        meta = {
            "model_name": name,
            "model_version": version,
            "model": model.name,
            "run_id": mv.run_id,
            "n": n,
            "k_similar": k_similar,
            "exclude_purchased": exclude_purchased,
            "refit": refit,
            **counts,
            "markets": json.dumps(currencies),
            MARKET_OFFERS: "all",  # a missing offers table is then a lost key
        }
        try:
            flip = writer.commit(meta)
        except redis.RedisError as exc:
            if writer.flipped:  # the cleanup after the flip
                raise PublishedButFailed(snapshot, "deleting old versions", exc) from exc
            raise
        total_keys, total_bytes = writer.keys_written + 1, writer.bytes
    step = "saving the embedded Redis to disk"
    try:
        if is_embedded(client):
            persist(client)  # the embedded server's database, under the data directory
        step = "measuring its memory"
        bytes_per_user = _bytes_per_user(client, keys, snapshot, bundle.user_map, users)
    except redis.RedisError as exc:
        raise PublishedButFailed(snapshot, step, exc) from exc
    seconds = time.perf_counter() - started
    return {
        "version": flip["version"],
        "previous_version": flip["previous"],
        "deleted_versions": flip["deleted_versions"],
        "model_name": name,
        "model_version": int(version),
        "model": model.name,
        "users": len(users),
        "items": len(item_map),
        "keys": total_keys,
        "bytes": total_bytes,
        "bytes_per_user": bytes_per_user,
        "seconds": round(seconds, 2),
        "n": n,
        "k_similar": k_similar,
        "refit": refit,
        "refit_seconds": refit_seconds,
    }


def _refuse_evicting(client) -> None:
    """Refuse a Redis that evicts keys without a TTL when full: it would drop keys of the
    snapshots (served, previous, new) and leave lists missing without an error."""
    memory = client.info("memory")
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    if memory.get("maxmemory") and policy.startswith("allkeys-"):
        raise PublishError(
            f"Redis has maxmemory {memory['maxmemory']} bytes with maxmemory-policy {policy}: "
            "it may evict keys of the snapshots when full. Use noeviction (a full Redis "
            "refuses the publish instead) or a volatile-* policy, or no maxmemory"
        )


def refit_on_all_events(store: TableReader, version, progress: bool = True) -> ModelBundle:
    """The registered ``version``'s recipe fitted on every event of ``store`` (its
    evaluation fit stopped at the cut-off), as a bundle to publish."""
    from recsys.models.registry import create_model
    from recsys.protocols import EVENT_COLUMNS as ALL_COLUMNS
    from recsys.protocols import protocol_from_split
    from recsys.splits import Split
    from training.train import FEATURE_MODELS

    text = version.tags.get(RECIPE_TAG)
    if text is None:
        raise PublishError(
            f"version {version.version} has no recipe tag (registered before recipes were "
            "recorded): train it again, or publish without --refit"
        )
    recipe = json.loads(text)
    events = store.read("events", columns=ALL_COLUMNS)
    everything = Split(events, events.iloc[:0], {"method": "all events", "refit": True})
    data = protocol_from_split(version.tags.get("protocol", "temporal"), everything)
    config = InteractionConfig(**recipe["data"])
    params = recipe["params"]
    parts = params.get("parts", {}) if recipe["model"] == "blend" else {}
    features = recipe["model"] in FEATURE_MODELS or any(p in FEATURE_MODELS for p in parts)
    model = create_model(recipe["model"], **params)
    if progress:
        tqdm.write(f"refit {recipe['model']} on {len(events)} events", file=sys.stderr)
    with elapsed(f"refit {recipe['model']}", progress):
        model.fit(data.train_matrix(config), context=data.fit_context(store if features else None))
    meta = {"refit_of": str(version.version), "protocol": data.name}
    return ModelBundle(model, data.user_map, data.item_map, config, meta=meta)


def _user_matrices(events: pd.DataFrame, bundle: ModelBundle):
    """The known customers' current rows (the model's weighting) and purchases."""
    built = build_interactions(
        events, bundle.interactions, bundle.user_map, bundle.item_map, extend_maps=False
    )
    rows = built.matrix
    positive = [t for t in ("purchase", "rating") if t in set(events["type"].unique())]
    bought = build_interactions(
        events,
        InteractionConfig(weights=dict.fromkeys(positive, 1.0), use_rating_value=False),
        bundle.user_map,
        bundle.item_map,
        extend_maps=False,
    ).matrix
    users = np.flatnonzero(np.diff(rows.indptr) > 0).astype(np.int64)
    return users, rows, bought


def _candidates(
    model,
    users,
    rows: sp.csr_matrix,
    purchased: sp.csr_matrix,
    n: int,
    exclude_purchased: bool,
    progress: bool,
    on_block: Callable[[], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Top-n per known customer, scored from their rows, without what they bought:
    (user rows, ids, scores) per batch of about ``USER_BATCH`` customers."""
    exclude = purchased if exclude_purchased else sp.csr_matrix(purchased.shape, dtype=np.float32)
    return iter_recommend(
        model,
        rows,
        userids=users,
        N=n,
        filter_already_liked_items=False,
        exclude=exclude,
        progress=progress,
        batch_rows=USER_BATCH,
        on_block=on_block,
    )


def _similar(
    model, k: int, progress: bool, on_block: Callable[[], None] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The top-k similar items of every item, per batch; none for a model without item
    similarity (it says so on its first block)."""
    batches = iter_similar_items(
        model, K=k, progress=progress, batch_rows=USER_BATCH, on_block=on_block
    )
    with closing(batches):  # also when this generator is closed after its first batch
        try:
            first = next(batches, None)
        except NotImplementedError:
            return
        if first is not None:
            yield first
            yield from batches


def _catalog_ids(store: TableReader, events: pd.DataFrame) -> list[str]:
    ids = pd.unique(events["item_id"]).astype(str)  # first seen first, one per item
    if store.has("items"):
        ids = pd.unique(
            np.concatenate(
                [ids, store.read("items", columns=["item_id"])["item_id"].astype(str).to_numpy()]
            )
        )
    return list(ids)


def _popularity(store: TableReader, events: pd.DataFrame, item_map: IdMap, n: int) -> Popularity:
    """Popular (distinct buyers in the last 90 days) and trending (decayed) lists."""
    positive = events[events["type"].isin(["purchase", "rating"])]
    if not len(positive):
        positive = events
    end = positive["timestamp"].max()
    recent = positive[positive["timestamp"] >= end - pd.Timedelta(days=POPULAR_WINDOW_DAYS)]
    buyer = (
        recent["user_id"]
        .astype(object)
        .where(recent["user_id"].notna(), "s:" + recent["session_id"].astype(str))
    )
    frame = pd.DataFrame(
        {
            "item": item_map.index(recent["item_id"].astype(str)),
            "country": recent["country"].astype(object),
            "buyer": buyer.to_numpy(),
            "age_days": (end - recent["timestamp"]).dt.total_seconds() / 86400,
        }
    )
    categories, item_categories, item_category = _item_categories(store, item_map)
    sold_in = _sold_in(store, item_map)
    lists: dict = {}
    countries = [None, *sorted(frame["country"].dropna().unique())]
    trend = frame.assign(weight=0.5 ** (frame["age_days"] / TRENDING_HALF_LIFE_DAYS))
    for country in countries:
        part = frame if country is None else frame[frame["country"] == country]
        counts = part.drop_duplicates(["item", "buyer"]).groupby("item").size()
        eligible = sold_in.get(country) if country else None
        lists[("popular", country, None)] = _top(counts, n, eligible)
        decayed = trend if country is None else trend[trend["country"] == country]
        lists[("trending", country, None)] = _top(
            decayed.groupby("item")["weight"].sum(), n, eligible
        )
        for cat_index, members in enumerate(item_categories):
            in_cat = counts[counts.index.isin(members)]
            if len(in_cat):
                lists[("popular", country, cat_index)] = _top(in_cat, n, eligible)
    return Popularity(lists, categories, item_category)


def _top(counts: pd.Series, n: int, eligible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if eligible is not None:
        counts = counts[counts.index.isin(eligible)]
    top = counts.sort_values(ascending=False, kind="stable").head(n)
    return top.index.to_numpy(np.int64), top.to_numpy(np.float32)


def _item_categories(store: TableReader, item_map: IdMap):
    """Every category path (and each of its prefixes) with the item indices under it, and
    each item's own (full) path index."""
    own = np.full(len(item_map), -1, dtype=np.int32)
    if not store.has("items"):
        return [], [], own
    items = store.read("items", columns=["item_id", "category"]).dropna(subset=["category"])
    # the snapshot's category table is one line per path: a line break (a quoted CSV
    # field may hold one) reads as a space, or it would shift every later path
    category = items["category"].str.replace(r"\s*[\r\n]+\s*", " ", regex=True).str.strip()
    items = items.assign(category=category)[category != ""]
    index = item_map.index(items["item_id"].astype(str))
    paths: dict[str, list[int]] = {}
    for item, category in zip(index, items["category"], strict=True):
        if item < 0:
            continue
        parts = category.split(" > ")
        for depth in range(1, len(parts) + 1):
            paths.setdefault(" > ".join(parts[:depth]), []).append(int(item))
    names = sorted(paths)
    position = {name: i for i, name in enumerate(names)}
    for item, category in zip(index, items["category"], strict=True):
        if item >= 0:
            own[item] = position[category]
    return names, [np.array(paths[name], dtype=np.int64) for name in names], own


def _offers(store: TableReader, item_map: IdMap) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per market: the items sold there and in stock (or stock not tracked), with prices."""
    if not store.has("item_markets"):
        return {}
    offers = store.read("item_markets", columns=["item_id", "country", "price", "stock"])
    offers = offers[offers["stock"].isna() | (offers["stock"] > 0)]
    offers = offers.assign(item=item_map.index(offers["item_id"].astype(str)))
    offers = offers[offers["item"] >= 0].sort_values(["country", "item"])
    return {
        c: (g["item"].to_numpy(np.int64), g["price"].to_numpy(np.float32))
        for c, g in offers.groupby("country")
    }


def _currencies(store: TableReader) -> dict[str, str]:
    """The currency of each market's prices (its most common one)."""
    if not store.has("item_markets"):
        return {}
    rows = store.read("item_markets", columns=["country", "currency"])
    return rows.groupby("country")["currency"].agg(lambda c: c.mode().iloc[0]).to_dict()


def _sold_in(store: TableReader, item_map: IdMap) -> dict[str, np.ndarray]:
    if not store.has("item_markets"):
        return {}
    markets = store.read("item_markets", columns=["item_id", "country"])
    markets["item"] = item_map.index(markets["item_id"].astype(str))
    return {c: g["item"].to_numpy(np.int64) for c, g in markets.groupby("country")}


def _bytes_per_user(
    client, keys: Keys, version: str, user_map: IdMap, users: np.ndarray, sample: int = 200
) -> float | None:
    """Mean Redis memory (MEMORY USAGE) of a sample of customer keys, rounded; None
    where the server refuses the command (managed services may disable it): the
    snapshot is live by then, so that must not fail the publish."""
    if not len(users):
        return 0.0
    picks = np.random.default_rng(0).choice(len(users), min(sample, len(users)), replace=False)
    pipe = client.pipeline(transaction=False)
    for user_id in user_map.ids(users[picks]):
        pipe.memory_usage(keys.user(version, str(user_id)), samples=0)
    try:
        replies = pipe.execute()
    except redis.ResponseError:  # unknown or disabled command
        return None
    sizes = [s for s in replies if s is not None]
    return round(float(np.mean(sizes)), 1) if sizes else 0.0
