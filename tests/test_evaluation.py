"""Offline evaluation: hand-computed metrics on toy cases, and the evaluate protocol."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation import (
    catalog_coverage,
    evaluate,
    hit_rate_at_k,
    hits_matrix,
    item_self_information,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from recsys.models import create_model

N_ITEMS = 8


def _rows(item_lists, n_items=N_ITEMS) -> sp.csr_matrix:
    """A users x items CSR with a 1 at every listed item of every row."""
    rows = np.repeat(np.arange(len(item_lists)), [len(items) for items in item_lists])
    cols = np.concatenate([np.asarray(items, dtype=np.int64) for items in item_lists])
    data = np.ones(len(cols), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(item_lists), n_items))


# user 0: 4 relevant items (more than k=3), hits at ranks 1, 3 and 4
# user 1: 1 relevant item (fewer than k), hit at rank 2, then padding
# user 2: no hit at all
RECOMMENDED = np.array(
    [
        [1, 0, 2, 5, 6],
        [3, 6, -1, -1, -1],
        [4, 5, 3, 2, 1],
    ]
)
RELEVANT = _rows([[1, 2, 3, 5], [6], [0, 7]])


def d(rank: int) -> float:
    """The DCG discount of a rank (1-based)."""
    return 1.0 / np.log2(rank + 1)


def test_every_metric_at_3_matches_hand_computation():
    expected = {
        precision_at_k: [2 / 3, 1 / 3, 0.0],
        recall_at_k: [2 / 4, 1 / 1, 0.0],
        ndcg_at_k: [(d(1) + d(3)) / (d(1) + d(2) + d(3)), d(2) / d(1), 0.0],
        map_at_k: [(1 / 1 + 2 / 3) / 3, (1 / 2) / 1, 0.0],
        hit_rate_at_k: [1.0, 1.0, 0.0],
        mrr_at_k: [1.0, 1 / 2, 0.0],
    }
    for metric, values in expected.items():
        got = metric(RECOMMENDED, RELEVANT, 3)
        np.testing.assert_allclose(got, values, err_msg=metric.__name__)


def test_cutoffs_1_and_5_share_one_lookup_and_count_padding_as_misses():
    m = ranking_metrics(RECOMMENDED, RELEVANT, ks=(5, 1))
    assert sorted(m) == sorted(
        f"{name}@{k}"
        for k in (1, 5)
        for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
    )
    np.testing.assert_allclose(m["precision@1"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(m["recall@1"], [1 / 4, 0.0, 0.0])
    np.testing.assert_allclose(m["ndcg@1"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(m["map@1"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(m["mrr@1"], [1.0, 0.0, 0.0])
    # user 1 has one hit among 2 real items and 3 paddings: precision 1/5
    np.testing.assert_allclose(m["precision@5"], [3 / 5, 1 / 5, 0.0])
    np.testing.assert_allclose(m["recall@5"], [3 / 4, 1.0, 0.0])
    ideal_0 = d(1) + d(2) + d(3) + d(4)  # min(5, 4 relevant) = 4 ideal hits
    np.testing.assert_allclose(m["ndcg@5"], [(d(1) + d(3) + d(4)) / ideal_0, d(2), 0.0])
    np.testing.assert_allclose(m["map@5"], [(1 + 2 / 3 + 3 / 4) / 4, 1 / 2, 0.0])
    np.testing.assert_allclose(m["hit_rate@5"], [1.0, 1.0, 0.0])


def test_cutoff_beyond_the_recommended_columns_counts_as_padding():
    m = ranking_metrics(RECOMMENDED[:, :2], RELEVANT, ks=(5,))
    np.testing.assert_allclose(m["precision@5"], [1 / 5, 1 / 5, 0.0])
    np.testing.assert_allclose(m["map@5"], [1 / 4, 1 / 2, 0.0])


def test_hits_ignore_padding_explicit_zeros_and_index_order():
    # row 0 stores item 3 with an explicit 0 (not relevant) and indices unsorted
    relevant = sp.csr_matrix(
        (np.array([1.0, 0.0, 1.0]), np.array([5, 3, 1]), np.array([0, 3, 3])), shape=(2, 6)
    )
    recommended = np.array([[3, 1, 5, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(
        hits_matrix(recommended, relevant), [[False, True, True, False], [False] * 4]
    )


def test_an_item_stored_twice_in_relevant_counts_as_one_relevant_item():
    # a non-canonical CSR: row 0 stores item 2 twice; its relevant items are 2 and 5
    relevant = sp.csr_matrix(
        (np.ones(3), np.array([2, 2, 5]), np.array([0, 3])), shape=(1, N_ITEMS)
    )
    m = ranking_metrics(np.array([[2, 5, 1]]), relevant, ks=(3,))
    for name in ("recall@3", "ndcg@3", "map@3", "hit_rate@3", "mrr@3"):
        assert m[name][0] == pytest.approx(1.0), name
    assert m["precision@3"][0] == pytest.approx(2 / 3)


def test_user_without_relevant_items_gets_nan_where_undefined():
    m = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix((1, 3)), ks=(2,))
    assert np.isnan(m["recall@2"][0]) and np.isnan(m["ndcg@2"][0]) and np.isnan(m["map@2"][0])
    assert m["precision@2"][0] == 0.0 and m["hit_rate@2"][0] == 0.0 and m["mrr@2"][0] == 0.0


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="repeats"):
        ranking_metrics(np.array([[1, 1, -1], [0, 2, 3], [0, 1, 2]]), RELEVANT)
    with pytest.raises(ValueError, match="rows"):
        ranking_metrics(RECOMMENDED[:2], RELEVANT)
    with pytest.raises(ValueError, match="n_items"):
        ranking_metrics(np.where(RECOMMENDED >= 0, RECOMMENDED + N_ITEMS, -1), RELEVANT)
    with pytest.raises(ValueError, match="integer"):
        ranking_metrics(RECOMMENDED.astype(float), RELEVANT)
    with pytest.raises(ValueError, match="positive"):
        ranking_metrics(RECOMMENDED, RELEVANT, ks=(0,))


def test_vectorised_metrics_agree_with_a_per_user_loop():
    rng = np.random.default_rng(7)
    n_users, n_items, width = 300, 40, 12
    relevant = sp.random(n_users, n_items, density=0.08, format="csr", random_state=rng)
    recommended = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :width]
    recommended[rng.random((n_users, width)) < 0.1] = -1  # scattered padding
    m = ranking_metrics(recommended, relevant, ks=(3, 10))
    for u in range(n_users):
        truth = set(relevant[u].indices)
        for k in (3, 10):
            got = {name.split("@")[0]: m[name][u] for name in m if name.endswith(f"@{k}")}
            hits = [int(i) in truth for i in recommended[u, :k]]
            if not truth:
                assert np.isnan(got["recall"])
                continue
            ideal = min(k, len(truth))
            precisions = [sum(hits[: r + 1]) / (r + 1) for r in range(k) if hits[r]]
            assert got["precision"] == pytest.approx(sum(hits) / k)
            assert got["recall"] == pytest.approx(sum(hits) / len(truth))
            dcg = sum(d(r + 1) for r in range(k) if hits[r])
            assert got["ndcg"] == pytest.approx(dcg / sum(d(r + 1) for r in range(ideal)))
            assert got["map"] == pytest.approx(sum(precisions) / ideal)
            assert got["mrr"] == pytest.approx(1 / (hits.index(True) + 1) if any(hits) else 0.0)


# ---- coverage and novelty ---------------------------------------------------
# train over 8 items: item 1 seen 8 times, item 0 4 times, item 2 twice,
# items 3 and 4 once, items 5-7 never; 16 interactions in all
TRAIN = _rows([[0, 1, 2], [0, 1, 2], [0, 1], [0, 1], [1, 3], [1, 4], [1], [1]])


def test_catalog_coverage_counts_distinct_items_in_the_top_k():
    assert catalog_coverage(RECOMMENDED, N_ITEMS, k=1) == 3 / 8  # {1, 3, 4}
    assert catalog_coverage(RECOMMENDED, N_ITEMS, k=3) == 7 / 8  # all but 7
    assert catalog_coverage(RECOMMENDED, N_ITEMS) == 7 / 8


def test_self_information_leaves_a_csc_train_matrix_alone():
    # item 0 stores user 1 with an explicit 0: one interaction of 2 counts
    train = sp.csc_matrix(
        (np.array([1.0, 0.0, 1.0]), np.array([0, 1, 0]), np.array([0, 2, 3])), shape=(2, 2)
    )
    indptr = train.indptr.copy()
    np.testing.assert_allclose(item_self_information(train), [1.0, 1.0])
    np.testing.assert_array_equal(train.indptr, indptr)
    assert train.nnz == 3


def test_novelty_is_mean_self_information_of_recommended_slots():
    weighted = TRAIN.copy()
    weighted.data[:] = 5.0  # weights do not matter, only interaction counts
    # -log2(share): item 1 8/16 -> 1, item 0 4/16 -> 2, item 2 2/16 -> 3,
    # items 3, 4 1/16 -> 4, never-seen items count as seen once -> 4
    np.testing.assert_allclose(item_self_information(weighted), [2, 1, 3, 4, 4, 4, 4, 4])
    assert novelty(RECOMMENDED, TRAIN, k=1) == pytest.approx((1 + 4 + 4) / 3)
    # top-3 slots: (1, 0, 2) (3, 6) (4, 5, 3) -- the padding of user 1 is skipped
    assert novelty(RECOMMENDED, TRAIN, k=3) == pytest.approx((1 + 2 + 3 + 4 + 4 + 4 + 4 + 4) / 8)


# ---- evaluate -----------------------------------------------------------------
class FixedScoreRecommender:
    """A real minimal recommender of our interface: ranks a fixed score matrix."""

    def __init__(self, scores: np.ndarray):
        self.scores = np.asarray(scores, dtype=np.float64)
        self.calls: list[np.ndarray] = []

    def recommend(
        self, userids, user_items, N=10, filter_already_liked_items=True, filter_items=None
    ):
        userids = np.asarray(userids)
        self.calls.append(userids.copy())
        if user_items.shape[0] != len(userids):
            raise ValueError("one row of user_items per user expected")
        scores = self.scores[userids].copy()
        if filter_already_liked_items:
            scores[user_items.nonzero()] = -np.inf
        if filter_items is not None:
            scores[:, filter_items] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :N]
        top = np.take_along_axis(scores, ids, axis=1)
        ids[np.isneginf(top)] = -1
        return ids, top


def _ranking(order: list[int]) -> np.ndarray:
    """Scores that rank the items in ``order``, best first."""
    scores = np.zeros(len(order))
    scores[order] = np.arange(len(order), 0, -1)
    return scores


SCORES = np.array(
    [
        _ranking([0, 1, 2, 3, 4, 5]),
        _ranking([5, 4, 3, 2, 1, 0]),
        _ranking([2, 3, 0, 1, 4, 5]),
        _ranking([0, 1, 2, 3, 4, 5]),
        _ranking([0, 1, 2, 3, 4, 5]),
    ]
)
EVAL_TRAIN = _rows([[0], [5, 4], [3], [1], [0, 1, 2, 3]], n_items=6)
EVAL_TEST = _rows([[1], [0], [2, 3], [], [4]], n_items=6)  # user 3 has no test item
COUNTRY = np.array(["DE", "DE", "FR", "FR", "FR"])


def _evaluate(exclude: bool, **kwargs):
    model = FixedScoreRecommender(SCORES)
    result = evaluate(
        model,
        EVAL_TRAIN,
        EVAL_TEST,
        k=1,
        ks=(5,),
        exclude_train_items=exclude,
        slices={"country": COUNTRY},
        batch_size=3,
        progress=False,
        **kwargs,
    )
    return model, result


def test_evaluate_scores_exactly_the_users_with_test_items_in_batches():
    model, result = _evaluate(exclude=True)
    assert result.per_user["user"].tolist() == [0, 1, 2, 4]
    assert [c.tolist() for c in model.calls] == [[0, 1, 2], [4]]
    assert result.ks == (1, 5) and result.k == 1
    assert result.n_users == 4


def test_evaluate_excludes_train_items_from_the_ranking():
    _, result = _evaluate(exclude=True)
    # rankings: u0 [1 2 3 4 5], u1 [3 2 1 0 -], u2 [2 0 1 4 5], u4 [4 5 - - -]
    table = result.per_user.set_index("user")
    assert table["hit_rate@1"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert table["mrr@5"].tolist() == [1.0, 1 / 4, 1.0, 1.0]
    assert table["recall@5"].tolist() == [1.0, 1.0, 1 / 2, 1.0]  # u2's test item 3 is in train
    assert table["precision@5"].tolist() == [1 / 5, 1 / 5, 1 / 5, 1 / 5]
    assert result.train_test_overlap == 1
    summary = result.summary()
    assert summary["mrr@5"] == pytest.approx((1 + 1 / 4 + 1 + 1) / 4)
    assert summary["coverage@1"] == pytest.approx(4 / 6)  # items 1, 3, 2, 4
    # train counts of items 1, 3, 2, 4: 2, 2, 1, 1 out of 9 interactions
    assert summary["novelty@1"] == pytest.approx(-(2 * np.log2(2 / 9) + 2 * np.log2(1 / 9)) / 4)
    assert summary["n_users"] == 4


def test_evaluate_keeps_train_items_when_asked():
    _, result = _evaluate(exclude=False)
    # rankings: u0 [0 1 2 3 4], u1 [5 4 3 2 1], u2 [2 3 0 1 4], u4 [0 1 2 3 4]
    table = result.per_user.set_index("user")
    assert table["mrr@5"].tolist() == [1 / 2, 0.0, 1.0, 1 / 5]
    assert table["recall@5"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert result.summary()["coverage@5"] == pytest.approx(6 / 6)


def test_evaluate_excludes_a_given_matrix_instead_of_the_train_rows():
    # exclude only what was "bought": u0 item 1, u1 nothing, u2 items 2 and 0, u4 item 0
    bought = _rows([[1], [], [2, 0], [], [0]], n_items=6)
    model = FixedScoreRecommender(SCORES)
    result = evaluate(
        model, EVAL_TRAIN, EVAL_TEST, k=1, ks=(5,), batch_size=3, progress=False, exclude=bought
    )
    # rankings: u0 [0 2 3 4 5], u1 [5 4 3 2 1], u2 [3 1 4 5 -], u4 [1 2 3 4 5]
    table = result.per_user.set_index("user")
    assert table["mrr@5"].tolist() == [0.0, 0.0, 1.0, 1 / 4]
    assert table["recall@5"].tolist() == [0.0, 0.0, 1 / 2, 1.0]
    assert table["precision@5"].tolist() == [0.0, 0.0, 1 / 5, 1 / 5]


def test_evaluate_excludes_train_items_for_a_model_that_keeps_them():
    """Buy again ignores filter_already_liked_items (by design); the protocol's
    exclusion of train items must still hold for it."""
    train = _rows([[0, 1], [2], [2, 3]], n_items=4)
    test = _rows([[2], [], []], n_items=4)
    model = create_model("buy-again").fit(train)
    assert model.recommends_already_liked
    result = evaluate(model, train, test, k=1, ks=(3,), exclude_train_items=True, progress=False)
    # user 0's own items 0 and 1 leave the ranking; item 2, bought by two others, leads
    table = result.per_user.set_index("user")
    assert table["hit_rate@1"].tolist() == [1.0]
    assert table["mrr@3"].tolist() == [1.0]
    assert table["precision@3"].tolist() == [1 / 3]  # items 2 and 3: one slot padded
    kept = evaluate(model, train, test, k=1, ks=(3,), exclude_train_items=False, progress=False)
    assert kept.per_user["mrr@3"].tolist() == [1 / 3]  # own items first, then item 2


def test_evaluate_on_a_given_user_list_skips_users_without_test_items():
    model, result = _evaluate(exclude=True, users=[4, 3, 0])
    assert result.per_user["user"].tolist() == [0, 4]
    assert [c.tolist() for c in model.calls] == [[0, 4]]


def test_summary_by_slice_and_metric_vs_k():
    _, result = _evaluate(exclude=True)
    by_country = result.by_slice("country")
    assert by_country.index.tolist() == ["DE", "FR"]
    assert by_country["users"].tolist() == [2, 2]  # DE: users 0, 1; FR: users 2, 4
    assert by_country["hit_rate@1"].tolist() == [0.5, 1.0]
    assert by_country["mrr@1"].tolist() == [0.5, 1.0]
    assert "ndcg@5" not in by_country.columns
    both = result.by_slice("country", ks=(1, 5))
    assert both.loc["DE", "mrr@5"] == pytest.approx((1 + 1 / 4) / 2)

    curve = result.metric_vs_k()
    assert curve.index.tolist() == [1, 5]
    summary = result.summary()
    for k in (1, 5):
        for metric in curve.columns:
            assert curve.loc[k, metric] == pytest.approx(summary[f"{metric}@{k}"])
    assert curve.loc[5, "recall"] >= curve.loc[1, "recall"]

    with pytest.raises(KeyError, match="country"):
        result.by_slice("activity")
    with pytest.raises(ValueError, match="not evaluated"):
        result.by_slice("country", ks=(20,))


def test_evaluate_refuses_mismatched_inputs():
    model = FixedScoreRecommender(SCORES)
    with pytest.raises(ValueError, match="same shape"):
        evaluate(model, EVAL_TRAIN, EVAL_TEST[:, :5], progress=False)
    with pytest.raises(ValueError, match="slice 'country'"):
        evaluate(model, EVAL_TRAIN, EVAL_TEST, slices={"country": COUNTRY[:3]}, progress=False)


# -- paired comparison ------------------------------------------------------------


def test_paired_bootstrap_separates_a_real_gain_from_noise():
    from recsys.evaluation.compare import paired_bootstrap

    rng = np.random.default_rng(3)
    base = rng.random(500)
    better = paired_bootstrap(base + 0.05 + rng.normal(0, 0.05, 500), base)
    assert better.n_users == 500
    assert 0.04 < better.mean < 0.06 and better.low > 0 and better.significant
    assert better.low < better.mean < better.high
    noise = paired_bootstrap(base + rng.normal(0, 0.05, 500), base)
    assert noise.low < 0 < noise.high and not noise.significant
    # same seed, same interval; the difference is taken as a - b
    assert paired_bootstrap(base + 0.1, base, seed=1) == paired_bootstrap(base + 0.1, base, seed=1)
    assert paired_bootstrap(base, base + 0.1).high < 0
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(base, base[:-1])


def test_paired_metric_aligns_users_and_refuses_other_splits():
    import pandas as pd

    from recsys.evaluation.compare import paired_metric

    a = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "ndcg@10": [1.0, 0.5, 0.0]})
    b = pd.DataFrame({"user_id": ["u3", "u1", "u2"], "ndcg@10": [0.2, 0.4, 0.6]})
    left, right = paired_metric(a, b)
    np.testing.assert_allclose(left, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(right, [0.4, 0.6, 0.2])
    with pytest.raises(ValueError, match="one table only"):
        paired_metric(a, b.assign(user_id=["u3", "u1", "u9"]))
    with pytest.raises(KeyError):
        paired_metric(a, b, metric="recall@10")
