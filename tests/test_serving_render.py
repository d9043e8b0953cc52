"""JSON rendering of list answers: the cached encodings equal plain json.dumps."""

from __future__ import annotations

import json

from serving.render import ListAnswer


def _plain(items: list[str], meta: dict) -> str:
    body = {"items": [json.loads(i) for i in items], **meta}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def test_answer_meta_is_encoded_like_json_dumps_and_never_mixed_up():
    items = ['{"item_id":"a","score":0.5}']
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
