"""Business rules over ranked lists: eligibility, exclusions, no duplicates, diversity.

Pure numpy and Python (no Flask, no Redis): a ``ListBuilder`` takes ranked
sources in fallback order and keeps, in rank order, the items that are sold
and in stock in the visitor's market, in the requested category, not bought
or excluded, not already listed, and within the per-category limit, until
it holds ``n`` items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.snapshots.codec import half_floats, packed_views, unpack_lists


@dataclass
class Eligibility:
    """Which item indices may be shown at all.

    ``flags`` (one byte per item, non-zero: may be shown) is what the list
    builder reads; pass it when it is cached (per market and category), else
    it is made from the masks once per builder.
    """

    offered: np.ndarray | None = None  # bool per item (None: no market restriction)
    in_category: np.ndarray | None = None  # bool per item (None: any category)
    flags: bytes | None = None

    def lookup(self) -> bytes | None:
        """One byte per item, non-zero where it may be shown (None: every item may)."""
        if self.flags is None and (self.offered is not None or self.in_category is not None):
            self.flags = eligibility_flags(self.offered, self.in_category)
        return self.flags

    def all_items(self, n_items: int) -> np.ndarray:
        """Every eligible item index, ascending."""
        keep = np.ones(n_items, dtype=bool)
        if self.offered is not None:
            keep &= self.offered
        if self.in_category is not None:
            keep &= self.in_category
        return np.flatnonzero(keep)


def eligibility_flags(offered: np.ndarray | None, in_category: np.ndarray | None) -> bytes | None:
    """The masks combined as one byte per item (None when neither restricts)."""
    if offered is None and in_category is None:
        return None
    if offered is None:
        return np.asarray(in_category, dtype=bool).tobytes()
    keep = np.asarray(offered, dtype=bool)
    if in_category is not None:
        keep = keep & in_category
    return keep.tobytes()


#: One listed item: (item index, score or None, source). A plain tuple: lists are
#: built on every request and a named tuple costs several times more to make.
Pick = tuple[int, float | None, str]


class ListBuilder:
    """Fills a list of ``n`` items from ranked sources, applying every rule.

    Sources are walked in plain Python over lists (numpy arrays are turned
    into lists first): a request takes a few dozen candidates, and on a busy
    server each numpy call on such short arrays costs more than the loop.
    """

    __slots__ = (
        "n",
        "eligibility",
        "item_category",
        "max_per_category",
        "blocked",
        "boost",
        "picks",
        "_taken",
        "_per_category",
        "_flags",
    )

    def __init__(
        self,
        n: int,
        eligibility: Eligibility,
        item_category,
        max_per_category: int = 0,
        blocked: set[int] | None = None,
        boost: dict[int, float] | None = None,
    ) -> None:
        self.n = n
        self.eligibility = eligibility
        #: category index per item (-1: none), a list or an array
        self.item_category = item_category
        self.max_per_category = max_per_category  # 0: no limit
        self.blocked = blocked or set()  # bought, excluded
        self.boost = boost or {}
        self.picks: list[Pick] = []
        self._taken = set(self.blocked)  # blocked or already listed
        self._per_category: dict[int, int] = {}
        self._flags = eligibility.lookup()

    @property
    def full(self) -> bool:
        return len(self.picks) >= self.n

    def add(self, ids, scores, source: str) -> None:
        """Append eligible items of one ranked source (ids, scores or None; lists or
        arrays of valid item indices), in (boosted) rank order."""
        if self.n <= len(self.picks) or not len(ids):
            return
        if not isinstance(ids, list):
            ids = ids.tolist()
        if scores is not None and not isinstance(scores, list):
            scores = scores.tolist()
        if self.boost and scores is not None:
            ids, scores = self._boosted(ids, scores)
        self._walk(ids, scores, None, source)

    def add_packed(self, blob: bytes, source: str) -> None:
        """``add`` for a packed ranked list (``recsys.snapshots.codec``), decoding
        only the entries the rules get to (a list of 100 usually fills 10 places
        from its first few dozen)."""
        if self.n <= len(self.picks) or not blob:
            return
        views = None if self.boost else packed_views(blob)
        if views is None:  # a boost re-orders the whole list; big-endian machines
            self.add(*unpack_lists(blob), source)
            return
        self._walk(views[0], views[1], half_floats(), source)

    def _walk(self, ids, scores, decode, source: str) -> None:
        """Keep ``ids`` in order while the rules allow and there is room; a kept
        item's score is ``scores[position]`` (looked up in ``decode`` if given)."""
        picks = self.picks
        room = self.n - len(picks)
        flags, taken, cap = self._flags, self._taken, self.max_per_category
        append = picks.append
        if cap:
            per_category, categories = self._per_category, self.item_category
        for position, item in enumerate(ids):
            if item in taken or (flags is not None and not flags[item]):
                continue
            if cap:
                category = categories[item]
                if category >= 0:
                    count = per_category.get(category, 0)
                    if count >= cap:
                        continue
                    per_category[category] = count + 1
            taken.add(item)
            if scores is None:
                append((item, None, source))
            elif decode is None:
                append((item, scores[position], source))
            else:
                append((item, decode[scores[position]], source))
            room -= 1
            if not room:
                return

    def add_catalog(self, n_items: int) -> None:
        """Last resort: any eligible item (index order), so that a list is never
        empty while eligible items exist."""
        if not self.full:
            self.add(self.eligibility.all_items(n_items), None, "catalog")

    def _boosted(self, ids: list[int], scores: list[float]) -> tuple[list[int], list[float]]:
        get = self.boost.get
        factors = [get(i, 1.0) for i in ids]
        if all(f == 1.0 for f in factors):
            return ids, scores
        # a factor > 1 lifts whatever the score's sign (factor models score below zero)
        boosted = [s * f if s >= 0 else s / f for s, f in zip(scores, factors, strict=True)]
        order = sorted(range(len(ids)), key=boosted.__getitem__, reverse=True)  # stable
        return [ids[j] for j in order], [boosted[j] for j in order]

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
    ``decay ** position``; the seeds themselves are left out. Ties: lower index first.

    ``similar_ids`` / ``similar_scores`` hold one row per seed (-1 padded). Sums
    are taken in float64, row by row, then given as float32. One sort groups the
    ids (``np.unique`` and ``np.isin`` cost twice as much on lists this short).
    """
    if not len(seeds):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    weights = decay ** np.arange(len(seeds), dtype=np.float32)
    keep = similar_ids >= 0
    for seed in seeds:  # a handful: cheaper than np.isin
        keep &= similar_ids != seed
    ids = similar_ids[keep]
    if not len(ids):
        return ids.astype(np.int64), np.empty(0, dtype=np.float32)
    scores = (similar_scores * weights[:, None])[keep].astype(np.float64)
    by_id = ids.argsort(kind="stable")  # stable: each id's terms summed in row order
    ids, scores = ids[by_id], scores[by_id]
    first = np.empty(len(ids), dtype=bool)  # where each id's run starts
    first[0] = True
    np.not_equal(ids[1:], ids[:-1], out=first[1:])
    starts = first.nonzero()[0]
    unique = ids[starts]
    totals = np.add.reduceat(scores, starts).astype(np.float32)
    order = (-totals).argsort(kind="stable")
    return unique[order].astype(np.int64, copy=False), totals[order]
