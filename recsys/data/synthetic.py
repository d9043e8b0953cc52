"""A synthetic cross-border shop: catalog, markets, customers and browse sessions.

The shop is built so that its right answers are known. Customers belong to
hidden taste groups, each fond of a few categories and brands and of its own
items, so collaborative filtering beats popularity; item popularity has a
long tail; traffic follows a weekly and a yearly cycle and some categories are
seasonal (mirrored in the southern hemisphere). Items are sold in some
markets only, priced in each market's currency; some are new during the
window (cold items) and some customers never shop (cold users).

Generation is chunked by customers: every chunk draws from its own random
stream (``SeedSequence(seed, spawn_key=...)``), is built with vectorised numpy
and written as its own parts, so memory does not grow with the number of
customers and the same seed gives the same tables whatever the progress
setting.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from recsys.data.events import event_ids
from recsys.data.markets import MARKETS
from recsys.data.schema import CUSTOMERS, EVENTS, ITEM_MARKETS, ITEMS, TIMESTAMP
from recsys.data.store import DataError, DataStore, append_import_log, now_utc

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

VIEW, CART, PURCHASE, REFUND = 0, 1, 2, 3
TYPE_NAMES = ("view", "add_to_cart", "purchase", "refund")


@dataclass(frozen=True)
class ShopMarket:
    """A market of the synthetic shop and how the shop does there."""

    country: str
    share: float  # share of customers (and guest sessions)
    coverage: float  # chance that an item of the catalog is sold there
    markup: float  # price factor over the converted home price
    utc_offset: int  # hours, for the local time of day of sessions
    southern: bool = False  # seasons mirrored


SHOP_MARKETS: tuple[ShopMarket, ...] = (
    ShopMarket("GB", 0.40, 0.97, 1.00, 0),
    ShopMarket("DE", 0.14, 0.85, 1.04, 1),
    ShopMarket("FR", 0.10, 0.80, 1.04, 1),
    ShopMarket("US", 0.08, 0.60, 1.06, -5),
    ShopMarket("NL", 0.06, 0.80, 1.04, 1),
    ShopMarket("IE", 0.05, 0.90, 1.02, 0),
    ShopMarket("ES", 0.04, 0.70, 1.04, 1),
    ShopMarket("SE", 0.04, 0.65, 1.05, 1),
    ShopMarket("CH", 0.03, 0.60, 1.08, 1),
    ShopMarket("PL", 0.03, 0.55, 1.03, 1),
    ShopMarket("AU", 0.02, 0.50, 1.10, 10, southern=True),
    ShopMarket("JP", 0.01, 0.35, 1.12, 9),
)

#: Units of each currency per pound sterling: fixed, so prices are reproducible.
GBP_RATES: dict[str, float] = {
    "GBP": 1.0,
    "EUR": 1.17,
    "USD": 1.27,
    "SEK": 13.5,
    "CHF": 1.11,
    "PLN": 5.05,
    "AUD": 1.93,
    "JPY": 190.0,
}

#: (step, ending): a price is rounded up to a multiple of ``step``, less
#: ``ending``: 12.99 GBP, 19.90 CHF, 149 SEK, 2700 JPY.
PRICE_ROUNDING: dict[str, tuple[float, float]] = {
    "GBP": (1, 0.01),
    "EUR": (1, 0.01),
    "USD": (1, 0.01),
    "AUD": (1, 0.01),
    "PLN": (1, 0.01),
    "CHF": (1, 0.10),
    "SEK": (10, 1),
    "JPY": (100, 0),
}

#: Top-level categories not shipped to some markets (import rules for food).
NOT_SHIPPED: dict[str, frozenset[str]] = {"Food & Drink": frozenset({"US", "AU", "JP"})}

#: Leaf categories: (path, median price in GBP, kind). Kinds: "consumable"
#: (bought again), "summer", "winter", "christmas" (seasonal demand).
LEAVES: tuple[tuple[str, float, str], ...] = (
    ("Home > Kitchen > Mugs", 14, ""),
    ("Home > Kitchen > Cookware", 45, ""),
    ("Home > Kitchen > Knives", 40, ""),
    ("Home > Kitchen > Storage", 18, ""),
    ("Home > Decor > Candles", 16, "winter"),
    ("Home > Decor > Vases", 28, ""),
    ("Home > Decor > Frames", 20, ""),
    ("Home > Decor > Christmas Decorations", 15, "christmas"),
    ("Home > Bedding > Duvets", 60, "winter"),
    ("Home > Bedding > Pillows", 25, ""),
    ("Home > Bath", 20, ""),
    ("Fashion > Women > Dresses", 55, ""),
    ("Fashion > Women > Knitwear", 50, "winter"),
    ("Fashion > Women > Swimwear", 35, "summer"),
    ("Fashion > Men > Shirts", 40, ""),
    ("Fashion > Men > Jackets", 90, "winter"),
    ("Fashion > Accessories > Bags", 45, ""),
    ("Fashion > Accessories > Scarves", 22, "winter"),
    ("Fashion > Accessories > Sunglasses", 30, "summer"),
    ("Fashion > Shoes", 65, ""),
    ("Beauty > Skincare", 18, "consumable"),
    ("Beauty > Haircare", 12, "consumable"),
    ("Beauty > Fragrance", 45, ""),
    ("Beauty > Makeup", 16, ""),
    ("Garden > Tools", 25, "summer"),
    ("Garden > Plants & Seeds", 8, "summer"),
    ("Garden > Outdoor Furniture", 160, "summer"),
    ("Garden > Barbecue", 80, "summer"),
    ("Toys & Games > Board Games", 28, "christmas"),
    ("Toys & Games > Puzzles", 16, ""),
    ("Toys & Games > Outdoor Toys", 30, "summer"),
    ("Toys & Games > Building Sets", 40, "christmas"),
    ("Electronics > Audio > Headphones", 70, ""),
    ("Electronics > Audio > Speakers", 90, ""),
    ("Electronics > Phone Accessories", 15, ""),
    ("Electronics > Smart Home", 60, ""),
    ("Sports > Fitness > Yoga", 25, ""),
    ("Sports > Fitness > Weights", 40, ""),
    ("Sports > Cycling", 45, "summer"),
    ("Sports > Winter Sports", 70, "winter"),
    ("Sports > Running", 50, ""),
    ("Food & Drink > Coffee", 9, "consumable"),
    ("Food & Drink > Tea", 7, "consumable"),
    ("Food & Drink > Snacks", 5, "consumable"),
    ("Food & Drink > Chocolate", 8, "consumable"),
    ("Pets > Pet Food", 15, "consumable"),
    ("Pets > Pet Toys", 10, ""),
    ("Stationery > Notebooks", 9, ""),
    ("Stationery > Pens", 6, ""),
    ("Stationery > Cards & Wrap", 5, "christmas"),
)

KIND_TAGS: dict[str, list[str]] = {
    "": [],
    "consumable": ["consumable"],
    "summer": ["seasonal", "summer"],
    "winter": ["seasonal", "winter"],
    "christmas": ["seasonal", "christmas"],
}

_BRAND_HEADS = [
    "Nor",
    "Vel",
    "Ark",
    "Lum",
    "Sol",
    "Bri",
    "Kai",
    "Zen",
    "Oro",
    "Fjel",
    "Mar",
    "Tal",
    "Qui",
    "Ber",
    "Cal",
    "Dun",
    "Eko",
    "Fen",
    "Gal",
    "Hav",
    "Ivo",
    "Jun",
    "Kol",
    "Lin",
    "Mos",
    "Nim",
    "Pax",
    "Ros",
    "Sky",
    "Tor",
]
_BRAND_TAILS = [
    "dal",
    "ora",
    "ix",
    "wood",
    "ly",
    "ana",
    "berg",
    "co",
    "ex",
    "ia",
    "on",
    "um",
    "ette",
    "vik",
    "ard",
    "is",
    "en",
    "ova",
    "io",
    "ton",
]

#: Relative traffic by local hour of day and by weekday (Monday first).
_HOURLY = np.array(
    [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.8, 0.9, 1.0, 1.1]
    + [1.2, 1.1, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.7, 1.5, 1.0, 0.5]
)
_WEEKDAY = np.array([1.0, 0.97, 0.97, 1.0, 0.95, 0.9, 1.15])

_SIGNUP_ATTRIBUTES = tuple(
    json.dumps({"signup_channel": channel, "loyalty_tier": tier})
    for channel in ("web", "app", "store")
    for tier in ("none", "silver", "gold")
)
_SIGNUP_WEIGHTS = np.outer([0.6, 0.3, 0.1], [0.8, 0.15, 0.05]).ravel()


@dataclass(frozen=True)
class ShopConfig:
    """Knobs of the synthetic shop; the defaults give about 30 events per customer.

    Activity is per customer over the whole window, whatever its length.
    """

    chunk_users: int = 20_000
    taste_groups: int = 30
    sessions_per_user: float = 5.5  # mean over all customers, cold ones included
    guest_session_share: float = 0.15
    cold_share: float = 0.08  # customers who never have an event
    explore_share: float = 0.2  # sessions led by global popularity, not taste
    views_per_session: float = 4.5
    second_category_share: float = 0.25  # views outside the session's main category
    cart_rate: float = 0.2  # per distinct viewed item
    purchase_rate: float = 0.5  # per carted item
    refund_rate: float = 0.03  # per purchase
    repeat_rate: float = 0.4  # chance a consumable purchase is bought again later
    repeat_rounds: int = 2
    repeat_days: float = 30.0  # mean days until a repeat purchase
    zipf_exponent: float = 1.1
    brand_boost: float = 5.0  # weight of a group's favourite brands
    item_taste_sigma: float = 0.8  # spread of a group's own liking of items
    consent_share: float = 0.6
    unsubscribed_share: float = 0.08
    new_item_share: float = 0.2  # items launched during the window
    new_customer_share: float = 0.3  # customers who sign up during the window

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that cannot generate a shop."""
        if self.chunk_users < 1 or self.taste_groups < 1 or self.repeat_rounds < 0:
            raise ValueError("chunk_users and taste_groups must be >= 1, repeat_rounds >= 0")
        if self.sessions_per_user <= 0 or self.views_per_session < 1 or self.repeat_days <= 0:
            raise ValueError("sessions_per_user, repeat_days must be > 0; views_per_session >= 1")
        shares = (
            self.guest_session_share,
            self.cold_share,
            self.explore_share,
            self.second_category_share,
            self.cart_rate,
            self.purchase_rate,
            self.refund_rate,
            self.repeat_rate,
            self.consent_share,
            self.unsubscribed_share,
            self.new_item_share,
            self.new_customer_share,
        )
        if not all(0 <= s < 1 for s in shares):
            raise ValueError("shares and rates of ShopConfig must lie in [0, 1)")
        if self.consent_share + self.unsubscribed_share >= 1:
            raise ValueError("consent_share + unsubscribed_share must be < 1")


