"""The list builder's rules on a tiny catalogue whose right answers are known."""

from __future__ import annotations

import numpy as np

from serving.ranking import Eligibility, ListBuilder

# items 0..7; categories: 0,0,0,0 | 1,1 | -1 (none) | 1
CATEGORY = np.array([0, 0, 0, 0, 1, 1, -1, 1])
OFFERED = np.array([True, True, True, True, True, False, True, True])


def _builder(n=5, cap=0, blocked=(), in_category=None) -> ListBuilder:
    return ListBuilder(
        n=n,
        eligibility=Eligibility(OFFERED, in_category),
        item_category=CATEGORY,
        max_per_category=cap,
        blocked=set(blocked),
    )


def _ids(builder: ListBuilder) -> list[int]:
    return [item for item, _, _ in builder.picks]


def test_rank_order_eligibility_blocked_and_no_duplicates():
    b = _builder(n=4, blocked={1})
    b.add(np.array([5, 1, 0, 2]), np.array([0.9, 0.8, 0.7, 0.6], np.float32), "personalized")
    b.add(np.array([0, 3, 2, 7]), None, "popular")
    # 5 is not offered, 1 is blocked; 0 and 2 are not listed twice
    assert _ids(b) == [0, 2, 3, 7]
    assert [s for _, _, s in b.picks] == ["personalized"] * 2 + ["popular"] * 2
    assert b.picks[0][1] == np.float32(0.7) and b.picks[2][1] is None
    assert b.full and b.primary_source == "personalized"


def test_diversity_cap_counts_across_sources_and_spares_uncategorised():
    b = _builder(n=6, cap=2)
    b.add(np.array([0, 1, 2, 6]), None, "personalized")
    b.add(np.array([3, 4, 7, 6, 0]), None, "popular")
    # category 0 stops at two (0, 1), 2 and 3 are skipped; 6 has no category
    assert _ids(b) == [0, 1, 6, 4, 7]
    assert not b.full
    b.add_catalog(len(CATEGORY))  # every eligible item left still respects the cap
    assert _ids(b) == [0, 1, 6, 4, 7]


def test_category_mask_and_catalog_fallback():
    in_category = CATEGORY == 1
    b = _builder(n=3, in_category=in_category)
    b.add(np.array([0, 4]), None, "personalized")
    b.add_catalog(len(CATEGORY))
    assert _ids(b) == [4, 7]  # 5 is in the category but not offered
    assert b.primary_source == "personalized"


def test_no_restriction_means_every_item():
    b = ListBuilder(n=3, eligibility=Eligibility(), item_category=CATEGORY)
    b.add(np.array([5, 5, 6]), None, "pinned")
    b.add_catalog(len(CATEGORY))
    assert _ids(b) == [5, 6, 0]
    assert b.primary_source == "catalog"
