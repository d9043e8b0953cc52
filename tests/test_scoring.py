"""Batch scoring equals the models' own recommend / similar_items, block by block."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import create_model
from recsys.models.topn import top_n
from recsys.scoring import (
    ScoringStats,
    batch_recommend,
    batch_similar_items,
    fast_top_n,
    iter_recommend,
    iter_similar_items,
)

N_USERS, N_ITEMS = 61, 240
FULL_USER, EMPTY_USER = 3, 4

CONFIGS = {
    "als": ("als", {"factors": 8, "iterations": 3, "random_state": 1, "num_threads": 1}),
    "bpr": ("bpr", {"factors": 8, "iterations": 5, "random_state": 1, "num_threads": 1}),
    "ease": ("ease", {"lambda_": 5.0}),
    "itemknn": ("itemknn", {"K": 30, "num_threads": 1}),
    "popular": ("popular", {}),
    "buy-again": ("buy-again", {}),
    "lightfm": ("lightfm", {"no_components": 8, "epochs": 2, "random_state": 1}),
    "blend": (
        "blend",
        {
            "parts": {"als": 0.6, "popular": 0.4},
            "part_params": {"als": {"factors": 8, "iterations": 3, "num_threads": 1}},
        },
    ),
}


def random_user_items(seed: int = 0) -> sp.csr_matrix:
    """Random counts with skewed item popularity; one user has every item, one none."""
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.5, N_ITEMS) + 0.05
    chance = np.minimum(0.4, 0.06 * popularity / popularity.mean())
    dense = (rng.random((N_USERS, N_ITEMS)) < chance) * rng.integers(1, 4, (N_USERS, N_ITEMS))
    # Every item has a buyer of its own besides the full user: items bought by
    # that user alone would share their factors and tie by accident.
    dense[rng.integers(5, N_USERS, N_ITEMS), np.arange(N_ITEMS)] += 1
    dense[FULL_USER] = 1
    dense[EMPTY_USER] = 0
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    return random_user_items()


@pytest.fixture(scope="module")
def models(user_items):
    fitted = {
        key: create_model(name, **params).fit(user_items) for key, (name, params) in CONFIGS.items()
    }
    # Exact ties in a factor model: items 7 and 2 share item 5's factors.
    als = create_model("als", **CONFIGS["als"][1]).fit(user_items)
    als.item_factors_[[2, 7]] = als.item_factors_[5]
    fitted["als-ties"] = als
    return fitted


def assert_same(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])
    # Bit for bit, -0.0 and infinities included.
    np.testing.assert_array_equal(got[1].view(np.int32), expected[1].view(np.int32))


def assert_equivalent(got, expected, rtol=2e-6, atol=1e-7):
    """Same ranking up to float32 rounding: equal scores position by position, and
    ids that differ only where two scores are a near tie.

    Scores out of a matrix product are not compared bit for bit: BLAS may round
    the last bit differently for blocks of other heights (seen with OpenBLAS on
    AMD EPYC, not on Intel SkylakeX), and two items whose scores lie within
    that rounding may then swap places.
    """
    got_ids, got_scores = got
    ids, scores = expected
    np.testing.assert_allclose(got_scores, scores, rtol=rtol, atol=atol)
    assert np.array_equal(np.isneginf(got_scores), np.isneginf(scores)), "padding differs"
    tol = atol + rtol * np.abs(scores)
    for row, col in zip(*np.nonzero(got_ids != ids), strict=True):
        others = np.delete(scores[row], col)
        near = np.abs(others - scores[row, col]) <= tol[row, col]
        last = col == scores.shape[1] - 1  # a near tie with an item just below the list
        assert near.any() or last, f"row {row}: {got_ids[row]} != {ids[row]}"
        assert got_ids[row, col] not in np.delete(got_ids[row], col), "duplicate id"


def oracle_top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule spelt out: by score descending then column ascending; NaN and -inf are padding."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    ids = np.full((len(scores), n), -1, dtype=np.int32)
    best = np.full((len(scores), n), -np.inf, dtype=np.float32)
    for row, values in enumerate(scores):
        ranked = sorted(range(len(values)), key=lambda col: (-values[col], col))[:n]
        kept = [col for col in ranked if values[col] > -np.inf]
        ids[row, : len(kept)] = kept
        best[row, : len(kept)] = values[kept]
    return ids, best


# -- the selection -------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 10, 40, 400])
def test_fast_top_n_follows_the_rule_with_ties_nan_infinities_and_signed_zeros(n):
    rng = np.random.default_rng(n)
    scores = rng.integers(-3, 4, (9, 300)).astype(np.float32)  # many ties
    scores[scores == -3] = -np.inf
    scores[scores == 3] = np.inf
    scores[scores == 2] = np.nan
    scores[scores == 1] = -0.0
    scores[0] = -np.inf  # nothing eligible: all padding
    scores[1, ::7] = 0.5  # only a few eligible
    scores[1, scores[1] != 0.5] = -np.inf
    scores[2] = np.nan
    assert_same(fast_top_n(scores.copy(), n), oracle_top_n(scores, n))


@pytest.mark.parametrize("n", [1, 5, 20])
def test_fast_top_n_equals_top_n_on_finite_scores(n):
    rng = np.random.default_rng(n)
    scores = rng.standard_normal((50, 1000)).astype(np.float32)
    scores[10:20] = np.round(scores[10:20])  # heavy ties
    scores[20:30, :900] = -np.inf
    scores[30:40] = np.repeat(rng.standard_normal((1, 1000)).astype(np.float32), 10, axis=0)
    exclude = np.zeros(1000, dtype=bool)
    exclude[::3] = True
    per_row = sp.random(50, 1000, density=0.05, format="csr", random_state=n)
    expected = top_n(scores.copy(), n, exclude=exclude, exclude_per_row=per_row)
    assert_same(fast_top_n(scores.copy(), n, exclude=exclude, exclude_per_row=per_row), expected)


# -- batch_recommend -----------------------------------------------------------------------


@pytest.mark.parametrize("key", [*CONFIGS, "als-ties"])
@pytest.mark.parametrize("n", [5, 40])
def test_batch_recommend_equals_recommend_for_every_user(key, n, models, user_items):
    model = models[key]
    users = np.arange(N_USERS)
    expected = model.recommend(users, user_items, N=n)
    # 10 does not divide 61 users: the last block holds one user.
    assert_equivalent(batch_recommend(model, user_items, N=n, block_users=10, threads=2), expected)
    for user in (0, FULL_USER, EMPTY_USER, N_USERS - 1):
        single_ids, single_scores = model.recommend(user, user_items[user], N=n)
        np.testing.assert_array_equal(single_ids, expected[0][user])
        # One user goes through BLAS's matrix-vector product: the last bit may differ.
        np.testing.assert_allclose(single_scores, expected[1][user], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", ["als", "ease", "blend", "buy-again"])
def test_filters_and_a_subset_of_users(key, models, user_items):
    model = models[key]
    users = np.array([FULL_USER, 17, 2, 17, EMPTY_USER, 60])
    banned = np.arange(0, N_ITEMS, 4)
    for kwargs in (
        {"filter_items": banned},
        {"items": np.arange(50, 120)},
        {"filter_already_liked_items": False},
    ):
        expected = model.recommend(users, user_items[users], N=8, **kwargs)
        got = batch_recommend(model, user_items, users, N=8, block_users=4, threads=2, **kwargs)
        assert_equivalent(got, expected)
        if "filter_items" in kwargs:
            assert not np.isin(got[0], banned).any()
        if "items" in kwargs:
            assert np.all((got[0] == -1) | ((got[0] >= 50) & (got[0] < 120)))


def test_exclude_drops_a_given_matrix_instead_of_the_liked_rows(models, user_items):
    from recsys.candidates import recommend_excluding

    model = models["als"]
    rng = np.random.default_rng(7)
    bought = sp.csr_matrix((rng.random(user_items.shape) < 0.05).astype(np.float32))
    users = np.arange(user_items.shape[0])
    got = batch_recommend(
        model,
        user_items,
        users,
        N=10,
        filter_already_liked_items=False,
        exclude=bought,
        block_users=7,
        threads=2,
    )
    expected = recommend_excluding(model, users, user_items[users], bought[users], 10)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)
    for row, user in enumerate(users):
        assert not set(got[0][row]) & set(bought[user].indices)


def test_a_user_who_has_every_item_gets_only_padding(models, user_items):
    ids, scores = batch_recommend(models["als"], user_items, N=5, threads=1)
    assert np.all(ids[FULL_USER] == -1) and np.all(scores[FULL_USER] == -np.inf)
    assert np.all(ids[EMPTY_USER] >= 0)
    # Buy-again recommends what the user has, so the full user still gets a list.
    ids, _ = batch_recommend(models["buy-again"], user_items, N=5, threads=1)
    assert np.all(ids[FULL_USER] >= 0)


def test_ties_go_to_the_smaller_item_id(models, user_items):
    for key, n in (("als-ties", N_ITEMS), ("popular", 60)):
        ids, scores = batch_recommend(models[key], user_items, N=n, threads=2, block_users=7)
        same = (scores[:, 1:] == scores[:, :-1]) & (ids[:, 1:] >= 0)
        assert same.sum() > N_USERS, "expected ties"
        assert np.all(ids[:, 1:][same] > ids[:, :-1][same])
        assert np.all((scores[:, 1:] <= scores[:, :-1])[ids[:, 1:] >= 0])
    # Items 2, 5 and 7 share their factors: always listed together, in id order.
    ids, _ = batch_recommend(models["als-ties"], user_items, [0, 1, 2], N=N_ITEMS, threads=1)
    for row in ids:
        positions = [int(np.flatnonzero(row == item)[0]) for item in (2, 5, 7) if item in row]
        assert positions == list(range(positions[0], positions[0] + len(positions)))


def test_results_do_not_depend_on_threads_or_block_size(models, user_items):
    model = models["als"]
    reference = batch_recommend(model, user_items, N=20, threads=1, block_users=N_USERS)
    for threads, block in ((1, 1), (2, 2), (3, 7), (4, 16)):
        got = batch_recommend(model, user_items, N=20, threads=threads, block_users=block)
        assert_equivalent(got, reference)


def test_batches_are_the_all_at_once_rows_bit_for_bit(models, user_items):
    """Batches of whole blocks: the same blocks as all at once, so the same bits."""
    users = np.arange(N_USERS)[::-1].copy()
    blocks = []
    for key in ("als", "ease"):
        whole = batch_recommend(models[key], user_items, users, N=9, block_users=4, threads=2)
        blocks.clear()
        batches = list(
            iter_recommend(
                models[key],
                user_items,
                users,
                N=9,
                block_users=4,
                threads=2,
                batch_rows=10,  # rounded up to 3 blocks of 4 rows
                on_block=lambda: blocks.append(1),
            )
        )
        assert [len(rows) for rows, _, _ in batches] == [12] * 5 + [1]
        assert len(blocks) >= 16  # after every block (and while a slow one is scored)
        np.testing.assert_array_equal(np.concatenate([rows for rows, _, _ in batches]), users)
        got = tuple(np.concatenate([batch[i] for batch in batches]) for i in (1, 2))
        assert_same(got, whole)
    similar = list(iter_similar_items(models["als"], K=5, block_items=50, batch_rows=100))
    assert [rows[0] for rows, _, _ in similar] == [0, 100, 200]
    got = tuple(np.concatenate([batch[i] for batch in similar]) for i in (1, 2))
    assert_same(got, batch_similar_items(models["als"], K=5, block_items=50))


def test_a_caller_that_stops_early_stops_the_scoring(models, user_items):
    """Blocks of later batches are not scored once the caller closes the generator, and
    an error while scoring a later batch reaches the caller after the earlier ones."""
    model, scored = models["ease"], []
    score = model.score

    def counting(userids, liked):
        scored.append(len(userids))
        if userids.max() >= N_USERS - 2:
            raise RuntimeError("scoring failed")
        return score(userids, liked)

    model.score = counting
    try:
        batches = iter_recommend(model, user_items, N=3, block_users=2, threads=1, batch_rows=4)
        next(batches)
        batches.close()
        assert sum(scored) <= 8  # the first batch, and at most the next one
        seen = []
        with pytest.raises(RuntimeError, match="scoring failed"):
            for rows, _, _ in iter_recommend(model, user_items, N=3, block_users=2, batch_rows=4):
                seen.append(rows)
        assert len(np.concatenate(seen)) == 56  # up to the batch of users 56-59
    finally:
        del model.score


def test_users_and_items_added_after_fitting(models, user_items):
    extra = sp.csr_matrix(sp.vstack([user_items, random_user_items(seed=9)[:5]]))
    users = np.arange(N_USERS - 2, N_USERS + 5)  # known and unknown to the model
    wider = sp.csr_matrix(sp.hstack([extra, sp.csr_matrix(np.ones((extra.shape[0], 3)))]))
    for key in ("als", "bpr", "ease"):
        expected = models[key].recommend(users, extra[users], N=6)
        assert_equivalent(batch_recommend(models[key], extra, users, N=6, threads=2), expected)
        # Items added to the id map after fitting are unknown to the model: ignored.
        assert_equivalent(batch_recommend(models[key], wider, users, N=6, threads=2), expected)


def test_stats_record_the_phases(models, user_items, capsys):
    stats = ScoringStats()
    batch_recommend(
        models["als"], user_items, N=5, block_users=10, threads=2, stats=stats, progress=True
    )
    assert f"{N_USERS}/{N_USERS}" in capsys.readouterr().err
    assert (stats.rows, stats.n_items, stats.N, stats.blocks) == (N_USERS, N_ITEMS, 5, 7)
    assert stats.flops == 2.0 * N_USERS * N_ITEMS * models["als"].item_factors_.shape[1]
    assert stats.product_seconds > 0 and stats.selection_seconds > 0
    assert stats.product_gflops > 0 and stats.as_dict()["product_gflops"] > 0
    generic = ScoringStats()
    batch_recommend(models["ease"], user_items, N=5, stats=generic)
    assert generic.flops is None and generic.product_gflops is None


def test_bad_arguments_raise(models, user_items):
    model = models["als"]
    with pytest.raises(IndexError):
        batch_recommend(model, user_items, [0, N_USERS])
    with pytest.raises(ValueError):
        batch_recommend(model, user_items, N=-1)
    with pytest.raises(ValueError):
        batch_recommend(model, user_items, block_users=0)
    with pytest.raises(TypeError):
        batch_recommend(model, user_items, [0.5])
    with pytest.raises(IndexError):
        batch_similar_items(model, itemids=[N_ITEMS])


# -- batch_similar_items ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [*CONFIGS, "als-ties"])
def test_batch_similar_items_equals_similar_items(key, models):
    model = models[key]
    items = np.arange(N_ITEMS)
    expected = model.similar_items(items, N=12)
    got = batch_similar_items(model, K=12, block_items=9, threads=2)
    assert_equivalent(got, expected)
    assert not np.any(got[0] == items[:, None]), "an item is not similar to itself"
    subset = np.array([5, 0, 239, 5])
    banned = np.arange(1, N_ITEMS, 2)
    assert_equivalent(
        batch_similar_items(model, K=7, itemids=subset, filter_items=banned, threads=2),
        model.similar_items(subset, N=7, filter_items=banned),
    )


def test_no_users_and_no_items_asked(models, user_items):
    ids, scores = batch_recommend(models["als"], user_items, np.array([], dtype=np.int64), N=5)
    assert ids.shape == scores.shape == (0, 5)
    ids, scores = batch_similar_items(models["ease"], K=3, itemids=np.array([], dtype=np.int64))
    assert ids.shape == scores.shape == (0, 3)
