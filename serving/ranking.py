"""Business rules over ranked lists: eligibility, exclusions, no duplicates, diversity.

Pure numpy and Python (no Flask, no Redis): a ``ListBuilder`` takes ranked
sources in fallback order and keeps, in rank order, the items that are sold
and in stock in the visitor's market, in the requested category, not bought
or excluded, not already listed, and within the per-category limit, until
it holds ``n`` items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Eligibility:
    """Which item indices may be shown at all."""

    offered: np.ndarray | None = None  # bool per item (None: no market restriction)
    in_category: np.ndarray | None = None  # bool per item (None: any category)

    def mask(self, ids: np.ndarray) -> np.ndarray | None:
        """Per id: may it be shown? (None: every id may.)"""
        offered, in_category = self.offered, self.in_category
        if offered is None:
            return None if in_category is None else in_category[ids]
        keep = offered[ids]
        if in_category is not None:
            keep &= in_category[ids]
        return keep

    def all_items(self, n_items: int) -> np.ndarray:
        """Every eligible item index, ascending."""
        keep = np.ones(n_items, dtype=bool)
        if self.offered is not None:
            keep &= self.offered
        if self.in_category is not None:
            keep &= self.in_category
        return np.flatnonzero(keep)


#: One listed item: (item index, score or None, source). A plain tuple: lists are
#: built on every request and a named tuple costs several times more to make.
Pick = tuple[int, float | None, str]


@dataclass
class ListBuilder:
    """Fills a list of ``n`` items from ranked sources, applying every rule."""

    n: int
    eligibility: Eligibility
    item_category: np.ndarray  # category index per item (-1: none)
    max_per_category: int = 0  # 0: no limit
    blocked: set[int] = field(default_factory=set)  # bought, excluded
    boost: dict[int, float] = field(default_factory=dict)
    picks: list[Pick] = field(default_factory=list)
    _taken: set[int] = field(default_factory=set)  # blocked or already listed
    _per_category: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._taken = set(self.blocked)

    @property
    def full(self) -> bool:
        return len(self.picks) >= self.n

    def add(self, ids: np.ndarray, scores: np.ndarray | None, source: str) -> None:
        """Append eligible items of one ranked source, in (boosted) rank order."""
        picks, n = self.picks, self.n
        if len(picks) >= n or not len(ids):
            return
        keep = self.eligibility.mask(ids)
        if keep is not None:
            ids = ids[keep]
            scores = scores[keep] if scores is not None else None
        if self.boost and scores is not None:
            ids, scores = self._boosted(ids, scores)
        items = ids.tolist()
        score_list = scores.tolist() if scores is not None else [None] * len(items)
        taken, cap = self._taken, self.max_per_category
        if not cap:
            for item, score in zip(items, score_list, strict=True):
                if item not in taken:
                    taken.add(item)
                    picks.append((item, score, source))
                    if len(picks) >= n:
                        return
            return
        per_category = self._per_category
        categories = self.item_category[ids].tolist()
        for item, score, category in zip(items, score_list, categories, strict=True):
            if item in taken:
                continue
            if category >= 0:
                count = per_category.get(category, 0)
                if count >= cap:
                    continue
                per_category[category] = count + 1
            taken.add(item)
            picks.append((item, score, source))
            if len(picks) >= n:
                return

    def add_catalog(self, n_items: int) -> None:
        """Last resort: any eligible item (index order), so that a list is never
        empty while eligible items exist."""
        if not self.full:
            self.add(self.eligibility.all_items(n_items), None, "catalog")

    def _boosted(self, ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        factors = np.fromiter((self.boost.get(i, 1.0) for i in ids.tolist()), np.float32, len(ids))
        if np.all(factors == 1.0):
            return ids, scores
        boosted = scores * factors
        order = np.argsort(-boosted, kind="stable")
        return ids[order], boosted[order]

    @property
    def primary_source(self) -> str:
        """The source of the first listed item that is not pinned (``none`` if empty)."""
        for _, _, source in self.picks:
            if source != "pinned":
                return source
        return self.picks[0][2] if self.picks else "none"


def session_ranking(
    similar_ids: np.ndarray, similar_scores: np.ndarray, seeds: list[int], decay: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Items similar to a session's seeds (newest first), scores summed with weights
    ``decay ** position``; the seeds themselves are left out.

    ``similar_ids`` / ``similar_scores`` hold one row per seed (-1 padded).
    """
    if not len(seeds):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    weights = decay ** np.arange(len(seeds), dtype=np.float32)
    valid = similar_ids >= 0
    ids = similar_ids[valid]
    scores = (similar_scores * weights[:, None])[valid]
    unique, inverse = np.unique(ids, return_inverse=True)
    totals = np.bincount(inverse, weights=scores, minlength=len(unique)).astype(np.float32)
    keep = ~np.isin(unique, np.asarray(seeds))
    unique, totals = unique[keep], totals[keep]
    order = np.argsort(-totals, kind="stable")
    return unique[order], totals[order]
