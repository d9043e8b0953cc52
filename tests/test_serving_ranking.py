"""The list builder's rules on a tiny catalogue whose right answers are known."""

from __future__ import annotations

import numpy as np

from serving.ranking import Eligibility, ListBuilder, eligibility_flags, session_ranking

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


def test_lists_and_arrays_give_the_same_list_and_cached_flags_decide():
    ids, scores = [5, 1, 0, 2, 7, 3], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    a, b = _builder(n=4, cap=1, blocked={1}), _builder(n=4, cap=1, blocked={1})
    a.add(ids, scores, "personalized")
    b.add(np.array(ids), np.array(scores, np.float32), "personalized")
    assert _ids(a) == _ids(b) == [0, 7]  # 5 not offered, 1 blocked, 2 and 3 over the cap
    flags = eligibility_flags(OFFERED, CATEGORY == 0)
    assert list(flags) == [1, 1, 1, 1, 0, 0, 0, 0]
    # the flags given win over the masks (the engine passes its cached table)
    c = ListBuilder(n=8, eligibility=Eligibility(OFFERED, None, flags), item_category=CATEGORY)
    c.add(list(range(8)), None, "popular")
    c.add_catalog(len(CATEGORY))
    assert _ids(c) == [0, 1, 2, 3] and not c.full
    assert eligibility_flags(None, None) is None


def test_boost_reorders_a_source_stably():
    b = ListBuilder(n=4, eligibility=Eligibility(), item_category=CATEGORY, boost={3: 3.0, 2: 0.5})
    b.add([0, 1, 2, 3], [0.9, 0.5, 0.5, 0.4], "personalized")
    # 3: 1.2 first; then 0 (0.9); 1 keeps its place before 2 (0.5 > 0.25)
    assert _ids(b) == [3, 0, 1, 2]
    assert [round(s, 6) for _, s, _ in b.picks] == [1.2, 0.9, 0.5, 0.25]


def test_boost_lifts_and_sinks_negative_scores_too():
    # factor models (ALS, BPR) and their similar lists score below zero as well
    b = ListBuilder(n=4, eligibility=Eligibility(), item_category=CATEGORY, boost={2: 10.0, 0: 0.1})
    b.add([0, 1, 2, 3], [-0.1, -0.2, -0.3, -0.4], "personalized")
    assert _ids(b) == [2, 1, 3, 0]  # 2: -0.03 first; 0 sunk to -1.0, last
    assert [round(s, 6) for _, s, _ in b.picks] == [-0.03, -0.2, -0.4, -1.0]


def test_query_parsing_equals_urllib():
    from urllib.parse import parse_qs

    from serving.params import parse_query

    rng = np.random.default_rng(0)
    alphabet = list("ab=&%+;2C3D1")
    cases = ["", "a", "a=&b", "&&a=1&", "x=a+b%2Bc", "=v", "a==b", "%zz=1", "caf%C3%A9=%E2%82%AC"]
    cases += ["".join(rng.choice(alphabet, rng.integers(0, 12))) for _ in range(3000)]
    for text in cases:
        assert parse_query(text) == parse_qs(text, keep_blank_values=True), text


def test_packed_lists_read_in_place_give_the_decoded_lists_answer():
    from recsys.snapshots.codec import pack, unpack_lists

    rng = np.random.default_rng(1)
    n_items = 400
    category = rng.integers(-1, 6, n_items)
    offered = rng.random(n_items) < 0.6
    for case in range(300):
        ids = rng.permutation(n_items)[: rng.integers(0, 150)]
        scores = rng.normal(0, 3, len(ids)).astype(np.float32)
        scores[:2] = [np.inf, -0.0][: len(scores[:2])]
        blob = pack(ids, np.sort(scores)[::-1])
        kwargs = dict(
            n=int(rng.integers(1, 40)),
            item_category=category,
            max_per_category=int(rng.integers(0, 4)),
            blocked={int(i) for i in rng.choice(n_items, 20)},
            boost={int(i): 2.0 for i in rng.choice(n_items, 3)} if case % 3 == 0 else None,
        )
        decoded = ListBuilder(eligibility=Eligibility(offered), **kwargs)
        decoded.add(*unpack_lists(blob), "personalized")
        in_place = ListBuilder(eligibility=Eligibility(offered), **kwargs)
        in_place.add_packed(blob, "personalized")
        assert in_place.picks == decoded.picks, case
        assert all(type(score) is float for _, score, _ in in_place.picks)


