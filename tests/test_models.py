"""Models on tiny data with known answers: a checkerboard of two taste groups."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from taste_groups import GROUP, N_ITEMS, N_USERS, checkerboard

from recsys.models import MODELS, FitContext, NotFittedError, Recommender, create_model, load_model
from recsys.models.blend import minmax_rows
from recsys.models.topn import ranking_keys, top_n


def group_of(ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids) // GROUP


def checkerboard_context(n_items: int = N_ITEMS) -> FitContext:
    """Group A users live in DE, group B in FR; items carry their group as category."""
    in_a = np.arange(N_USERS) < N_USERS // 2
    user_features = sp.csr_matrix(np.column_stack([in_a, ~in_a]).astype(np.float32))
    item_group = np.minimum(np.arange(n_items) // GROUP, 1)
    item_features = sp.csr_matrix(np.eye(2, dtype=np.float32)[item_group])
    return FitContext(
        user_features=user_features,
        user_feature_names=["country=DE", "country=FR"],
        item_features=item_features,
        item_feature_names=["category=a", "category=b"],
        user_country=np.where(in_a, "DE", "FR"),
    )


# Collaborative models, parametrised for stable answers on the checkerboard.
CF_CONFIGS = {
    "itemknn-cosine": ("itemknn", {"similarity": "cosine", "K": 20, "num_threads": 1}),
    "itemknn-bm25": ("itemknn", {"similarity": "bm25", "K": 20, "num_threads": 1}),
    "itemknn-tfidf": ("itemknn", {"similarity": "tfidf", "K": 20, "num_threads": 1}),
    "als": (
        "als",
        {
            "factors": 4,
            "regularization": 1.0,
            "iterations": 20,
            "random_state": 7,
            "num_threads": 1,
        },
    ),
    "bpr": (
        "bpr",
        {
            "factors": 8,
            "learning_rate": 0.05,
            "iterations": 200,
            "random_state": 7,
            "num_threads": 1,
        },
    ),
    "lightfm": (
        "lightfm",
        {"no_components": 8, "epochs": 50, "loss": "warp", "random_state": 7, "num_threads": 1},
    ),
    "ease": ("ease", {"lambda_": 10.0}),
    "blend": (
        "blend",
        {
            "parts": {"als": 0.5, "itemknn": 0.5},
            "part_params": {
                "als": {"factors": 4, "regularization": 1.0, "random_state": 7, "num_threads": 1},
                "itemknn": {"K": 20, "num_threads": 1},
            },
        },
    ),
}
OTHER_CONFIGS = {
    "popular": ("popular", {}),
    "popular-country": ("popular", {"by": "country", "country_prior": 2.0}),
    "buy-again": ("buy-again", {}),
}
ALL_CONFIGS = {**CF_CONFIGS, **OTHER_CONFIGS}


@pytest.fixture(scope="module")
def board():
    return checkerboard()


@pytest.fixture(scope="module")
def fitted(board):
    """Every configuration fitted once on the checkerboard."""
    matrix, _ = board
    context = checkerboard_context()
    return {
        key: create_model(name, **params).fit(matrix, context=context)
        for key, (name, params) in ALL_CONFIGS.items()
    }


def test_registry_holds_every_model():
    expected = {
        "popular",
        "buy-again",
        "itemknn",
        "als",
        "bpr",
        "lightfm",
        "ease",
        "gfcf",
        "blend",
        "ranker",
    }
    assert set(MODELS) == expected
    for name, cls in MODELS.items():
        assert cls.name == name
        assert issubclass(cls, Recommender)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("nope")


@pytest.mark.parametrize("key", sorted(CF_CONFIGS))
def test_top_recommendation_is_the_missing_item_of_the_own_group(key, board, fitted):
    matrix, missing = board
    ids, scores = fitted[key].recommend(np.arange(N_USERS), matrix, N=3)
    assert ids.shape == scores.shape == (N_USERS, 3)
    np.testing.assert_array_equal(ids[:, 0], missing)
    assert np.all(np.diff(scores, axis=1) <= 0), "scores must come best first"


@pytest.mark.parametrize("key", sorted(CF_CONFIGS))
def test_similar_items_stay_in_their_group(key, fitted):
    ids, scores = fitted[key].similar_items(np.arange(N_ITEMS), N=3)
    assert ids.shape == (N_ITEMS, 3)
    np.testing.assert_array_equal(group_of(ids), group_of(np.arange(N_ITEMS))[:, None].repeat(3, 1))
    assert not np.any(ids == np.arange(N_ITEMS)[:, None]), "an item is not similar to itself"
    single_ids, single_scores = fitted[key].similar_items(3, N=3)
    np.testing.assert_array_equal(single_ids, ids[3])
    np.testing.assert_allclose(single_scores, scores[3], rtol=1e-6)


@pytest.mark.parametrize("key", sorted(ALL_CONFIGS))
def test_save_load_gives_identical_recommendations(key, board, fitted, tmp_path):
    matrix, _ = board
    model = fitted[key]
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    users = np.arange(N_USERS)
    for filter_liked in (True, False):
        before = model.recommend(users, matrix, N=6, filter_already_liked_items=filter_liked)
        after = loaded.recommend(users, matrix, N=6, filter_already_liked_items=filter_liked)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_allclose(after[1], before[1], rtol=1e-6)
    # The class method of the concrete class loads it too.
    assert type(type(model).load(path)) is type(model)


def test_load_refuses_a_file_of_another_model(fitted, tmp_path):
    path = tmp_path / "ease.npz"
    fitted["ease"].save(path)
    with pytest.raises(TypeError):
        MODELS["als"].load(path)


@pytest.mark.parametrize("key", sorted(ALL_CONFIGS))
def test_get_params_round_trips_into_the_constructor(key, board, fitted):
    matrix, _ = board
    model = fitted[key]
    params = model.get_params()
    name, given = ALL_CONFIGS[key]
    for param, value in given.items():
        assert params[param] == value
    twin = create_model(name, **params)
    assert twin.get_params() == params
    twin.fit(matrix, context=checkerboard_context())
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(
        twin.recommend(users, matrix, N=4)[0], model.recommend(users, matrix, N=4)[0]
    )


@pytest.mark.parametrize("key", sorted(CF_CONFIGS))
def test_filters(key, board, fitted):
    matrix, missing = board
    model = fitted[key]
    users = np.arange(N_USERS)
    ids, _ = model.recommend(users, matrix, N=N_ITEMS)
    for user in users:
        assert not set(ids[user]) & set(matrix[user].indices), "liked items are filtered"
    # Without the filter the user's own items (which the model fits) come back.
    ids, _ = model.recommend(users, matrix, N=5, filter_already_liked_items=False)
    assert all(set(matrix[user].indices) & set(ids[user]) for user in users)
    # filter_items removes the missing items of group A: group A's best is then group B.
    banned = np.arange(GROUP)
    ids, _ = model.recommend(users, matrix, N=3, filter_items=banned)
    assert not np.isin(ids, banned).any()
    np.testing.assert_array_equal(ids[N_USERS // 2 :, 0], missing[N_USERS // 2 :])
    # items restricts the ranking to a candidate set.
    candidates = np.array([0, 5, 6])
    ids, _ = model.recommend(users, matrix, N=3, items=candidates)
    assert np.isin(ids[ids >= 0], candidates).all()
    assert ids[0, 0] == 0 and ids[15, 0] == 5


@pytest.mark.parametrize("key", sorted(ALL_CONFIGS))
def test_batch_and_single_user_calls_agree(key, board, fitted):
    matrix, _ = board
    model = fitted[key]
    users = np.array([3, 0, 17, 11])
    batch_ids, batch_scores = model.recommend(users, matrix[users], N=5)
    for row, user in enumerate(users):
        ids, scores = model.recommend(int(user), matrix[user], N=5)
        assert ids.shape == (5,)
        np.testing.assert_array_equal(ids, batch_ids[row])
        np.testing.assert_allclose(scores, batch_scores[row], rtol=1e-5, atol=1e-6)
        ids_np, _ = model.recommend(np.int64(user), matrix[user], N=5)
        np.testing.assert_array_equal(ids_np, ids)


def test_rows_are_padded_when_fewer_items_are_eligible(board, fitted):
    matrix, missing = board
    ids, scores = fitted["ease"].recommend(np.arange(N_USERS), matrix, N=12)
    assert ids.shape == (N_USERS, 12)
    # 10 items minus 4 liked: 6 eligible, 6 padded.
    assert np.all(ids[:, 6:] == -1) and np.all(scores[:, 6:] == -np.inf)
    assert np.all(ids[:, :6] >= 0) and np.all(np.isfinite(scores[:, :6]))
    ids, scores = fitted["ease"].recommend(0, matrix[0], N=3, items=[missing[0], 1])
    assert ids.tolist() == [missing[0], -1, -1]  # item 1 is liked by user 0


def test_top_n_breaks_ties_by_smaller_id():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    ids, best = top_n(scores.copy(), 2)
    assert ids.tolist() == [[1, 2], [0, 1]]
    np.testing.assert_array_equal(best, [[2.0, 2.0], [0.0, 0.0]])


def test_recommend_validates_its_input(board, fitted):
    matrix, _ = board
    with pytest.raises(ValueError, match="rows"):
        fitted["als"].recommend(np.arange(3), matrix, N=2)
    with pytest.raises(TypeError):
        fitted["als"].recommend(0, matrix[0].toarray(), N=2)
    with pytest.raises(IndexError):
        fitted["als"].similar_items(N_ITEMS)
    with pytest.raises(NotFittedError):
        create_model("ease").recommend(0, matrix[0])
    with pytest.raises(ValueError):
        create_model("itemknn", similarity="jaccard")


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])  # 1e39: infinite as float32
@pytest.mark.parametrize("key", sorted(ALL_CONFIGS))
def test_non_finite_interactions_are_refused_by_fit_and_recommend(key, bad, board, fitted):
    matrix, _ = board
    broken = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    broken.data[3] = bad
    name, params = ALL_CONFIGS[key]
    with pytest.raises(ValueError, match="NaN or infinite"):
        create_model(name, **params).fit(broken, context=checkerboard_context())
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted[key].recommend(np.arange(N_USERS), broken, N=3)


@pytest.mark.parametrize("key", ["als", "itemknn-cosine", "ease", "lightfm", "bpr"])
def test_a_user_unknown_at_fit_time_gets_a_full_list(key, fitted):
    row = sp.csr_matrix(([1.0] * 4, ([0] * 4, [5, 6, 8, 9])), shape=(1, N_ITEMS))
    ids, scores = fitted[key].recommend(N_USERS + 3, row, N=6)
    assert np.all(ids >= 0) and not np.isin(ids, [5, 6, 8, 9]).any()
    if key in ("als", "itemknn-cosine", "ease"):  # these fold the user in from the row
        assert ids[0] == 7


def test_items_added_after_fit_are_ignored(board, fitted):
    matrix, missing = board
    wider = sp.hstack([matrix, sp.csr_matrix((N_USERS, 2))], format="csr")
    wider = sp.csr_matrix(wider.toarray() + np.eye(N_USERS, N_ITEMS + 2, N_ITEMS + 1))
    ids, _ = fitted["ease"].recommend(np.arange(N_USERS), wider, N=1)
    np.testing.assert_array_equal(ids[:, 0], missing)


# -- popular ------------------------------------------------------------------


def test_popular_counts_users_per_item():
    # Item 0: 3 users, item 1: 2 users (one with weight 5), item 2: 1 user, item 3: none.
    matrix = sp.csr_matrix(
        np.array([[1, 5, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32)
    )
    model = create_model("popular").fit(matrix)
    np.testing.assert_array_equal(model.score(np.array([0]), matrix[[0]])[0], [3, 2, 1, 0])
    ids, scores = model.recommend(3, matrix[3], N=4)
    assert ids.tolist() == [0, 1, 2, 3]
    ids, _ = model.recommend(2, matrix[2], N=4)
    assert ids.tolist() == [1, 3, -1, -1]
    assert model.similar_items(0, N=2)[0].tolist() == [1, 2]
    by_weight = create_model("popular", count="weight").fit(matrix)
    assert by_weight.recommend(3, matrix[3], N=4)[0].tolist() == [1, 0, 2, 3]


def _market_data():
    # DE users 0-1 took item 0; FR users 2-4 took item 1; user 5 (no country) took item 1.
    matrix = sp.csr_matrix(
        (np.ones(6, dtype=np.float32), ([0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 1, 1])), shape=(6, 3)
    )
    countries = np.array(["DE", "DE", "FR", "FR", "FR", None], dtype=object)
    return matrix, FitContext(user_country=countries)


def test_popular_by_country_ranks_each_market_by_its_own_counts():
    matrix, context = _market_data()
    model = create_model("popular", by="country", country_prior=1.0).fit(matrix, context=context)
    users = np.arange(6)
    ids, _ = model.recommend(users, matrix, N=3, filter_already_liked_items=False)
    assert ids[:, 0].tolist() == [0, 0, 1, 1, 1, 1]  # DE: item 0, FR and unknown: item 1
    # A user unknown to the model falls back to global popularity.
    ids, _ = model.recommend(10, sp.csr_matrix((1, 3)), N=3)
    assert ids.tolist() == [1, 0, 2]
    by_market = model.country_scores(["DE", "FR", "XX"])
    assert by_market.shape == (3, 3)
    assert np.argmax(by_market[0]) == 0 and np.argmax(by_market[1]) == 1
    np.testing.assert_allclose(by_market[2], [2 / 6, 4 / 6, 0], rtol=1e-6)


def test_popular_by_country_falls_back_to_global_for_a_strong_prior():
    matrix, context = _market_data()
    model = create_model("popular", by="country", country_prior=1e6).fit(matrix, context=context)
    ids, _ = model.recommend(0, matrix[0], N=2, filter_already_liked_items=False)
    assert ids.tolist() == [1, 0]
    with pytest.raises(ValueError, match="user_country"):
        create_model("popular", by="country").fit(matrix)


def test_trending_decays_old_interactions():
    # Item 0 was taken by 3 users 100 days ago, item 1 by one user today.
    matrix = sp.csr_matrix(
        (np.ones(4, dtype=np.float32), ([0, 1, 2, 3], [0, 0, 0, 1])), shape=(4, 2)
    )
    today = np.datetime64("2024-06-01T12:00:00")
    times = np.array([today - np.timedelta64(100, "D")] * 3 + [today])
    context = FitContext(
        event_users=np.arange(4), event_items=np.array([0, 0, 0, 1]), event_times=times
    )
    no_user = sp.csr_matrix((1, 2))
    plain = create_model("popular").fit(matrix, context=context)
    assert plain.recommend(9, no_user, N=2)[0].tolist() == [0, 1]
    trending = create_model("popular", half_life_days=10).fit(matrix, context=context)
    ids, scores = trending.recommend(9, no_user, N=2)
    assert ids.tolist() == [1, 0]
    np.testing.assert_allclose(scores, [1.0, 3 * 0.5**10], rtol=1e-5)
    # Unix seconds and an explicit reference time give the same weights.
    seconds = times.astype("datetime64[s]").astype(np.int64)
    context_s = FitContext(
        event_users=np.arange(4),
        event_items=np.array([0, 0, 0, 1]),
        event_times=seconds,
        reference_time=int(seconds[-1]) + 10 * 86_400,
    )
    later = create_model("popular", half_life_days=10).fit(matrix, context=context_s)
    np.testing.assert_allclose(later.recommend(9, no_user, N=2)[1], [0.5, 1.5 * 0.5**10], rtol=1e-5)
    with pytest.raises(ValueError, match="events"):
        create_model("popular", half_life_days=10).fit(matrix)


# -- buy again --------------------------------------------------------------------


def test_trending_leaves_refunds_out():
    # Item 0: two purchases. Item 1: one purchase, returned twice. All today.
    matrix = sp.csr_matrix(np.array([[1, 1], [1, 0]], dtype=np.float32))
    today = np.datetime64("2024-06-01T12:00:00")
    context = FitContext(
        event_users=np.array([0, 1, 0, 0, 0]),
        event_items=np.array([0, 0, 1, 1, 1]),
        event_times=np.array([today] * 5),
        event_types=np.array(["purchase", "purchase", "purchase", "refund", "refund"]),
    )
    trending = create_model("popular", half_life_days=10).fit(matrix, context=context)
    ids, scores = trending.recommend(9, sp.csr_matrix((1, 2)), N=2)
    assert ids.tolist() == [0, 1]
    np.testing.assert_allclose(scores, [2.0, 1.0], rtol=1e-6)


def test_buy_again_ranks_own_items_first_then_popular_ones():
    # User 0 bought item 2 three times and item 1 once; item 3 is the most popular.
    matrix = sp.csr_matrix(
        np.array(
            [[0, 1, 3, 0, 0], [0, 0, 0, 1, 1], [1, 0, 0, 1, 0], [0, 0, 0, 1, 0]], dtype=np.float32
        )
    )
    model = create_model("buy-again").fit(matrix)
    ids, scores = model.recommend(0, matrix[0], N=5, filter_already_liked_items=True)
    assert ids.tolist() == [2, 1, 3, 0, 4]
    assert scores[1] > 1.0 > 0.5 >= scores[2] > scores[3]
    quiet = create_model("buy-again", popularity_backfill=False).fit(matrix)
    assert quiet.recommend(0, matrix[0], N=3)[1][2] == 0.0


def test_buy_again_recency_beats_frequency_with_a_short_half_life():
    matrix = sp.csr_matrix(np.array([[0, 1, 3], [1, 0, 0]], dtype=np.float32))
    day = 86_400
    context = FitContext(
        event_users=np.array([0, 0, 0, 0, 1]),
        event_items=np.array([2, 2, 2, 1, 0]),
        event_times=np.array([0, 0, 0, 199 * day, 200 * day]),
    )
    assert create_model("buy-again").fit(matrix).recommend(0, matrix[0], N=1)[0][0] == 2
    decayed = create_model("buy-again", half_life_days=30).fit(matrix, context=context)
    assert decayed.recommend(0, matrix[0], N=3)[0].tolist() == [1, 2, 0]
    slow = create_model("buy-again", half_life_days=10_000).fit(matrix, context=context)
    assert slow.recommend(0, matrix[0], N=3)[0].tolist() == [2, 1, 0]


def test_buy_again_recency_is_not_refreshed_by_a_refund():
    # Item 1 bought on day 0 and returned on day 200; item 2 bought on day 100.
    matrix = sp.csr_matrix(np.array([[0, 2, 2]], dtype=np.float32))
    day = 86_400
    context = FitContext(
        event_users=np.zeros(5, dtype=np.int64),
        event_items=np.array([1, 1, 2, 2, 1]),
        event_times=np.array([0, 0, 100 * day, 100 * day, 200 * day]),
        event_types=np.array(["purchase", "purchase", "purchase", "purchase", "refund"]),
    )
    model = create_model("buy-again", half_life_days=30).fit(matrix, context=context)
    assert model.recommend(0, matrix[0], N=2)[0].tolist() == [2, 1]


# -- LightFM -----------------------------------------------------------------------


def test_lightfm_scores_a_cold_user_from_features(fitted):
    model = fitted["lightfm"]
    rows = model.user_features_from_names([["country=DE"], ["country=FR", "unknown=1"]])
    assert rows.shape == (2, 2)
    ids, scores = model.recommend_cold(rows, N=5)
    assert set(ids[0]) == set(range(GROUP))
    assert set(ids[1]) == set(range(GROUP, N_ITEMS))
    dense = model.score_user_features(rows)
    np.testing.assert_allclose(np.take_along_axis(dense, ids, axis=1), scores, rtol=1e-6)
    filtered, _ = model.recommend_cold(rows, N=2, filter_items=[0, 1, 2, 3])
    assert filtered[0, 0] == 4


def test_lightfm_scores_a_new_item_from_features(board, tmp_path):
    matrix, _ = board
    params = CF_CONFIGS["lightfm"][1]
    model = create_model("lightfm", **params).fit(matrix, context=checkerboard_context())
    # Item 10 arrives after fitting, in category a (group A's taste).
    model.add_cold_items(sp.csr_matrix(np.array([[1.0, 0.0]], dtype=np.float32)))
    assert model.n_items_ == N_ITEMS + 1
    wider = sp.csr_matrix(sp.hstack([matrix, sp.csr_matrix((N_USERS, 1))]))
    scores = model.score(np.arange(N_USERS), wider)
    group_a = np.arange(N_USERS) < N_USERS // 2
    assert np.all(scores[group_a, 10] > scores[group_a][:, GROUP:N_ITEMS].max(axis=1))
    assert np.all(scores[~group_a, 10] < scores[~group_a][:, GROUP:N_ITEMS].min(axis=1))
    ids, _ = model.recommend(np.arange(N_USERS), wider, N=N_ITEMS)
    assert np.isin(10, ids[group_a]) and np.isin(10, ids[~group_a])
    path = tmp_path / "lightfm.npz"
    model.save(path)
    np.testing.assert_allclose(load_model(path).score(np.arange(3), wider[:3]), scores[:3])


# -- blend and EASE ------------------------------------------------------------


def test_blend_with_buy_again_keeps_bought_items_first(board):
    matrix, missing = board
    model = create_model(
        "blend",
        parts={"buy-again": 1.0, "als": 1.0},
        part_params={"als": CF_CONFIGS["als"][1]},
    ).fit(matrix)
    ids, _ = model.recommend(np.arange(N_USERS), matrix, N=5)
    for user in range(N_USERS):
        assert set(ids[user, :4]) == set(matrix[user].indices)
    np.testing.assert_array_equal(ids[:, 4], missing)
    with pytest.raises(ValueError, match="part"):
        create_model("blend", parts={"als": 1.0}, part_params={"ease": {}})


@pytest.mark.parametrize(
    ("parts", "part_params", "message"),
    [
        ({"als": 1.0}, {"als": {"factors": 0}}, "als: factors and iterations must be >= 1"),
        ({"als": 1.0, "ease": 1.0}, {"ease": {"lambda_": "big"}}, "ease: lambda_='big'"),
        ({"als": -1.0, "ease": 1.0}, {}, "weight of 'als' must be >= 0"),
        ({"als": 0.0, "ease": 0.0}, {}, "at least one part needs a weight > 0"),
    ],
)
def test_blend_refuses_bad_parts_before_fitting(parts, part_params, message):
    with pytest.raises(ValueError, match=message):
        create_model("blend", parts=parts, part_params=part_params)


def test_minmax_rows_scales_each_row():
    scaled = minmax_rows(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0], [-np.inf, 0.0, 2.0]]))
    np.testing.assert_allclose(scaled, [[0, 1, 0.5], [0, 0, 0], [0, 0, 1]])


def test_ease_weights_have_a_zero_diagonal(fitted):
    weights = fitted["ease"].weights_
    assert weights.dtype == np.float32 and weights.shape == (N_ITEMS, N_ITEMS)
    np.testing.assert_array_equal(np.diag(weights), 0)
    # Cross-group weights vanish: no user mixes the groups.
    np.testing.assert_allclose(weights[:GROUP, GROUP:], 0, atol=1e-6)


def test_ease_with_dropout_keeps_a_diagonal_and_the_groups_apart(board):
    matrix, missing = board
    model = create_model("ease", lambda_=10.0, dropout=0.5).fit(matrix)
    weights = model.weights_
    assert (np.diag(weights) > 0).all()  # DLAE: no zero-diagonal constraint
    np.testing.assert_allclose(weights[:GROUP, GROUP:], 0, atol=1e-6)
    ids, _ = model.recommend(np.arange(N_USERS), matrix, N=1)
    np.testing.assert_array_equal(ids[:, 0], missing)
    # Popular items get a larger penalty: lambda_ + p / (1 - p) * their count.
    plain = create_model("ease", lambda_=10.0).fit(matrix).weights_
    assert np.abs(weights - np.diag(np.diag(weights))).max() < np.abs(plain).max()
    with pytest.raises(ValueError, match="dropout"):
        create_model("ease", dropout=1.0)


def test_ranking_keys_order_scores_then_smaller_ids():
    scores = np.array([[-np.inf, -2.5, -0.0, 0.0, 1e-30, 3.0, 3.0, np.inf]], dtype=np.float32)
    order = np.argsort(-ranking_keys(scores)[0], kind="stable")
    assert order.tolist() == [7, 5, 6, 4, 2, 3, 1, 0]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("als", {"factors": 1.5}, "factors=1.5: expected an integer"),
        ("bpr", {"iterations": 2.5}, "iterations=2.5: expected an integer"),
        ("itemknn", {"K": 1.5}, "K=1.5: expected an integer"),
        ("als", {"factors": True}, "factors=True: expected an integer"),
        ("ease", {"lambda_": "big"}, "lambda_='big': expected a number"),
        ("blend", {"parts": {"als": 1.0}, "part_params": 5}, "part_params=5: expected a mapping"),
        ("popular", {"half_life_days": "soon"}, "expected a number or nothing"),
        ("als", {"regularization": float("inf")}, "regularization=inf: not a finite number"),
        ("ranker", {"learning_rate": float("nan")}, "learning_rate=nan: not a finite number"),
    ],
)
def test_hyper_parameters_of_the_wrong_type_are_named_before_fitting(name, params, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **params)


def test_hyper_parameters_of_the_right_type_are_accepted_numpy_scalars_too():
    assert create_model("als", factors=np.int64(8), regularization=1).factors == 8
    assert create_model("popular", half_life_days=None).get_params()["half_life_days"] is None
    assert create_model("lightfm", normalize_features="users", epochs=2) is not None
    assert create_model("lightfm", normalize_features=True, epochs=2) is not None
    assert create_model("ease", lambda_=np.float32(10.0), binary=True) is not None


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("als", {"alpha": 1e38, "factors": 4, "iterations": 2, "num_threads": 1}),
        ("bpr", {"learning_rate": 1e30, "factors": 4, "iterations": 2, "num_threads": 1}),
    ],
)
def test_a_diverged_factorisation_is_a_value_error(board, name, params):
    matrix, _ = board  # what tune records as a failed trial, and train as a one-line error
    with pytest.raises(ValueError, match="diverged"):
        create_model(name, **params).fit(matrix)
