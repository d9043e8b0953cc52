"""The two named evaluation protocols, from a data directory to matrices.

- ``temporal`` (shops: Online Retail, the synthetic shop): train on every
  event before a cut-off; test on the purchases of the following 30 days by
  customers known before the cut-off, of items known before it. Two views:
  *all items* (already bought items stay in the ranking: repeat purchases
  count) and *new items* (only items the customer had not bought before the
  cut-off count, and those bought items are excluded from the ranking).
- ``stratified`` (MovieLens 100K, comparable with Microsoft Recommenders'
  benchmark): a seeded 75/25 random split within each item; every rating is
  an implicit positive; train items are excluded from the ranking; k = 10.

``load_protocol`` returns a ``ProtocolData``: the split, id maps fixed by the
training events, binary test matrices and the fingerprint that identifies
data + split for the promotion gate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.markets import MARKETS
from recsys.data.store import TableReader
from recsys.idmap import IdMap
from recsys.interactions import InteractionConfig, build_interactions
from recsys.models.base import FitContext
from recsys.splits import Split, stratified_split, temporal_split

PROTOCOLS = ("temporal", "stratified")
EVENT_COLUMNS = [
    "event_id",
    "timestamp",
    "user_id",
    "item_id",
    "type",
    "quantity",
    "value",
    "country",
]


@dataclass
class ProtocolData:
    """Everything a training run needs from one protocol on one data directory."""

    name: str
    split: Split
    user_map: IdMap
    item_map: IdMap
    test: sp.csr_matrix  # binary relevance, users x items
    bought: sp.csr_matrix  # binary: purchased (or rated) in train
    fingerprint: str
    user_country: np.ndarray
    params: dict = field(default_factory=dict)
    #: Temporal only: customers with no event before the cut-off who buy a known
    #: item in the test window (``user_id``, ``country``, ``language``, one row
    #: per row of ``cold_test``); empty for other protocols.
    cold_users: pd.DataFrame = field(default_factory=lambda: _empty_cold_users())
    #: Binary relevance, cold users x items of ``item_map``.
    cold_test: sp.csr_matrix | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_map), len(self.item_map)

    def train_matrix(self, config: InteractionConfig | None = None) -> sp.csr_matrix:
        """The train events as a users x items matrix weighted by ``config``."""
        config = config or default_interaction_config(self.name)
        built = build_interactions(
            self.split.train, config, self.user_map, self.item_map, extend_maps=False
        )
        return built.matrix

    def test_new_items(self) -> sp.csr_matrix:
        """Test relevance without the items each user had already bought."""
        new = self.test - self.test.multiply(self.bought)
        new = sp.csr_matrix(new)
        new.eliminate_zeros()
        return new

    def fit_context(self, store: TableReader | None = None) -> FitContext:
        """Side information for ``fit``: countries, train events with times and types, features."""
        train = self.split.train
        member = train["user_id"].notna().to_numpy()
        users = self.user_map.index(train["user_id"][member].astype(str))
        items = self.item_map.index(train["item_id"][member].astype(str))
        ok = (users >= 0) & (items >= 0)
        times = train["timestamp"][member].to_numpy(dtype="datetime64[ms]")[ok]
        context = FitContext(
            user_country=self.user_country,
            event_users=users[ok],
            event_items=items[ok],
            event_times=times.astype("int64") / 1000.0,
            reference_time=float(times.max().astype("int64")) / 1000.0 if len(times) else None,
            event_types=train["type"][member].to_numpy(dtype=object)[ok],
        )
        if store is not None:
            from recsys.features import item_features, user_features

            with store.pinned() as view:  # items, markets and customers of one manifest
                context.item_features, context.item_feature_names = item_features(
                    view, self.item_map
                )
                context.user_features, context.user_feature_names = user_features(
                    view, self.user_map, self.user_country
                )
        return context


def default_interaction_config(protocol: str) -> InteractionConfig:
    """Sound default weights: purchases dominate a shop; a rating is one positive."""
    if protocol == "stratified":
        return InteractionConfig(weights={"rating": 1.0}, use_rating_value=False)
    return InteractionConfig(
        weights={"view": 1.0, "add_to_cart": 3.0, "purchase": 10.0, "refund": -10.0}
    )


def load_protocol(
    store: TableReader, name: str, cutoff: str | None = None, test_days: float = 30, seed: int = 42
) -> ProtocolData:
    """Split the store's events by protocol ``name`` and build the test matrices."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {PROTOCOLS}")
    if cutoff is not None:
        try:
            pd.Timestamp(cutoff)
        except ValueError as exc:
            raise ValueError(f"--cutoff {cutoff!r} is not a date, e.g. 2024-03-01 ({exc})") from exc
    with store.pinned() as view:  # events and customers of one manifest
        return _load_protocol(view, name, cutoff, test_days, seed)


def _load_protocol(
    store: TableReader, name: str, cutoff: str | None, test_days: float, seed: int
) -> ProtocolData:
    if not store.has("events"):
        raise ValueError(f"{store.root} holds no events; import or generate data first")
    events = store.read("events", columns=EVENT_COLUMNS)
    if name == "temporal":
        if cutoff is None:
            last = events["timestamp"].max()
            cutoff = (last - pd.Timedelta(days=test_days)).floor("D")
        split = temporal_split(events, cutoff, test_days=test_days, test_types=("purchase",))
        params = {"cutoff": pd.Timestamp(split.cutoff).isoformat(), "test_days": test_days}
    else:
        split = stratified_split(events, test_fraction=0.25, by="item_id", seed=seed)
        params = {"test_fraction": 0.25, "by": "item_id", "seed": seed}
    data = protocol_from_split(name, split, params)
    if name == "temporal":
        customers = None
        if store.has("customers"):
            customers = store.read("customers", columns=["user_id", "country", "language"])
        data.cold_users, data.cold_test = cold_start_test(
            events, split.cutoff, test_days, data.item_map, customers
        )
    return data


