"""JSON rendering of list answers: the cached encodings equal plain json.dumps."""

from __future__ import annotations

import json

from serving.render import ListAnswer


def _plain(items: str, meta: dict) -> str:
    body = {"items": json.loads(f"[{items}]"), **meta}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def test_answer_meta_is_encoded_like_json_dumps_and_never_mixed_up():
    items = '{"item_id":"a","score":0.5}'
    metas = [
        {"source": "personalized", "version": "v1", "degraded": False, "country": "DE"},
        {"source": "personalized", "version": "v1", "degraded": True, "country": "DE"},
        {"source": "popular", "version": "v1", "degraded": False, "country": None},
        {"flag": True},
        {"flag": 1},  # equal to True as a dict key, not as JSON
        {"flag": 1.0},
        {"flag": "true"},
        {"land": "Österreich"},
        {"tags": ["a", "b"]},  # unhashable: encoded every time
    ]
    for _ in range(2):  # the second pass reads the cache
        for meta in metas:
            text = ListAnswer(items, dict(meta)).to_json()
            assert text == _plain(items, meta)
            assert json.loads(text) == {"items": [{"item_id": "a", "score": 0.5}], **meta}


def test_fragments_encode_the_picks_as_json_objects_in_order():
    import numpy as np

    from serving.render import Fragments
    from serving.snapshot import Market

    fragments = Fragments(
        item_ids=np.array(["A-1", 'B"2', "Ü3"], dtype=object),
        categories=["Home", "Home > Kitchen"],
        item_category=np.array([1, -1, 0]),
        max_cached=2,  # the third item is encoded per request
    )
    market = Market(
        "DE", "EUR", np.array([True, True, True]), np.array([9.99, np.nan, 120.0], np.float32)
    )
    picks = [(2, 0.75, "personalized"), (0, None, "pinned"), (1, 1e-7, "popular")]
    expected = [
        {"item_id": "Ü3", "score": 0.75, "price": 120.0, "currency": "EUR",
         "category": "Home", "source": "personalized"},
        {"item_id": "A-1", "score": None, "price": 9.99, "currency": "EUR",
         "category": "Home > Kitchen", "source": "pinned"},
        {"item_id": 'B"2', "score": 0.0, "price": None, "currency": None,
         "category": None, "source": "popular"},
    ]  # fmt: skip
    for _ in range(2):  # the second pass reads the cached fragments
        assert json.loads("[" + fragments.encode(picks, market) + "]") == expected
    assert fragments.encode([], market) == ""
    no_market = json.loads("[" + fragments.encode(picks[:1], None) + "]")
    assert no_market == [{**expected[0], "price": None, "currency": None}]
