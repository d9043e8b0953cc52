"""Merchandising rules: pinned and boosted items per market.

A market's rules are ``{"pinned": [item ids], "boost": {item id: factor}}``;
the market ``_`` applies everywhere. Pinned items open the list (market
first, then ``_``) when they are eligible; a boost multiplies an item's
score in any list it appears in (factor > 1 lifts, < 1 sinks; a negative
score, as factor models give, is divided by it instead).

Rules come from a JSON file (``{"GB": {...}, "_": {...}}``, read at start)
and from the admin endpoint, which stores them in Redis (hash
``rules:<market>`` with JSON fields ``pinned`` and ``boost``) and bumps
``rules-generation`` so every worker reloads them on its next request. For
one market, rules in Redis replace those of the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from recsys.data.schema import ID_PATTERN
from serving.params import finite_number
from serving.snapshot import ALL_COUNTRIES

GLOBAL = "_"
MAX_PINNED = 50
MAX_BOOSTED = 1_000
MAX_FACTOR = 100.0
_MARKET = re.compile(r"^([A-Z]{2}|_)\Z")


class RulesError(ValueError):
    """Rules that cannot be used; the message says which field."""


@dataclass(frozen=True)
class MarketRules:
    """Pinned item ids (in order) and boost factors of one market."""

    pinned: tuple[str, ...] = ()
    boost: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"pinned": list(self.pinned), "boost": dict(self.boost)}

    @property
    def empty(self) -> bool:
        return not self.pinned and not self.boost


def check_market(market: str) -> str:
    """``_`` or an ISO alpha-2 code (upper case)."""
    market = market.upper() if market != GLOBAL else market
    if not _MARKET.match(market) or (market != GLOBAL and market not in ALL_COUNTRIES):
        raise RulesError(f"market must be an ISO 3166-1 alpha-2 code or '_', got {market!r}")
    return market


def parse_rules(obj, where: str = "rules") -> MarketRules:
    """Validated rules of one market from a JSON object."""
    if not isinstance(obj, dict):
        raise RulesError(f"{where}: expected an object with 'pinned' and/or 'boost'")
    unknown = set(obj) - {"pinned", "boost"}
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    pinned = obj.get("pinned", [])
    if not isinstance(pinned, list) or len(pinned) > MAX_PINNED:
        raise RulesError(f"{where}.pinned: expected a list of at most {MAX_PINNED} item ids")
    for item in pinned:
        _check_id(item, f"{where}.pinned")
    boost = obj.get("boost", {})
    if not isinstance(boost, dict) or len(boost) > MAX_BOOSTED:
        raise RulesError(f"{where}.boost: expected an object of at most {MAX_BOOSTED} items")
    factors = {}
    for item, factor in boost.items():
        _check_id(item, f"{where}.boost")
        if not finite_number(factor) or not 0 < factor <= MAX_FACTOR:
            raise RulesError(f"{where}.boost.{item}: factor must be a number in (0, {MAX_FACTOR}]")
        factors[item] = float(factor)
    return MarketRules(tuple(dict.fromkeys(pinned)), factors)


def load_rules_file(path: str | Path) -> dict[str, MarketRules]:
    """Rules per market from a JSON file (raises ``RulesError`` with the reason)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RulesError(f"{path}: cannot read rules: {exc}") from exc
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected an object of markets")
    return {check_market(m): parse_rules(r, f"{path}:{m}") for m, r in data.items()}


def encode_rules(rules: MarketRules) -> dict[str, str]:
    """The Redis hash fields of one market's rules."""
    return {"pinned": json.dumps(list(rules.pinned)), "boost": json.dumps(rules.boost)}


def decode_rules(fields: dict) -> MarketRules | None:
    """Rules from a Redis hash (None when the hash is empty)."""
    if not fields:
        return None
    text = {_text(k): _text(v) for k, v in fields.items()}
    return parse_rules(
        {
            "pinned": json.loads(text.get("pinned") or "[]"),
            "boost": json.loads(text.get("boost") or "{}"),
        }
    )


def merged(rules: dict[str, MarketRules], country: str | None) -> MarketRules:
    """The rules that apply in ``country``: its own, then the global ones."""
    own = rules.get(country) if country else None
    every = rules.get(GLOBAL)
    if own is None and every is None:
        return MarketRules()
    parts = [r for r in (own, every) if r is not None]
    pinned = tuple(dict.fromkeys(i for r in parts for i in r.pinned))
    boost: dict[str, float] = {}
    for r in reversed(parts):  # the market's own factors win
        boost.update(r.boost)
    return MarketRules(pinned, boost)


def all_markets() -> list[str]:
    """Every market that can carry rules, ``_`` first."""
    return [GLOBAL, *ALL_COUNTRIES]


def _check_id(value, where: str) -> None:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise RulesError(f"{where}: bad item id {value!r}")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