def protocol_from_split(name: str, split: Split, params: dict | None = None) -> ProtocolData:
    """The ``ProtocolData`` of protocol ``name`` over an already made ``split``.

    Temporal tests count purchases only; stratified tests count every event.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {PROTOCOLS}")
    positive_types = ("purchase",) if name == "temporal" else None
    maps = build_interactions(
        split.train, InteractionConfig(weights=dict.fromkeys(_types(split.train), 1.0))
    )
    user_map, item_map = maps.user_map, maps.item_map
    test = _binary(split.test, user_map, item_map, positive_types)
    bought = _binary(split.train, user_map, item_map, positive_types)
    country = _user_country(split.train, user_map)
    digest = hashlib.sha256(f"{name}|{split.fingerprint()}".encode()).hexdigest()[:16]
    return ProtocolData(
        name, split, user_map, item_map, test, bought, digest, country, dict(params or {})
    )


def cold_start_test(
    events: pd.DataFrame,
    cutoff: pd.Timestamp | str,
    test_days: float,
    item_map: IdMap,
    customers: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, sp.csr_matrix]:
    """The cold-start test of a temporal protocol: customers new at the cut-off.

    Cold users are signed-in customers whose first event is at or after
    ``cutoff`` and who buy, in ``[cutoff, cutoff + test_days)``, at least one
    item of ``item_map`` (items known before the cut-off). Returns their
    profiles (``user_id``, ``country``, ``language``; sorted by ``user_id``) and
    a binary cold users x items relevance matrix, row-aligned. Country and
    language come from ``customers`` when it has them, else the most frequent
    country of the user's window events and that market's language.
    """
    if not test_days > 0:
        raise ValueError(f"test_days must be > 0, got {test_days}")
    start = pd.Timestamp(cutoff)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = start + pd.Timedelta(days=test_days)
    members = events[events["user_id"].notna()]
    first = members.groupby("user_id", sort=False)["timestamp"].min()
    new_users = first.index[(first >= start).to_numpy()]
    stamps = members["timestamp"]
    window = members[
        ((stamps >= start) & (stamps < end)).to_numpy()
        & members["user_id"].isin(new_users).to_numpy()
    ]
    bought = window[(window["type"] == "purchase").to_numpy()]
    items = item_map.index(bought["item_id"].astype(str))
    bought_users = bought["user_id"].astype(str).to_numpy()[items >= 0]
    items = items[items >= 0]
    user_ids, rows = np.unique(bought_users, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), (rows, items)),
        shape=(len(user_ids), len(item_map)),
    )
    matrix.data[:] = 1.0
    profiles = _cold_profiles(user_ids, window, customers)
    return profiles, matrix


def _empty_cold_users() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ("user_id", "country", "language")})


def _cold_profiles(
    user_ids: np.ndarray, events: pd.DataFrame, customers: pd.DataFrame | None
) -> pd.DataFrame:
    """Country and language of ``user_ids``: the customer table's, else the most
    frequent country of their events and that market's language."""
    country = _user_country(events, IdMap(user_ids)).astype(object)
    language = np.full(len(user_ids), None, dtype=object)
    if customers is not None and len(user_ids):
        table = customers.drop_duplicates("user_id", keep="last").set_index("user_id")
        given = table.reindex(user_ids)
        if "country" in given.columns:
            known = given["country"].notna().to_numpy() & (given["country"] != "").to_numpy()
            country = np.where(known, given["country"].to_numpy(object), country)
        if "language" in given.columns:
            language = given["language"].to_numpy(object)
    country = np.where(pd.isna(country) | (country == ""), None, country)
    languages = {code: market.language for code, market in MARKETS.items()}
    market_language = pd.Series(country, dtype=object).map(languages).to_numpy(object)
    language = np.where(pd.isna(language) | (language == ""), market_language, language)
    out = pd.DataFrame(
        {"user_id": user_ids.astype(object), "country": country, "language": language},
        dtype=object,
    )
    return out.where(out.notna(), None)


def _types(events: pd.DataFrame) -> list[str]:
    return [t for t in pd.unique(events["type"]) if t != "refund"]


def _binary(
    events: pd.DataFrame, user_map: IdMap, item_map: IdMap, types: tuple[str, ...] | None
) -> sp.csr_matrix:
    if types is not None:
        events = events[events["type"].isin(types)]
    events = events[events["user_id"].notna()]
    users = user_map.index(events["user_id"].astype(str))
    items = item_map.index(events["item_id"].astype(str))
    ok = (users >= 0) & (items >= 0)
    matrix = sp.csr_matrix(
        (np.ones(int(ok.sum()), dtype=np.float32), (users[ok], items[ok])),
        shape=(len(user_map), len(item_map)),
    )
    matrix.data[:] = 1.0  # duplicates summed: back to binary
    return matrix


def _user_country(events: pd.DataFrame, user_map: IdMap) -> np.ndarray:
    """Each user's most frequent country in ``events`` ("" if unknown)."""
    known = events[events["user_id"].notna() & events["country"].notna()]
    top = (
        known.groupby(["user_id", "country"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["user_id", "n"], ascending=[True, False])
        .drop_duplicates("user_id")
    )
    out = np.full(len(user_map), "", dtype=object)
    idx = user_map.index(top["user_id"].astype(str))
    out[idx[idx >= 0]] = top["country"].to_numpy(object)[idx >= 0]
    return out
