"""The static tables of one snapshot version, held in-process.

Everything that does not depend on the visitor is loaded once per version
(a few pipelined round trips when ``current`` moves): the item-id table,
offers and prices per market, item categories, popular and trending lists,
and the similar-item lists of catalogs up to a configured size. Requests
then only fetch what belongs to the visitor. The same tables are the
fallback copy that answers while Redis is down.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import pycountry

from recsys.snapshots.codec import MARKET_OFFERS, unpack, unpack_int32, unpack_offers
from recsys.snapshots.keys import VERSION_PATTERN
from serving.gateway import RedisGateway
from serving.ranking import eligibility_flags
from serving.render import Fragments

#: Keys per MGET when loading lists.
MGET_CHUNK = 1_000
#: (market, category) eligibility tables kept per snapshot (one byte per item each).
MAX_FLAG_TABLES = 2_000
ALL_COUNTRIES: tuple[str, ...] = tuple(sorted(c.alpha_2 for c in pycountry.countries))

Ranked = tuple[np.ndarray, np.ndarray]
_EMPTY: Ranked = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


_UNSET = object()


class SnapshotNotReady(LookupError):
    """``current`` names no complete snapshot: nothing published yet, not a version,
    or keys of it are missing (evicted, or deleted while it was being read)."""


@dataclass
class Market:
    """The items sold and in stock in one country, with their prices."""

    country: str
    currency: str | None
    offered: np.ndarray  # bool per item index
    price: np.ndarray  # float32 per item index, NaN where not offered / unknown


@dataclass
class Snapshot:
    """One version's static tables."""

    version: str
    meta: dict[str, str]
    item_ids: np.ndarray  # str per item index
    index: dict[str, int]
    categories: list[str]
    item_category: np.ndarray  # int64 per item index, -1: none
    markets: dict[str, Market]
    popular: dict[tuple[str | None, int | None], Ranked]
    trending: dict[str | None, Ranked]
    similar_ids: np.ndarray | None  # (items, k) int64, -1 padded; None: not cached
    similar_scores: np.ndarray | None
    loaded_at: float = field(default_factory=time.time)
    fragments: Fragments | None = None
    _category_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _flags: dict[tuple, bytes | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.fragments is None:
            self.fragments = Fragments(self.item_ids, self.categories, self.item_category)
        #: category index per item as a list (what the list builder reads per item)
        self.item_category_list: list[int] = self.item_category.tolist()
        self._category_set = frozenset(self.categories)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def has_markets(self) -> bool:
        """False when the shop has no market table: every item is sold everywhere."""
        return bool(self.markets)

    def indices(self, item_ids) -> list[int]:
        """Indices of the known ids among ``item_ids`` (order kept, unknown ones dropped)."""
        get = self.index.get
        return [i for i in map(get, item_ids) if i is not None]

    def category_index(self, name: str) -> int | None:
        """Index of a category path, or None."""
        try:
            return self.categories.index(name)
        except ValueError:
            return None

    def category_mask(self, name: str) -> np.ndarray | None:
        """Items in category ``name`` or any of its sub-categories (None: unknown name).

        Masks of known names are cached; unknown names are not (any visitor can
        send any name: the cache would grow without bound)."""
        mask = self._category_masks.get(name)
        if mask is None:
            if name not in self._category_set:
                return None
            names = np.asarray(self.categories, dtype=object)
            inside = np.flatnonzero(
                (names == name) | np.char.startswith(names.astype(str), name + " > ")
            )
            mask = self._category_masks[name] = np.isin(self.item_category, inside)
        return mask

    def eligibility_flags(
        self, market: Market | None, category: str | None, in_category: np.ndarray | None
    ) -> bytes | None:
        """One byte per item, non-zero where it may be shown in ``market`` and
        ``category`` (``in_category``: that category's mask); cached."""
        key = (market.country if market is not None else None, category)
        flags = self._flags.get(key, _UNSET)
        if flags is _UNSET:
            flags = eligibility_flags(market.offered if market is not None else None, in_category)
            if len(self._flags) < MAX_FLAG_TABLES:
                self._flags[key] = flags
        return flags

    def similar(self, item: int) -> Ranked:
        """Cached similar items of one item index (empty when not cached)."""
        if self.similar_ids is None or not 0 <= item < len(self.similar_ids):
            return _EMPTY
        ids = self.similar_ids[item]
        keep = ids >= 0
        return ids[keep], self.similar_scores[item][keep]

    def popular_list(self, country: str | None, category: int | None = None) -> Ranked:
        """A published popular list (empty if none)."""
        return self.popular.get((country, category), _EMPTY)


def load_snapshot(
    gateway: RedisGateway, version: str, cache_similar_max_items: int = 500_000
) -> Snapshot:
    """Read every static table of ``version`` (raises ``SnapshotNotReady`` if incomplete
    or if a value cannot be decoded)."""
    if not VERSION_PATTERN.match(version):
        raise SnapshotNotReady(f"current names no snapshot version: {version[:80]!r}")
    try:
        return _load(gateway, version, cache_similar_max_items)
    except ValueError as exc:  # a packed list cut short, meta that is not JSON ...
        raise SnapshotNotReady(
            f"snapshot {version} holds a value that cannot be read: {exc}"
        ) from exc


def _load(gateway: RedisGateway, version: str, cache_similar_max_items: int) -> Snapshot:
    keys = gateway.keys
    everywhere = [None, *ALL_COUNTRIES]

    def first(pipe):
        pipe.hgetall(keys.meta(version))
        pipe.get(keys.item_ids(version))
        pipe.get(keys.categories(version))
        pipe.get(keys.item_categories(version))
        pipe.mget([keys.popular(version, c) for c in everywhere])
        pipe.mget([keys.trending(version, c) for c in everywhere])

    raw_meta, items_blob, cats_blob, item_cat_blob, pop_blobs, trend_blobs = gateway.run(first)
    meta = {_text(k): _text(v) for k, v in raw_meta.items()}
    if meta.get("status") != "ready":
        raise SnapshotNotReady(f"snapshot {version} is not ready (status {meta.get('status')})")
    item_ids = np.array(_lines(items_blob), dtype=object)
    index = {item: i for i, item in enumerate(item_ids.tolist())}
    categories = _lines(cats_blob)
    item_category = unpack_int32(item_cat_blob)
    missing = _missing(meta, items_blob, len(item_ids), len(categories), item_category)
    if missing:
        raise SnapshotNotReady(f"snapshot {version} is incomplete: {missing}")
    currencies: dict[str, str] = json.loads(meta.get("markets") or "{}")
    popular = {(c, None): unpack(b) for c, b in zip(everywhere, pop_blobs, strict=True) if b}
    trending = {c: unpack(b) for c, b in zip(everywhere, trend_blobs, strict=True) if b}

    countries = sorted(currencies)
    list_countries = [c for c in everywhere if (c, None) in popular]
    category_keys = [(c, cat) for c in list_countries for cat in range(len(categories))]
    cache_similar = 0 < len(item_ids) <= cache_similar_max_items

    def second(pipe):
        if countries:
            pipe.mget([keys.market(version, c) for c in countries])
        for chunk in _chunks(category_keys):
            pipe.mget([keys.popular(version, c, cat) for c, cat in chunk])
        if cache_similar:
            for chunk in _chunks(range(len(item_ids))):
                pipe.mget([keys.similar(version, i) for i in chunk])

    out = gateway.run(second) if (countries or category_keys or cache_similar) else []
    position = 0
    markets: dict[str, Market] = {}
    if countries:
        lost = [c for c, blob in zip(countries, out[0], strict=True) if blob is None]
        # read as "nothing offered", every list there would fall to empty; a snapshot of
        # earlier publishes has no table for a market with nothing in stock: empty there
        if lost and meta.get(MARKET_OFFERS) == "all":
            raise SnapshotNotReady(
                f"snapshot {version} is incomplete: the offers of market(s) "
                f"{', '.join(lost)} are missing"
            )
        for country, blob in zip(countries, out[0], strict=True):
            markets[country] = _market(country, currencies.get(country), blob, len(item_ids))
        position = 1
    n_category_chunks = len(_chunks(category_keys))
    blobs = [b for part in out[position : position + n_category_chunks] for b in part]
    for key, blob in zip(category_keys, blobs, strict=True):
        if blob:
            popular[key] = unpack(blob)
    position += n_category_chunks
    similar_ids = similar_scores = None
    if cache_similar:
        blobs = [b for part in out[position:] for b in part]
        similar_ids, similar_scores = _dense(blobs, int(meta.get("k_similar") or 0))
    return Snapshot(
        version=version,
        meta=meta,
        item_ids=item_ids,
        index=index,
        categories=categories,
        item_category=item_category,
        markets=markets,
        popular=popular,
        trending=trending,
        similar_ids=similar_ids,
        similar_scores=similar_scores,
    )


def _missing(
    meta: dict[str, str],
    items_blob: bytes | None,
    n_items: int,
    n_categories: int,
    item_category: np.ndarray,
) -> str | None:
    """What is missing from a snapshot's item tables (None: nothing). A publish
    writes all of them; a key that is gone was evicted or deleted."""
    if items_blob is None:
        return "its item table is missing"
    expected = meta.get("items")
    if expected is not None and expected != str(n_items):
        return f"its item table holds {n_items} items, its meta says {expected}"
    if len(item_category) != n_items:
        return f"it has {len(item_category)} item categories for {n_items} items"
    if n_items and int(item_category.max()) >= n_categories:
        return f"its items name categories beyond the {n_categories} it lists"
    return None


def _market(country: str, currency: str | None, blob: bytes | None, n_items: int) -> Market:
    ids, prices = unpack_offers(blob)
    keep = ids < n_items
    offered = np.zeros(n_items, dtype=bool)
    offered[ids[keep]] = True
    price = np.full(n_items, np.nan, dtype=np.float32)
    price[ids[keep]] = prices[keep]
    return Market(country, currency, offered, price)


def _dense(blobs: list[bytes | None], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Similar lists as a dense (items, k) table padded with -1."""
    width = max([k, *(len(b) // 6 for b in blobs if b)]) if blobs else k
    ids = np.full((len(blobs), width), -1, dtype=np.int64)
    scores = np.zeros((len(blobs), width), dtype=np.float32)
    for row, blob in enumerate(blobs):
        if blob:
            got, got_scores = unpack(blob)
            ids[row, : len(got)] = got
            scores[row, : len(got)] = got_scores
    return ids, scores


def _chunks(values) -> list:
    values = list(values)
    return [values[i : i + MGET_CHUNK] for i in range(0, len(values), MGET_CHUNK)]


def _lines(blob: bytes | None) -> list[str]:
    text = _text(blob) or ""
    return text.split("\n") if text else []


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