@dataclass
class ShopWorld:
    """The parts of the shop shared by all chunks: markets, catalog, tastes, calendar."""

    start_ms: int
    days: int
    # markets
    countries: np.ndarray
    currencies: np.ndarray
    languages: np.ndarray
    market_share: np.ndarray
    utc_offset: np.ndarray
    southern: np.ndarray
    # catalog
    item_ids: pa.Array
    item_leaf: np.ndarray
    item_consumable: np.ndarray
    item_created_ms: np.ndarray
    sold: np.ndarray  # (items, markets) bool
    price: np.ndarray  # (items, markets) in the market's currency
    leaf_paths: tuple[str, ...]
    items_table: pa.Table
    item_markets_table: pa.Table
    # tastes: row ``taste_groups`` is the taste-free, popularity-led row
    group_leaf: np.ndarray  # (groups + 1, leaves) category weights
    group_by_market: np.ndarray  # (markets, groups) cumulative probabilities
    item_cum: np.ndarray  # flat cumulative item weights, (groups + 1) x items by leaf
    leaf_start: np.ndarray
    leaf_end: np.ndarray
    items_by_leaf: np.ndarray
    # calendar
    season: np.ndarray  # (2, days, leaves): north, south
    day_cum: np.ndarray  # (days + 1,) cumulative traffic weight

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    @property
    def n_items(self) -> int:
        return len(self.item_leaf)


