"""Side features for hybrid models, as sparse one-hot matrices with names.

Items: every level of the category path (``category=Home``,
``category=Home > Kitchen``), ``brand=...``, ``tag=...`` and a price band
(``price_band=0..4``: quintile of the item's price within its currency).
Users: ``country=..`` and ``language=..`` (from the customer table, else the
country seen in their events).

Recent demand (``trend_features``): from the training events only, each
item's recency-decayed event count as a band over all markets
(``trend=q1`` .. ``trend=q5``, quintiles of the items with demand, q1 the
hottest; ``trend=none`` without any) and, per market, the top shares of the
catalog (``trend:DE=top1``: the top 1 % of items in DE, ``top5``: 1-5 %,
``top10``: 5-10 %). A hybrid model can then learn "hot in my market" from the
dot product of a country embedding with these item features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.store import DataStore
from recsys.idmap import IdMap

PRICE_BANDS = 5
#: Global demand bands: quintiles of the items with any decayed demand.
TREND_BANDS = 5
#: Per-market bands: the top 1 %, 1-5 % and 5-10 % of the catalog by demand there.
TREND_MARKET_TOPS = (0.01, 0.05, 0.10)


def item_features(store: DataStore, item_map: IdMap) -> tuple[sp.csr_matrix, list[str]]:
    """One row per item of ``item_map``: category levels, brand, tags, price band."""
    pairs: list[pd.DataFrame] = []
    if store.has("items"):
        items = store.read("items", columns=["item_id", "category", "brand", "tags"])
        items = items[items["item_id"].isin(item_map.ids(np.arange(len(item_map))))]
        category = items.dropna(subset=["category"])
        levels = category["category"].str.split(" > ")
        for depth in range(1, int(levels.map(len).max() or 0) + 1 if len(levels) else 1):
            path = levels.map(
                lambda parts, d=depth: " > ".join(parts[:d]) if len(parts) >= d else None
            )
            pairs.append(
                pd.DataFrame(
                    {"item_id": category["item_id"], "feature": "category=" + path}
                ).dropna()
            )
        brand = items.dropna(subset=["brand"])
        pairs.append(
            pd.DataFrame({"item_id": brand["item_id"], "feature": "brand=" + brand["brand"]})
        )
        tags = items[["item_id", "tags"]].explode("tags").dropna()
        pairs.append(pd.DataFrame({"item_id": tags["item_id"], "feature": "tag=" + tags["tags"]}))
    if store.has("item_markets"):
        pairs.append(_price_bands(store))
    return _one_hot(pd.concat(pairs, ignore_index=True) if pairs else None, "item_id", item_map)


def user_features(
    store: DataStore, user_map: IdMap, user_country: np.ndarray | None = None
) -> tuple[sp.csr_matrix, list[str]]:
    """One row per user of ``user_map``: country and language."""
    ids = user_map.ids(np.arange(len(user_map)))
    frame = pd.DataFrame({"user_id": ids, "country": None, "language": None})
    if user_country is not None:
        frame["country"] = pd.Series(user_country).replace("", None).to_numpy(object)
    if store.has("customers"):
        customers = store.read("customers", columns=["user_id", "country", "language"])
        customers = customers.set_index("user_id")
        known = frame["user_id"].isin(customers.index).to_numpy()
        for col in ("country", "language"):
            values = customers[col].reindex(frame["user_id"][known]).to_numpy(object)
            current = frame.loc[known, col].to_numpy(object)
            frame.loc[known, col] = np.where(pd.isna(values), current, values)
    pairs = pd.concat(
        [
            pd.DataFrame({"user_id": frame["user_id"], "feature": "country=" + frame["country"]}),
            pd.DataFrame({"user_id": frame["user_id"], "feature": "language=" + frame["language"]}),
        ]
    ).dropna()
    return _one_hot(pairs, "user_id", user_map)


def user_feature_names(country: str | None, language: str | None) -> list[str]:
    """The feature names of a visitor known only by country and language."""
    out = []
    if country:
        out.append(f"country={country}")
    if language:
        out.append(f"language={language}")
    return out


def trend_features(
    event_items: np.ndarray,
    event_times,
    reference_time,
    n_items: int,
    *,
    half_life_days: float = 14.0,
    event_markets: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, list[str]]:
    """Recent-demand bands of ``n_items`` items from events before ``reference_time``.

    Each event at or before ``reference_time`` counts ``0.5 ** (age_days /
    half_life_days)`` for its item (events after it are ignored: pass the
    training events and their last time, never test data). Items with demand
    get one of ``trend=q1`` (the top fifth) .. ``trend=q5``; items without any
    get ``trend=none``. With ``event_markets`` (a market code per event, ""
    or None if unknown), an item among the top 1 % / 5 % / 10 % of the catalog
    by demand in a market also gets ``trend:<market>=top1`` / ``top5`` /
    ``top10`` (one band per market, the highest it reaches). Ties in demand
    keep the lower item index first. Returns (n_items x features, names).
    """
    from recsys.models.time_decay import decay_weights, to_unix_seconds

    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    items = np.asarray(event_items, dtype=np.int64)
    times = to_unix_seconds(event_times) if len(items) else np.zeros(0)
    if len(times) != len(items):
        raise ValueError(f"{len(times)} event times for {len(items)} event items")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"event items must lie in [0, {n_items})")
    before = times <= to_unix_seconds(reference_time)[0]
    weights = np.zeros(len(items))
    weights[before] = decay_weights(times[before], reference_time, half_life_days)

    rows: list[np.ndarray] = []
    names: list[np.ndarray] = []
    demand = np.bincount(items, weights, minlength=n_items)
    order = _by_demand(demand)
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = np.arange(n_items)
    n_hot = int((demand > 0).sum())
    band = np.where(demand > 0, rank * TREND_BANDS // max(n_hot, 1) + 1, 0)
    labels = np.array(["trend=none"] + [f"trend=q{b}" for b in range(1, TREND_BANDS + 1)])
    rows.append(np.arange(n_items))
    names.append(labels[band])
    if event_markets is not None:
        markets = pd.Series(np.asarray(event_markets, dtype=object)).fillna("").astype(str)
        if len(markets) != len(items):
            raise ValueError(f"{len(markets)} event markets for {len(items)} event items")
        for market in sorted(set(markets) - {""}):
            inside = (markets == market).to_numpy()
            local = np.bincount(items[inside], weights[inside], minlength=n_items)
            ranked = [i for i in _by_demand(local) if local[i] > 0]
            start = 0
            for share in TREND_MARKET_TOPS:
                stop = min(int(np.ceil(share * n_items)), len(ranked))
                rows.append(np.asarray(ranked[start:stop], dtype=np.int64))
                names.append(np.full(max(stop - start, 0), f"trend:{market}=top{share * 100:g}"))
                start = max(start, stop)
    pairs = pd.DataFrame({"item": np.concatenate(rows), "feature": np.concatenate(names)})
    codes, uniques = pd.factorize(pairs["feature"], sort=True)
    matrix = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (pairs["item"].to_numpy(), codes)),
        shape=(n_items, len(uniques)),
    )
    return matrix, [str(n) for n in uniques]


def _by_demand(demand: np.ndarray) -> np.ndarray:
    """Item indices by decreasing demand, ties by increasing index."""
    return np.lexsort((np.arange(len(demand)), -demand))


def _price_bands(store: DataStore) -> pd.DataFrame:
    prices = store.read("item_markets", columns=["item_id", "currency", "price"]).dropna()
    if not len(prices):
        return pd.DataFrame({"item_id": [], "feature": []})
    prices["band"] = prices.groupby("currency")["price"].transform(
        lambda p: np.minimum((p.rank(pct=True) * PRICE_BANDS).astype(int), PRICE_BANDS - 1)
    )
    band = prices.groupby("item_id")["band"].median().round().astype(int)
    return pd.DataFrame({"item_id": band.index, "feature": "price_band=" + band.astype(str)})


def _one_hot(
    pairs: pd.DataFrame | None, key: str, id_map: IdMap
) -> tuple[sp.csr_matrix, list[str]]:
    if pairs is None or not len(pairs):
        return sp.csr_matrix((len(id_map), 0), dtype=np.float32), []
    pairs = pairs.drop_duplicates()
    rows = id_map.index(pairs[key].astype(str))
    ok = rows >= 0
    codes, names = pd.factorize(pairs["feature"][ok], sort=True)
    matrix = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (rows[ok], codes)),
        shape=(len(id_map), len(names)),
    )
    return matrix, [str(n) for n in names]