def test_half_float_table_equals_struct_decoding():
    import struct

    from recsys.snapshots.codec import half_floats

    table = half_floats()
    assert len(table) == 1 << 16
    decoded = struct.unpack("<65536e", np.arange(1 << 16, dtype="<u2").tobytes())
    same = [a == b or (a != a and b != b) for a, b in zip(table, decoded, strict=True)]
    assert all(same)
    assert table[0x3C00] == 1.0 and table[0xC000] == -2.0 and table[0x7C00] == float("inf")


def test_query_from_the_wsgi_environ_equals_the_request_parse():
    from urllib.parse import parse_qs

    from flask import Flask, request

    from serving.config import ServingConfig
    from serving.params import Query

    config = ServingConfig()
    for raw in ["user_id=u1&country=de&n=3", "category=Caf%C3%A9&x=a+b", "category=Café&n=2", ""]:
        # a WSGI server hands the raw query bytes over as a latin-1 str
        environ_text = raw.encode("utf-8").decode("latin-1")
        with Flask(__name__).test_request_context(environ_overrides={"QUERY_STRING": environ_text}):
            assert request.environ["QUERY_STRING"] == environ_text
            direct = Query.from_environ(request.environ, config).args
            # werkzeug's own reading of the raw query bytes
            text = request.query_string.decode("utf-8", "replace")
            assert direct == parse_qs(text, keep_blank_values=True)
    assert Query.from_environ({"QUERY_STRING": "category=Café".encode().decode("latin-1")}, config)
    assert (
        Query.from_environ(
            {"QUERY_STRING": "category=Café".encode().decode("latin-1")}, config
        ).category()
        == "Café"
    )


def _session_reference(ids, scores, seeds, decay=0.7):
    """The definition, written plainly: weighted sums per item, seeds out, best first."""
    totals: dict[int, float] = {}
    for row, seed_weight in enumerate(decay ** np.arange(len(seeds), dtype=np.float32)):
        for item, score in zip(
            ids[row].tolist(), (scores[row] * seed_weight).tolist(), strict=True
        ):
            if item >= 0 and item not in seeds:
                totals[item] = totals.get(item, 0.0) + score
    order = sorted(totals, key=lambda i: (-np.float32(totals[i]), i))
    return order, [np.float32(totals[i]) for i in order]


def test_session_ranking_sums_weighted_scores_leaves_seeds_out_and_breaks_ties_by_index():
    ids = np.array([[4, 2, 9, -1], [2, 4, 7, 1]])
    scores = np.array([[0.9, 0.5, 0.5, 0.0], [1.0, 0.2, 0.5, 0.3]], dtype=np.float32)
    got_ids, got_scores = session_ranking(ids, scores, [1, 3])
    # 2: 0.5 + 0.7 * 1.0 = 1.2; 4: 0.9 + 0.14 = 1.04; 9: 0.5; 7: 0.35; 1 is a seed
    assert got_ids.tolist() == [2, 4, 9, 7]
    assert np.allclose(got_scores, [1.2, 1.04, 0.5, 0.35])
    assert got_ids.dtype == np.int64 and got_scores.dtype == np.float32
    tie_ids, _ = session_ranking(np.array([[8, 3, 5]]), np.ones((1, 3), np.float32), [0])
    assert tie_ids.tolist() == [3, 5, 8]
    for empty in (
        session_ranking(ids, scores, []),
        session_ranking(np.array([[6, -1]]), np.ones((1, 2), np.float32), [6]),
    ):
        assert len(empty[0]) == 0 and len(empty[1]) == 0


def test_session_ranking_matches_its_definition_on_random_rows():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n_seeds, width = int(rng.integers(1, 6)), int(rng.integers(1, 30))
        ids = rng.integers(-1, 40, (n_seeds, width))
        scores = rng.choice(np.float32([0.25, 0.5, 0.75, 1.0]), (n_seeds, width))
        seeds = rng.choice(40, n_seeds, replace=False).tolist()
        got_ids, got_scores = session_ranking(ids, scores.astype(np.float32), seeds)
        want_ids, want_scores = _session_reference(ids, scores.astype(np.float32), seeds)
        assert got_ids.tolist() == want_ids
        assert got_scores.tolist() == want_scores
