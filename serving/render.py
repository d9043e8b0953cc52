"""List answers as JSON text, from per-snapshot pre-encoded fragments.

Everything of an item that does not depend on the request (its id, and in a
market its price, currency and category) is encoded once per snapshot and
market, lazily, and reused: a response costs a dictionary lookup and one
string join per item instead of a ``json.dumps`` of a list of dicts. The
cache is bounded (``max_cached`` fragments); past it, fragments are encoded
per request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serving.ranking import Pick

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: Fragments kept per snapshot (about 150 bytes each): 200,000 is ~30 MB per process.
MAX_CACHED = 200_000


class PricedMarket(Protocol):
    """What rendering needs of a market (``serving.snapshot.Market``)."""

    country: str
    currency: str | None
    price: np.ndarray


@dataclass
class Fragments:
    """JSON fragments of one snapshot's items, per market.

    Per market and item index, the fragment before the score
    (``{"item_id":"...","score":``) and the one after it (``,"price":...,
    "currency":...,"category":...,"source":"``), as one pair.
    """

    item_ids: object  # sequence of str per item index
    categories: list[str]
    item_category: np.ndarray  # category index per item index, -1: none
    max_cached: int = MAX_CACHED
    _pairs: dict[str | None, dict[int, tuple[str, str]]] = field(default_factory=dict)
    _cached: int = 0

    def __post_init__(self) -> None:
        self._category_json = [_DUMPS(c) for c in self.categories]

    def encode(self, picks: list[Pick], market: PricedMarket | None) -> str:
        """The picks as the comma-separated JSON objects of a list's ``items``
        (item_id, score, price, currency, category, source), joined at once."""
        if not picks:
            return ""
        key = market.country if market is not None else None
        pairs = self._pairs.get(key)
        if pairs is None:
            pairs = self._pairs[key] = {}
        score_text = _SCORES.get
        parts: list[str] = []
        extend = parts.extend
        for item, score, source in picks:
            pair = pairs.get(item)
            if pair is None:
                pair = self._pair(item, market, pairs)
            text = score_text(score)
            if text is None:
                text = _score(score)
            extend((pair[0], text, pair[1], source, '"},'))
        parts[-1] = '"}'
        return "".join(parts)

    def _pair(
        self, item: int, market: PricedMarket | None, pairs: dict[int, tuple[str, str]]
    ) -> tuple[str, str]:
        head = '{"item_id":' + _DUMPS(str(self.item_ids[item])) + ',"score":'
        price = float(market.price[item]) if market is not None else None
        priced = price is not None and math.isfinite(price)
        money = _DUMPS(market.currency) if priced and market.currency else "null"
        category = int(self.item_category[item])
        tail = (
            f',"price":{_number(price, 4) if priced else "null"},"currency":{money},'
            f'"category":{self._category_json[category] if category >= 0 else "null"},'
            '"source":"'
        )
        if self._cached < self.max_cached:
            pairs[item] = (head, tail)
            self._cached += 1
        return head, tail


@dataclass
class ListAnswer:
    """A list response: its items as encoded JSON objects (``Fragments.encode``)
    plus the response's other fields."""

    items_json: str
    meta: dict

    def to_json(self) -> str:
        return '{"items":[' + self.items_json + "]," + _meta_text(self.meta)

    def as_dict(self) -> dict:
        return json.loads(self.to_json())


#: Scores are float16 values: few distinct numbers, so their text is kept
#: (bounded) instead of formatted again for every response.
_SCORES: dict[float | None, str] = {None: "null"}
_CACHE_LIMIT = 200_000


#: The encoded other fields of recent answers (source, version, country ...): few
#: distinct combinations, so each is encoded once. Keyed by values and their types
#: (``True == 1`` as a key, but not as JSON).
_META: dict[tuple, str] = {}
_META_LIMIT = 10_000


def _meta_text(meta: dict) -> str:
    """``meta`` as the tail of a JSON object (``"a":1,...}``), cached."""
    try:
        key = (tuple(meta.items()), tuple(map(type, meta.values())))
        text = _META.get(key)
    except TypeError:  # an unhashable value: encode it every time
        return _DUMPS(meta)[1:]
    if text is None:
        text = _DUMPS(meta)[1:]
        if len(_META) >= _META_LIMIT:
            _META.clear()
        _META[key] = text
    return text


def _score(value: float | None) -> str:
    if value is None:
        return "null"
    text = _SCORES.get(value)
    if text is None:
        text = _number(value, 5)
        if len(_SCORES) < _CACHE_LIMIT:
            _SCORES[value] = text
    return text


def _number(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "null"
    return repr(round(value, digits))
