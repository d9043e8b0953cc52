"""List answers as JSON text, from per-snapshot pre-encoded fragments.

The item ids and category names of a snapshot are encoded once (lazily) and
reused, so a response costs a few string joins instead of a ``json.dumps``
of a list of dicts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from serving.ranking import Pick

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass
class Fragments:
    """JSON fragments of one snapshot: ``"item_id":"..."`` per item, category per index."""

    item_ids: object  # sequence of str per item index
    categories: list[str]
    _items: dict[int, str] = field(default_factory=dict)
    _categories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._categories = [_DUMPS(c) for c in self.categories]

    def item(self, index: int) -> str:
        found = self._items.get(index)
        if found is None:
            found = self._items[index] = '{"item_id":' + _DUMPS(str(self.item_ids[index]))
        return found

    def category(self, index: int) -> str:
        return self._categories[index] if index >= 0 else "null"


@dataclass
class ListAnswer:
    """A list response: encoded items plus the response's other fields."""

    items: list[str]
    meta: dict

    def to_json(self) -> str:
        return '{"items":[' + ",".join(self.items) + "]," + _DUMPS(self.meta)[1:]

    def as_dict(self) -> dict:
        return json.loads(self.to_json())


def encode_items(
    fragments: Fragments,
    picks: list[Pick],
    categories: list[int],
    prices: list[float | None],
    currency: str | None,
) -> list[str]:
    """One JSON object per pick: item_id, score, price, currency, category, source."""
    money = _DUMPS(currency) if currency else "null"
    out = []
    for pick, category, price in zip(picks, categories, prices, strict=True):
        priced = price is not None and math.isfinite(price)
        out.append(
            f'{fragments.item(pick.item)},"score":{_score(pick.score)},'
            f'"price":{_price(price) if priced else "null"},'
            f'"currency":{money if priced else "null"},'
            f'"category":{fragments.category(category)},"source":"{pick.source}"}}'
        )
    return out


#: Scores are float16 values and prices come from a fixed table: few distinct numbers,
#: so their text is kept (bounded) instead of formatted again for every response.
_SCORES: dict[float, str] = {}
_PRICES: dict[float, str] = {}
_CACHE_LIMIT = 200_000


def _score(value: float | None) -> str:
    if value is None:
        return "null"
    text = _SCORES.get(value)
    if text is None:
        text = _number(value, 5)
        if len(_SCORES) < _CACHE_LIMIT:
            _SCORES[value] = text
    return text


def _price(value: float) -> str:
    text = _PRICES.get(value)
    if text is None:
        text = _number(value, 4)
        if len(_PRICES) < _CACHE_LIMIT:
            _PRICES[value] = text
    return text


def _number(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "null"
    return repr(round(value, digits))