@dataclass
class CustomerDraw:
    """One chunk of customers: their table and hidden traits."""

    table: pa.Table
    user_ids: np.ndarray
    market: np.ndarray
    group: np.ndarray
    created_ms: np.ndarray
    activity: np.ndarray  # expected share of the mean session count; 0 for cold


def generate_shop(
    store: DataStore,
    users: int,
    items: int,
    days: int,
    seed: int = 0,
    start: str = "2024-01-01",
    progress: bool = True,
    config: ShopConfig | None = None,
) -> dict:
    """Replace the store's events, items, item_markets and customers with a synthetic shop.

    Everything is written in one transaction, then logged in ``imports.jsonl``
    (format ``generate``). Returns a summary (row counts, events by type,
    markets, seconds, rows per second).
    """
    config = config or ShopConfig()
    config.validate()
    if users < 1 or items < 1 or days < 1:
        raise ValueError("users, items and days must all be >= 1")
    try:
        np.datetime64(start, "ms")
    except ValueError:
        raise DataError(f"start {start!r} is not a date; give one as YYYY-MM-DD") from None
    began = time.perf_counter()
    world = build_world(items, days, seed, start, config)
    by_type = np.zeros(len(TYPE_NAMES), dtype=np.int64)
    by_market = np.zeros(len(world.countries), dtype=np.int64)
    n_events = guests = cold = 0
    with store.transaction() as txn:
        for table in ("events", "items", "item_markets", "customers"):
            txn.replace_table(table)
        txn.write_part("items", world.items_table)
        txn.write_part("item_markets", world.item_markets_table)
        with tqdm(
            total=users, unit="user", desc="generate", file=sys.stderr, disable=not progress
        ) as bar:
            for chunk, first in enumerate(range(0, users, config.chunk_users)):
                size = min(config.chunk_users, users - first)
                customers = draw_customers(world, config, seed, chunk, first, size)
                events = chunk_events(world, config, seed, chunk, customers)
                txn.write_part("customers", customers.table)
                if events.num_rows:
                    txn.write_part("events", events)
                for entry in pc.value_counts(events.column("type")).to_pylist():
                    by_type[TYPE_NAMES.index(entry["values"])] += entry["counts"]
                by_market += np.bincount(customers.market, minlength=len(world.countries))
                active = np.unique(pc.drop_null(events.column("user_id")).to_numpy())
                cold += size - len(active)
                guests += events.column("user_id").null_count
                n_events += events.num_rows
                del customers, events
                bar.update(size)
    seconds = time.perf_counter() - began
    summary = {
        "users": users,
        "items": items,
        "item_markets": world.item_markets_table.num_rows,
        "events": n_events,
        "events_by_type": {name: int(n) for name, n in zip(TYPE_NAMES, by_type, strict=True)},
        "guest_events": int(guests),
        "customers_without_events": int(cold),
        "markets": {str(c): int(n) for c, n in zip(world.countries, by_market, strict=True)},
        "days": days,
        "start": start,
        "seed": seed,
        "chunks": -(-users // config.chunk_users),
        "seconds": round(seconds, 2),
        "rows_per_second": round(n_events / seconds) if seconds else None,
    }
    # the tables it replaced are gone: the log says what the directory holds now
    append_import_log(
        store.root, {"format": "generate", "generated_at": now_utc().isoformat(), **summary}
    )
    return summary


# ---- the world: markets, catalog, tastes, calendar ------------------------
def build_world(
    items: int, days: int, seed: int, start: str = "2024-01-01", config: ShopConfig | None = None
) -> ShopWorld:
    """Draw the catalog, its markets and prices, the taste groups and the calendar."""
    config = config or ShopConfig()
    rng = _rng(seed, 0)
    start_ms = int(np.datetime64(start, "ms").astype(np.int64))
    markets = [MARKETS[m.country] for m in SHOP_MARKETS]
    countries = np.array([m.country for m in markets])
    currencies = np.array([m.currency for m in markets])
    share = np.array([m.share for m in SHOP_MARKETS])

    paths = tuple(leaf[0] for leaf in LEAVES)
    tops = np.array([p.split(" > ")[0] for p in paths])
    top_names, leaf_top = np.unique(tops, return_inverse=True)
    kinds = np.array([leaf[2] for leaf in LEAVES])
    n_leaves = len(paths)

    # items: leaf, brand, popularity, price, launch date
    leaf_size = rng.lognormal(0.0, 0.6, n_leaves)
    leaf_size /= leaf_size.sum()
    if items >= n_leaves:
        extra = rng.choice(n_leaves, items - n_leaves, p=leaf_size)
        item_leaf = rng.permutation(np.concatenate([np.arange(n_leaves), extra]))
    else:
        item_leaf = rng.choice(n_leaves, items, p=leaf_size)
    item_top = leaf_top[item_leaf]

    per_top = int(np.clip(items // 250, 3, 40))
    names = np.array([h + t for h in _BRAND_HEADS for t in _BRAND_TAILS])
    brand_names = rng.choice(names, (len(top_names), per_top), replace=False)
    brand_rank = (1.0 / np.arange(1, per_top + 1) ** 0.8) / np.sum(
        1.0 / np.arange(1, per_top + 1) ** 0.8
    )
    item_brand = np.empty(items, dtype=np.int64)  # global brand index top * per_top + k
    for t in range(len(top_names)):
        at = np.flatnonzero(item_top == t)
        item_brand[at] = t * per_top + rng.choice(per_top, len(at), p=brand_rank)

    popularity = 1.0 / (rng.permutation(items) + 10.0) ** config.zipf_exponent
    base_price = np.array([leaf[1] for leaf in LEAVES])[item_leaf] * rng.lognormal(0, 0.45, items)
    launched = rng.random(items) < config.new_item_share
    item_created_ms = np.where(
        launched,
        start_ms + rng.integers(0, days * DAY_MS, items),
        start_ms - rng.integers(DAY_MS, 730 * DAY_MS, items),
    )

    # markets: where each item is sold, its price and stock there
    coverage = np.array([m.coverage for m in SHOP_MARKETS])
    sold = rng.random((items, len(markets))) < coverage
    for top, blocked in NOT_SHIPPED.items():
        rows = item_top == np.searchsorted(top_names, top)
        cols = np.isin(countries, list(blocked))
        sold[np.ix_(rows, cols)] = False
    sold[~sold.any(axis=1), 0] = True  # every item is sold at home at least
    price = np.empty((items, len(markets)))
    for m, (market, spec) in enumerate(zip(markets, SHOP_MARKETS, strict=True)):
        price[:, m] = _round_price(
            base_price * GBP_RATES[market.currency] * spec.markup, market.currency
        )

    width = max(7, len(str(items - 1)))
    item_ids = np.strings.add("i", np.strings.zfill(np.arange(items).astype(str), width))
    brands = brand_names.ravel()[item_brand]
    leaf_name = np.array([p.split(" > ")[-1] for p in paths])
    titles = np.strings.add(
        np.strings.add(np.strings.add(brands, " "), leaf_name[item_leaf]),
        np.strings.add(" #", np.arange(1, items + 1).astype(str)),
    )
    items_table = pa.table(
        {
            "item_id": pa.array(item_ids),
            "title": pa.array(titles),
            "category": pa.array(np.array(paths)[item_leaf]),
            "brand": pa.array(brands),
            "tags": _tags(rng, kinds[item_leaf]),
            "created_at": pa.array(item_created_ms, TIMESTAMP),
        },
        schema=ITEMS,
    )
    item_markets_table = _item_markets_table(rng, item_ids, sold, price, countries, currencies)

    # tastes
    group_leaf, group_brand = _taste_groups(
        rng, config, leaf_top, popularity, item_leaf, len(top_names), per_top
    )
    group_weight = rng.dirichlet(np.full(config.taste_groups, 2.0))
    by_market = group_weight * rng.lognormal(0, 0.7, (len(markets), config.taste_groups))
    group_by_market = np.cumsum(by_market / by_market.sum(axis=1, keepdims=True), axis=1)

    order = np.argsort(item_leaf, kind="stable")
    liking = popularity[order] * np.vstack(
        [
            rng.lognormal(0, config.item_taste_sigma, (config.taste_groups, items))
            * np.where(group_brand[:, item_brand[order]], config.brand_boost, 1.0),
            np.ones((1, items)),
        ]
    )
    item_cum = np.concatenate([[0.0], np.cumsum(liking.ravel())])
    del liking
    leaf_start = np.searchsorted(item_leaf[order], np.arange(n_leaves), side="left")
    leaf_end = np.searchsorted(item_leaf[order], np.arange(n_leaves), side="right")

    # calendar
    day_of_year, weekday = _calendar(start_ms, days)
    traffic = _WEEKDAY[weekday] * _yearly_traffic(day_of_year)
    traffic *= rng.lognormal(0, 0.05, days)
    season = np.stack([_season(day_of_year, kinds), _season((day_of_year + 182) % 365, kinds)])

    return ShopWorld(
        start_ms=start_ms,
        days=days,
        countries=countries,
        currencies=currencies,
        languages=np.array([m.language for m in markets]),
        market_share=np.cumsum(share / share.sum()),
        utc_offset=np.array([m.utc_offset for m in SHOP_MARKETS]),
        southern=np.array([m.southern for m in SHOP_MARKETS], dtype=np.int64),
        item_ids=pa.array(item_ids),
        item_leaf=item_leaf,
        item_consumable=(kinds == "consumable")[item_leaf],
        item_created_ms=item_created_ms,
        sold=sold,
        price=price,
        leaf_paths=paths,
        items_table=items_table,
        item_markets_table=item_markets_table,
        group_leaf=group_leaf,
        group_by_market=group_by_market,
        item_cum=item_cum,
        leaf_start=leaf_start,
        leaf_end=leaf_end,
        items_by_leaf=order,
        season=season,
        day_cum=np.concatenate([[0.0], np.cumsum(traffic)]),
    )


def _taste_groups(rng, config, leaf_top, popularity, item_leaf, n_tops, per_top):
    """Category weights per group (plus a popularity-led last row) and favourite brands."""
    n_leaves = len(leaf_top)
    leaf_pop = np.bincount(item_leaf, weights=popularity, minlength=n_leaves)
    overall = leaf_pop / leaf_pop.sum()
    favourite = np.zeros((config.taste_groups, n_leaves))
    brands = np.zeros((config.taste_groups, n_tops * per_top), dtype=bool)
    top_weight = np.bincount(leaf_top, weights=overall, minlength=n_tops) + 0.02
    for g in range(config.taste_groups):
        tops = rng.choice(
            n_tops, rng.integers(1, 3), replace=False, p=top_weight / top_weight.sum()
        )
        candidates = np.flatnonzero(np.isin(leaf_top, tops) & (leaf_pop > 0))
        if not len(candidates):
            candidates = np.flatnonzero(leaf_pop > 0)
        chosen = rng.choice(candidates, min(len(candidates), rng.integers(2, 5)), replace=False)
        if rng.random() < 0.5:
            chosen = np.union1d(chosen, rng.choice(np.flatnonzero(leaf_pop > 0), 1))
        favourite[g, chosen] = rng.dirichlet(np.full(len(chosen), 2.0))
        own = (tops[:, None] * per_top + np.arange(per_top)).ravel()
        brands[g, rng.choice(own, min(len(own), rng.integers(2, 5)), replace=False)] = True
    group_leaf = np.vstack([0.15 * overall + 0.85 * favourite, overall])
    group_leaf[:, leaf_pop == 0] = 0.0
    return group_leaf, brands


def _round_price(amount: np.ndarray, currency: str) -> np.ndarray:
    step, ending = PRICE_ROUNDING[currency]
    return np.round(np.maximum(np.ceil(amount / step), 1) * step - ending, 2)


def _tags(rng, kinds: np.ndarray) -> pa.Array:
    """Tags from the category kind, plus "eco" and "gift" at random."""
    kind_names = list(KIND_TAGS)
    kind = np.argmax(kinds[:, None] == np.array(kind_names)[None, :], axis=1)
    combos = [
        KIND_TAGS[k] + (["eco"] if eco else []) + (["gift"] if gift else [])
        for k in kind_names
        for eco in (False, True)
        for gift in (False, True)
    ]
    eco = rng.random(len(kinds)) < 0.15
    gift = rng.random(len(kinds)) < 0.1
    index = kind * 4 + eco * 2 + gift
    return pa.array(combos, pa.list_(pa.string())).take(pa.array(index))


def _item_markets_table(rng, item_ids, sold, price, countries, currencies) -> pa.Table:
    item, market = np.nonzero(sold)
    n = len(item)
    stock = np.round(rng.lognormal(np.log(25), 1.0, n)).astype(np.int64)
    stock[rng.random(n) < 0.08] = 0  # out of stock
    untracked = rng.random(n) < 0.05  # stock not tracked: always available
    return pa.table(
        {
            "item_id": pa.array(item_ids[item]),
            "country": pa.array(countries[market]),
            "currency": pa.array(currencies[market]),
            "price": pa.array(price[item, market]),
            "stock": pa.array(stock, mask=untracked),
        },
        schema=ITEM_MARKETS,
    )


def _calendar(start_ms: int, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Day of year (0-based) and weekday (Monday 0) of every day of the window."""
    day = start_ms // DAY_MS + np.arange(days)
    dates = day.astype("datetime64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64) % 365
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    return day_of_year, weekday


def _cyclic_bump(day_of_year: np.ndarray, centre: float, width: float) -> np.ndarray:
    distance = np.abs(day_of_year - centre)
    distance = np.minimum(distance, 365 - distance)
    return np.exp(-0.5 * (distance / width) ** 2)


def _yearly_traffic(day_of_year: np.ndarray) -> np.ndarray:
    """More traffic in winter, a Black Friday peak and a run-up to Christmas."""
    return (
        1.0
        + 0.15 * np.cos(2 * np.pi * (day_of_year - 350) / 365)
        + 0.6 * _cyclic_bump(day_of_year, 331, 3)
        + 0.4 * _cyclic_bump(day_of_year, 345, 10)
    )


def _season(day_of_year: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Demand factor (days, leaves) of every leaf category."""
    summer = 1 + 0.85 * np.cos(2 * np.pi * (day_of_year - 185) / 365)
    winter = 1 + 0.85 * np.cos(2 * np.pi * (day_of_year - 5) / 365)
    christmas = 0.25 + 4.0 * _cyclic_bump(day_of_year, 350, 18)
    table = np.ones((len(day_of_year), len(kinds)))
    table[:, kinds == "summer"] = summer[:, None]
    table[:, kinds == "winter"] = winter[:, None]
    table[:, kinds == "christmas"] = christmas[:, None]
    return table


# ---- customers --------------------------------------------------------------
def draw_customers(
    world: ShopWorld, config: ShopConfig, seed: int, chunk: int, first: int, size: int
) -> CustomerDraw:
    """Customers ``first .. first + size - 1`` (chunk ``chunk``): table and hidden traits."""
    rng = _rng(seed, 1, chunk)
    market = _inverse_cdf(world.market_share, rng.random(size))
    group = (rng.random(size)[:, None] > world.group_by_market[market]).sum(axis=1)
    group = np.minimum(group, config.taste_groups - 1)

    new = rng.random(size) < config.new_customer_share
    signup_day = _sample_days(world, rng, np.zeros(size, dtype=np.int64))
    created_ms = np.where(
        new,
        world.start_ms + signup_day * DAY_MS + rng.integers(0, DAY_MS, size),
        world.start_ms - rng.integers(DAY_MS, 3 * 365 * DAY_MS, size),
    )
    cold = rng.random(size) < config.cold_share
    activity = np.where(cold, 0.0, rng.lognormal(-0.32, 0.8, size) / (1 - config.cold_share))

    unsubscribed = rng.random(size) < config.unsubscribed_share
    consent = ~unsubscribed & (
        rng.random(size) < config.consent_share / (1 - config.unsubscribed_share)
    )
    since = np.maximum(created_ms, world.start_ms - 365 * DAY_MS)
    unsubscribed_ms = since + (rng.random(size) * (world.end_ms - since)).astype(np.int64)
    attributes = _inverse_cdf(np.cumsum(_SIGNUP_WEIGHTS), rng.random(size))

    user_ids = _user_ids(first, size)
    table = pa.table(
        {
            "user_id": pa.array(user_ids),
            "email": pa.array(np.strings.add(user_ids, "@example.com")),
            "country": pa.array(world.countries[market]),
            "language": pa.array(world.languages[market]),
            "email_consent": pa.array(consent),
            "unsubscribed_at": pa.array(unsubscribed_ms, TIMESTAMP, mask=~unsubscribed),
            "created_at": pa.array(created_ms, TIMESTAMP),
            "attributes": pa.array(np.array(_SIGNUP_ATTRIBUTES)[attributes]),
        },
        schema=CUSTOMERS,
    )
    return CustomerDraw(table, user_ids, market, group, created_ms, activity)


def customer_taste_groups(
    users: int,
    items: int,
    days: int,
    seed: int = 0,
    start: str = "2024-01-01",
    config: ShopConfig | None = None,
) -> tuple[np.ndarray, ShopWorld]:
    """The hidden taste group of every customer of ``generate_shop`` with these
    arguments, and the world (``world.group_leaf`` holds each group's category weights).
    """
    config = config or ShopConfig()
    world = build_world(items, days, seed, start, config)
    groups = [
        draw_customers(
            world, config, seed, chunk, first, min(config.chunk_users, users - first)
        ).group
        for chunk, first in enumerate(range(0, users, config.chunk_users))
    ]
    return np.concatenate(groups), world


# ---- events -------------------------------------------------------------------
def chunk_events(
    world: ShopWorld, config: ShopConfig, seed: int, chunk: int, customers: CustomerDraw
) -> pa.Table:
    """The sessions of one chunk of customers and its share of guest sessions, as events."""
    rng = _rng(seed, 2, chunk)
    n_users = len(customers.market)
    share_left = 1 - world.day_cum[_window_day(world, customers.created_ms)] / world.day_cum[-1]
    per_user = rng.poisson(config.sessions_per_user * customers.activity * share_left)
    n_guest = rng.poisson(
        per_user.sum() * config.guest_session_share / (1 - config.guest_session_share)
    )

    # sessions: who, where, which taste, when, which categories
    s_user = np.concatenate([np.repeat(np.arange(n_users), per_user), np.full(n_guest, -1)])
    guest_market = _inverse_cdf(world.market_share, rng.random(n_guest))
    s_market = np.concatenate([customers.market[s_user[s_user >= 0]], guest_market])
    guest_group = (rng.random(n_guest)[:, None] > world.group_by_market[guest_market]).sum(axis=1)
    s_group = np.concatenate(
        [customers.group[s_user[s_user >= 0]], np.minimum(guest_group, config.taste_groups - 1)]
    )
    n_sessions = len(s_user)
    s_group[rng.random(n_sessions) < config.explore_share] = config.taste_groups
    floor_ms = np.where(s_user >= 0, customers.created_ms[np.maximum(s_user, 0)], world.start_ms)
    floor_ms = np.maximum(floor_ms, world.start_ms)
    day = _sample_days(world, rng, _window_day(world, floor_ms))
    hour = _inverse_cdf(np.cumsum(_HOURLY / _HOURLY.sum()), rng.random(n_sessions))
    s_start = (
        world.start_ms
        + day * DAY_MS
        + (hour - world.utc_offset[s_market]) * HOUR_MS
        + rng.integers(0, HOUR_MS, n_sessions)
    )
    s_start = np.maximum(s_start, floor_ms + 60_000)
    weights = world.group_leaf[s_group] * world.season[world.southern[s_market], day]
    main_leaf, other_leaf = _sample_rows(rng, weights, 2)
    del weights

    # views: a few items per session, timestamps increasing
    n_views = 1 + rng.poisson(config.views_per_session - 1, n_sessions)
    v_sess = np.repeat(np.arange(n_sessions), n_views)
    v_leaf = np.where(
        rng.random(len(v_sess)) < config.second_category_share,
        other_leaf[v_sess],
        main_leaf[v_sess],
    )
    gaps = rng.exponential(45_000, len(v_sess)).astype(np.int64) + 1_000
    offsets = np.cumsum(n_views) - n_views
    gaps[offsets] = 0
    elapsed = np.cumsum(gaps)
    v_time = s_start[v_sess] + elapsed - elapsed[offsets][v_sess]
    v_item, ok = _sample_available(world, rng, s_group[v_sess], v_leaf, s_market[v_sess], v_time)
    v_sess, v_item, v_time = v_sess[ok], v_item[ok], v_time[ok]

    # carts: some distinct viewed items; purchases: some carted items at checkout
    _, first_view = np.unique(v_sess * world.n_items + v_item, return_index=True)
    carted = np.sort(first_view[rng.random(len(first_view)) < config.cart_rate])
    c_sess, c_item = v_sess[carted], v_item[carted]
    c_time = v_time[carted] + rng.exponential(20_000, len(carted)).astype(np.int64) + 1_000
    c_qty = _quantity(rng, world.item_consumable[c_item])
    last = np.full(n_sessions, np.iinfo(np.int64).min)
    np.maximum.at(last, v_sess, v_time)
    np.maximum.at(last, c_sess, c_time)
    checkout = last + rng.exponential(90_000, n_sessions).astype(np.int64) + 5_000
    bought = rng.random(len(c_sess)) < config.purchase_rate
    p_sess, p_item, p_qty = c_sess[bought], c_item[bought], c_qty[bought]
    p_time = checkout[p_sess]
    # a customer buys a durable item once: later carts of it are abandoned
    owner = s_user[p_sess]
    key = owner * world.n_items + p_item
    order = np.lexsort((p_time, key))
    again = np.zeros(len(key), dtype=bool)
    again[order[1:]] = key[order[1:]] == key[order[:-1]]
    keep = ~(again & (owner >= 0) & ~world.item_consumable[p_item])
    p_sess, p_item, p_qty, p_time = p_sess[keep], p_item[keep], p_qty[keep], p_time[keep]

    parts = {
        VIEW: [(v_sess, v_item, np.ones(len(v_sess), np.int64), v_time)],
        CART: [(c_sess, c_item, c_qty, c_time)],
        PURCHASE: [(p_sess, p_item, p_qty, p_time)],
    }

    # consumables are bought again in later sessions of their own
    source = (p_sess, p_item, p_qty, p_time)
    for _ in range(config.repeat_rounds):
        r_sess, r_item, r_qty, r_time = source
        again = (
            (s_user[r_sess] >= 0)
            & world.item_consumable[r_item]
            & (rng.random(len(r_sess)) < config.repeat_rate)
        )
        r_sess, r_item, r_qty, r_time = r_sess[again], r_item[again], r_qty[again], r_time[again]
        wait = rng.gamma(3.0, config.repeat_days / 3.0 * DAY_MS, len(r_sess)).astype(np.int64)
        new_sess = n_sessions + np.arange(len(r_sess))
        n_sessions += len(r_sess)
        s_user = np.concatenate([s_user, s_user[r_sess]])
        s_market = np.concatenate([s_market, s_market[r_sess]])
        t_view = r_time + wait + HOUR_MS
        t_cart = t_view + rng.integers(10_000, 120_000, len(r_sess))
        t_buy = t_cart + rng.integers(20_000, 300_000, len(r_sess))
        parts[VIEW].append((new_sess, r_item, np.ones(len(r_sess), np.int64), t_view))
        parts[CART].append((new_sess, r_item, r_qty, t_cart))
        parts[PURCHASE].append((new_sess, r_item, r_qty, t_buy))
        source = (new_sess, r_item, r_qty, t_buy)

    # refunds, some days after the purchase
    bought_all = [np.concatenate(col) for col in zip(*parts[PURCHASE], strict=True)]
    refund = rng.random(len(bought_all[0])) < config.refund_rate
    r_sess, r_item, r_qty, r_time = (col[refund] for col in bought_all)
    r_time = r_time + rng.integers(DAY_MS, 21 * DAY_MS, len(r_sess))
    parts[REFUND] = [(r_sess, r_item, r_qty, r_time)]

    return _events_table(world, chunk, s_user, s_market, customers.user_ids, parts)


def _events_table(world, chunk, s_user, s_market, user_ids, parts) -> pa.Table:
    """Collect the event parts into one sorted table with event ids."""
    columns = [[], [], [], [], []]
    for code, pieces in parts.items():
        for sess, item, qty, at in pieces:
            for column, values in zip(
                columns, (sess, item, qty, at, np.full(len(sess), code)), strict=True
            ):
                column.append(values)
    sess, item, qty, at, code = (np.concatenate(c) for c in columns)
    keep = at < world.end_ms
    sess, item, qty, at, code = sess[keep], item[keep], qty[keep], at[keep], code[keep]
    order = np.argsort(at, kind="stable")  # ties keep the funnel order of the parts
    sess, item, qty, at, code = sess[order], item[order], qty[order], at[order], code[order]
    market = s_market[sess]
    user = s_user[sess]

    present = np.bincount(sess) > 0
    used = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[sess]
    session_ids = np.strings.add(f"s{chunk:05d}-", np.strings.zfill(used.astype(str), 7))
    table = pa.table(
        {
            "timestamp": pa.array(at, TIMESTAMP),
            "user_id": pa.array(user_ids).take(pa.array(user, mask=user < 0)),
            "session_id": pa.array(session_ids).take(pa.array(local)),
            "item_id": world.item_ids.take(pa.array(item)),
            "type": pa.array(np.array(TYPE_NAMES)[code]),
            "quantity": pa.array(qty, pa.int32()),
            "price": pa.array(world.price[item, market]),
            "currency": pa.array(world.currencies[market]),
            "country": pa.array(world.countries[market]),
            "value": pa.nulls(len(at), pa.float32()),
        }
    )
    ids = event_ids(table.to_pandas())
    table = table.add_column(0, "event_id", pa.array(ids, pa.uint64()))
    duplicate = pd.Series(ids).duplicated().to_numpy()
    if duplicate.any():
        table = table.filter(pa.array(~duplicate))
    return table.select(EVENTS.names).cast(EVENTS)


def _sample_available(world, rng, group, leaf, market, at, rounds: int = 12):
    """Items of ``leaf`` by the group's liking, redrawn until sold in the market
    and launched by ``at``; returns the items and which draws succeeded."""
    item = _sample_items(world, rng, group, leaf)
    ok = world.sold[item, market] & (world.item_created_ms[item] <= at)
    for _ in range(rounds):
        bad = np.flatnonzero(~ok)
        if not len(bad):
            break
        item[bad] = _sample_items(world, rng, group[bad], leaf[bad])
        ok[bad] = world.sold[item[bad], market[bad]] & (world.item_created_ms[item[bad]] <= at[bad])
    return item, ok


def _sample_items(world: ShopWorld, rng, group: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """One item per draw from ``leaf``, weighted by the liking of ``group``."""
    base = group * world.n_items
    low = base + world.leaf_start[leaf]
    high = base + world.leaf_end[leaf]
    target = world.item_cum[low] + rng.random(len(group)) * (
        world.item_cum[high] - world.item_cum[low]
    )
    flat = np.clip(np.searchsorted(world.item_cum, target, side="right") - 1, low, high - 1)
    return world.items_by_leaf[flat - base]


def _sample_rows(rng, weights: np.ndarray, draws: int) -> list[np.ndarray]:
    """``draws`` column indices per row of ``weights``, each drawn by the row's weights."""
    cum = np.cumsum(weights, axis=1)
    last = weights.shape[1] - 1
    out = []
    for _ in range(draws):
        target = (1.0 - rng.random(len(weights))) * cum[:, -1]  # in (0, total]
        out.append(np.minimum((cum < target[:, None]).sum(axis=1), last))
    return out


def _sample_days(world: ShopWorld, rng, first_day: np.ndarray) -> np.ndarray:
    """A day of the window per draw, no earlier than ``first_day``, by traffic."""
    low = world.day_cum[first_day]
    target = low + rng.random(len(first_day)) * (world.day_cum[-1] - low)
    day = np.searchsorted(world.day_cum, target, side="right") - 1
    return np.clip(day, first_day, world.days - 1)


def _window_day(world: ShopWorld, at_ms: np.ndarray) -> np.ndarray:
    return np.clip((at_ms - world.start_ms) // DAY_MS, 0, world.days - 1)


def _quantity(rng, consumable: np.ndarray) -> np.ndarray:
    extra = np.where(
        consumable, rng.poisson(0.5, len(consumable)), rng.random(len(consumable)) < 0.04
    )
    return 1 + np.minimum(extra, 4).astype(np.int64)


def _inverse_cdf(cumulative: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cumulative, uniform, side="right"), len(cumulative) - 1)


def _user_ids(first: int, size: int) -> np.ndarray:
    return np.strings.add("u", np.strings.zfill(np.arange(first, first + size).astype(str), 7))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
