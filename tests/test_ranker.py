"""The learned ranker on tiny purchase histories whose right order is known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import FitContext, create_model, load_model
from recsys.models.ranker import FEATURES, TreeEnsemble

DAY = 86_400.0
N_USERS, N_ITEMS = 30, 6
REGULAR, BINGE = 0, 1  # item 0: every 10 days from day 30; item 1: 12 times in days 0-11


def regular_vs_binge(days: int = 120) -> tuple[sp.csr_matrix, FitContext]:
    """Every user buys item 1 twelve times early on and never again, and item 0
    every 10 days from day 30 on; a third of the users also buy item 2 once.

    At the end item 1 still has more purchases (12) than item 0 (10), but only
    item 0 is bought again after each of the model's own cut-offs.
    """
    users, items, times = [], [], []
    for user in range(N_USERS):
        for day in range(12):
            users.append(user), items.append(BINGE), times.append(day * DAY + user)
        for day in range(30, days, 10):
            users.append(user), items.append(REGULAR), times.append(day * DAY + user)
        if user % 3 == 0:
            users.append(user), items.append(2), times.append(50 * DAY)
    users, items, times = np.array(users), np.array(items), np.array(times)
    matrix = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(N_USERS, N_ITEMS)
    )
    return matrix, FitContext(event_users=users, event_items=items, event_times=times)


SMALL = {"max_iter": 20, "learning_rate": 0.3, "n_neighbours": 3, "n_trending": 2}


@pytest.fixture(scope="module")
def shop():
    return regular_vs_binge()


@pytest.fixture(scope="module")
def ranker(shop):
    matrix, context = shop
    return create_model("ranker", **SMALL).fit(matrix, context=context)


def test_ranker_learns_that_regular_purchases_come_back(shop, ranker):
    matrix, context = shop
    assert ranker.trees_ is not None
    ids, _ = ranker.recommend(np.arange(N_USERS), matrix, N=2)
    assert (ids[:, 0] == REGULAR).all()
    # Counting purchases alone gets it wrong: the binge item has more.
    counts, _ = create_model("buy-again").fit(matrix).recommend(np.arange(N_USERS), matrix, N=1)
    assert (counts[:, 0] == BINGE).all()


def test_ranker_save_load_gives_identical_scores(shop, ranker, tmp_path):
    matrix, _ = shop
    path = tmp_path / "ranker.npz"
    ranker.save(path)
    loaded = load_model(path)
    users = np.arange(N_USERS)
    np.testing.assert_allclose(loaded.score(users, matrix), ranker.score(users, matrix))
    assert loaded.get_params() == ranker.get_params()


def test_non_candidates_rank_below_every_candidate(shop, ranker):
    matrix, _ = shop
    scores = ranker.score(np.arange(N_USERS), matrix)
    # Items 4 and 5 were never sold: never candidates, always last.
    assert (scores[:, 4:].max(axis=1) < scores[:, :2].min(axis=1)).all()


def test_a_user_unknown_at_fit_time_is_ranked_from_the_row(ranker):
    row = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0]], dtype=np.float32))
    ids, _ = ranker.recommend(N_USERS + 3, row, N=N_ITEMS)
    assert (ids >= 0).all() and len(set(ids.tolist())) == N_ITEMS
    assert ids[0] == REGULAR  # what every customer buys again, a candidate as trending
    assert list(ids).index(2) < list(ids).index(4)  # the user's own item beats unsold ones


def test_short_history_falls_back_to_purchase_days(shop):
    matrix, context = regular_vs_binge(days=25)  # shorter than one 30-day horizon
    model = create_model("ranker", **SMALL).fit(matrix, context=context)
    assert model.trees_ is None
    ids, _ = model.recommend(np.arange(N_USERS), matrix, N=1)
    assert (ids[:, 0] == BINGE).all()  # 12 purchase days against none or few


def test_only_purchase_events_count_when_types_are_given(shop):
    matrix, context = shop
    n = len(context.event_users)
    viewed = FitContext(
        event_users=np.r_[context.event_users, np.zeros(50, dtype=int)],
        event_items=np.r_[context.event_items, np.full(50, 3)],
        event_times=np.r_[context.event_times, np.full(50, 100 * DAY)],
        event_types=np.array(["purchase"] * n + ["view"] * 50, dtype=object),
    )
    model = create_model("ranker", **SMALL).fit(matrix, context=viewed)
    assert model.history_.pairs[0, 3] == 0  # views of item 3 are not purchases
    assert model.history_.pairs[0, REGULAR] == 1


def test_ranker_validates_its_input(shop):
    matrix, _ = shop
    with pytest.raises(ValueError, match="context events"):
        create_model("ranker").fit(matrix)
    with pytest.raises(ValueError, match="n_windows"):
        create_model("ranker", n_windows=0)
    with pytest.raises(ValueError, match="horizon_days"):
        create_model("ranker", horizon_days=0)


def test_a_catalog_beyond_max_items_is_refused_before_the_dense_ease_matrix(shop):
    matrix, context = shop
    with pytest.raises(ValueError, match=r"dense \d+\^2 matrix; raise max_items"):
        create_model("ranker", **SMALL, max_items=matrix.shape[1] - 1).fit(matrix, context=context)
    model = create_model("ranker", **SMALL, max_items=matrix.shape[1]).fit(matrix, context=context)
    assert model.history_.ease_weights.shape == (matrix.shape[1],) * 2


def test_copied_trees_match_scikit_learn_with_missing_values():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])) > 0
    model = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(x, y)
    trees = TreeEnsemble.from_sklearn(model)
    np.testing.assert_allclose(trees.decision_function(x), model.decision_function(x), atol=1e-9)


def test_features_are_named_once():
    assert len(set(FEATURES)) == len(FEATURES)


def test_a_users_scores_do_not_depend_on_the_users_scored_with_it():
    """Non-candidates sit below the user's own candidates, not below the block's:
    a blend (which rescales each row by its minimum) then ranks a customer the
    same whether scored alone, in an evaluation batch or in a publish block."""
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 12
    users, items, times = [], [], []
    for user in range(n_users):
        for _ in range(rng.integers(1, 30)):
            users.append(user)
            items.append(int(rng.integers(0, n_items if user % 2 else 4)))
            times.append(float(rng.uniform(0, 150)) * DAY)
    users, items, times = np.array(users), np.array(items), np.array(times)
    matrix = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    context = FitContext(event_users=users, event_items=items, event_times=times)
    ranker = create_model("ranker", **SMALL).fit(matrix, context=context)
    assert ranker.trees_ is not None
    everyone = np.arange(n_users)
    together = ranker.score(everyone, matrix)
    for user in everyone:
        alone = ranker.score(np.array([user]), matrix[[user]])
        np.testing.assert_array_equal(alone[0], together[user])
    blend = create_model(
        "blend", parts={"ranker": 0.9, "buy-again": 0.1}, part_params={"ranker": SMALL}
    ).fit(matrix, context=context)
    batch_ids, _ = blend.recommend(everyone, matrix, N=n_items)
    for user in everyone:
        ids, _ = blend.recommend(int(user), matrix[user], N=n_items)
        np.testing.assert_array_equal(ids, batch_ids[user])


def test_a_feature_without_any_value_in_the_fit_data_is_no_error():
    """No user buys an item on two days, so ``gap`` and ``due`` hold no value at all;
    scikit-learn's binning raised on such a column (``recsys run`` of a small shop)."""
    users, items, times = [], [], []
    for user in range(N_USERS):
        for k in range(5):  # one new item every 10 days, never one bought before
            users.append(user), items.append((user + k) % N_ITEMS), times.append(k * 10 * DAY)
    users, items, times = np.array(users), np.array(items), np.array(times)
    matrix = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(N_USERS, N_ITEMS)
    )
    context = FitContext(event_users=users, event_items=items, event_times=times)
    model = create_model("ranker", **SMALL).fit(matrix, context=context)
    ids, scores = model.recommend(np.arange(N_USERS), matrix, N=N_ITEMS)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    for user in range(N_USERS):
        assert sorted(ids[user]) == list(range(N_ITEMS))  # every item ranked once
