"""Side features for hybrid models, as sparse one-hot matrices with names.

Items: every level of the category path (``category=Home``,
``category=Home > Kitchen``), ``brand=...``, ``tag=...`` and a price band
(``price_band=0..4``: quintile of the item's price within its currency).
Users: ``country=..`` and ``language=..`` (from the customer table, else the
country seen in their events).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.store import TableReader
from recsys.idmap import IdMap

PRICE_BANDS = 5


def item_features(store: TableReader, item_map: IdMap) -> tuple[sp.csr_matrix, list[str]]:
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
    store: TableReader, user_map: IdMap, user_country: np.ndarray | None = None
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


def _price_bands(store: TableReader) -> pd.DataFrame:
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
