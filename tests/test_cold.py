"""The cold-start slice: users without history, ranked from their country and language.

Tiny data with known answers: taste group A lives in DE (speaks de), group B
in FR (speaks fr); group B is twice as large, so global popularity favours
B's items while a new German customer should get A's items first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.store import DataStore
from recsys.data.synthetic import generate_shop
from recsys.evaluation.cold import evaluate_new_users
from recsys.idmap import IdMap
from recsys.models import FitContext, create_model, load_model
from recsys.models.base import new_user_profiles
from recsys.protocols import cold_start_test, load_protocol

N_A, N_B, GROUP = 10, 20, 5
N_USERS, N_ITEMS = N_A + N_B, 2 * GROUP
#: Users per item: A's items 0-4 by 10, 8, 6, 4, 2 of the A users; B's 5-9 by
#: 20, 17, 14, 11, 8 of the B users.
A_COUNTS, B_COUNTS = (10, 8, 6, 4, 2), (20, 17, 14, 11, 8)
DE_RANKING = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
FR_RANKING = [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
GLOBAL_RANKING = [5, 6, 7, 8, 0, 1, 9, 2, 3, 4]  # 20 17 14 11 10 8 8 6 4 2
DE = {"country": "DE", "language": "de"}
FR = {"country": "FR", "language": "fr"}


def two_countries() -> tuple[sp.csr_matrix, FitContext]:
    rows, cols = [], []
    for item, count in enumerate(A_COUNTS):
        rows += range(count)
        cols += [item] * count
    for item, count in enumerate(B_COUNTS):
        rows += range(N_A, N_A + count)
        cols += [GROUP + item] * count
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS)
    )
    in_a = (np.arange(N_USERS) < N_A).astype(np.float32)
    user_features = sp.csr_matrix(np.column_stack([in_a, 1 - in_a, in_a, 1 - in_a]))
    item_features = sp.csr_matrix(np.repeat(np.eye(2, dtype=np.float32), GROUP, axis=0))
    context = FitContext(
        user_features=user_features,
        user_feature_names=["country=DE", "country=FR", "language=de", "language=fr"],
        item_features=item_features,
        item_feature_names=["category=a", "category=b"],
        user_country=np.where(in_a > 0, "DE", "FR"),
    )
    return matrix, context


LIGHTFM = {"no_components": 8, "epochs": 60, "loss": "warp", "random_state": 7, "num_threads": 1}
POPULAR_COUNTRY = {"by": "country", "country_prior": 0.0}


@pytest.fixture(scope="module")
def fitted():
    matrix, context = two_countries()
    configs = {
        "lightfm": ("lightfm", LIGHTFM),
        "popular-country": ("popular", POPULAR_COUNTRY),
        "popular-global": ("popular", {}),
        "blend": (
            "blend",
            {
                "parts": {"popular": 1.0, "als": 1.0},
                "part_params": {
                    "popular": POPULAR_COUNTRY,
                    "als": {"factors": 2, "random_state": 7, "num_threads": 1},
                },
            },
        ),
        "als": ("als", {"factors": 2, "random_state": 7, "num_threads": 1}),
    }
    return {
        key: create_model(name, **params).fit(matrix, context=context)
        for key, (name, params) in configs.items()
    }


# -- models ---------------------------------------------------------------------


def test_lightfm_gives_a_new_user_the_items_of_their_country_first(fitted):
    model = fitted["lightfm"]
    assert model.supports_new_users
    ids, scores = model.recommend_new_users([DE, FR, {"language": "de"}], N=GROUP)
    assert ids.shape == scores.shape == (3, GROUP)
    assert set(ids[0]) == set(range(GROUP))
    assert set(ids[1]) == set(range(GROUP, N_ITEMS))
    assert set(ids[2]) == set(range(GROUP)), "language alone points to group A"
    assert np.all(np.diff(scores, axis=1) <= 0)
    # Same scores as the feature-matrix route.
    rows = model.user_features_from_names([["country=DE", "language=de"]])
    np.testing.assert_allclose(model.score_user_features(rows)[0, ids[0]], scores[0], rtol=1e-5)


def test_popular_by_country_ranks_by_the_market_and_falls_back_to_global(fitted):
    model = fitted["popular-country"]
    unknown = {"country": "JP", "language": "ja"}
    ids, _ = model.recommend_new_users(pd.DataFrame([DE, FR, unknown, {}]), N=N_ITEMS)
    assert ids[0].tolist() == DE_RANKING
    assert ids[1].tolist() == FR_RANKING
    assert ids[2].tolist() == GLOBAL_RANKING
    assert ids[3].tolist() == GLOBAL_RANKING
    ids, _ = fitted["popular-global"].recommend_new_users([DE], N=N_ITEMS)
    assert ids[0].tolist() == GLOBAL_RANKING


def test_filters_and_padding_apply_to_new_users(fitted):
    model = fitted["popular-country"]
    ids, scores = model.recommend_new_users([DE], N=4, filter_items=[0, 2])
    assert ids[0].tolist() == [1, 3, 4, 5]
    ids, scores = model.recommend_new_users([DE], N=4, items=[8, 1, 9])
    assert ids[0].tolist() == [1, 8, 9, -1]
    assert scores[0, -1] == -np.inf


def test_blend_ranks_new_users_with_the_parts_that_can(fitted):
    blend = fitted["blend"]
    assert blend.supports_new_users
    ids, _ = blend.recommend_new_users([DE, FR], N=N_ITEMS)
    assert ids[0, :GROUP].tolist() == DE_RANKING[:GROUP]
    assert ids[1, :GROUP].tolist() == FR_RANKING[:GROUP]
    collaborative = create_model("blend", parts={"als": 1.0, "itemknn": 1.0})
    assert not collaborative.supports_new_users


def test_models_without_profiles_refuse_new_users(fitted):
    assert not fitted["als"].supports_new_users
    with pytest.raises(NotImplementedError, match="without history"):
        fitted["als"].recommend_new_users([DE])


def test_new_user_rankings_survive_save_and_load(fitted, tmp_path):
    for key in ("lightfm", "popular-country", "blend"):
        path = tmp_path / f"{key}.npz"
        fitted[key].save(path)
        loaded = load_model(path)
        assert loaded.supports_new_users
        np.testing.assert_array_equal(
            loaded.recommend_new_users([DE, FR], N=N_ITEMS)[0],
            fitted[key].recommend_new_users([DE, FR], N=N_ITEMS)[0],
        )


def test_profiles_normalise_missing_values():
    table = new_user_profiles([{"country": "DE"}, {"country": "", "language": np.nan}])
    assert table.to_dict("records") == [
        {"country": "DE", "language": None},
        {"country": None, "language": None},
    ]
    with pytest.raises(TypeError):
        new_user_profiles({"country": "DE"})


# -- evaluation -------------------------------------------------------------------


def test_evaluate_new_users_scores_the_full_catalog_ranking(fitted):
    # DE buys item 0 (rank 1 of DE); FR buys item 9 (rank 5 of FR); the third
    # profile has no test item and is not evaluated.
    profiles = pd.DataFrame([DE, FR, DE])
    cold_test = sp.csr_matrix(([1.0, 1.0], ([0, 1], [0, 9])), shape=(3, N_ITEMS))
    matrix, _ = two_countries()
    result = evaluate_new_users(
        fitted["popular-country"], profiles, cold_test, ks=(1, 5), train=matrix, progress=False
    )
    summary = result.summary()
    assert result.n_users == 2
    assert result.per_user["user"].tolist() == [0, 1]
    assert summary["ndcg@1"] == pytest.approx(0.5)
    assert summary["ndcg@5"] == pytest.approx((1 + 1 / np.log2(6)) / 2)
    assert summary["hit_rate@5"] == 1.0
    assert summary["coverage@1"] == pytest.approx(2 / N_ITEMS)
    assert np.isfinite(summary["novelty@5"])
    by_country = result.by_slice("country", ks=[1])
    assert by_country.loc["DE", "ndcg@1"] == 1.0 and by_country.loc["FR", "ndcg@1"] == 0.0
    with pytest.raises(ValueError, match="rows"):
        evaluate_new_users(fitted["popular-country"], profiles[:2], cold_test, progress=False)


def test_evaluate_new_users_leaves_the_callers_test_matrix_alone(fitted):
    # profile 0 stores item 3 with an explicit 0 (not relevant); the caller's
    # matrix must not be compacted in place behind its back
    profiles = pd.DataFrame([DE, FR])
    cold_test = sp.csr_matrix(
        (np.array([0.0, 1.0, 1.0]), np.array([3, 0, 9]), np.array([0, 2, 3])), shape=(2, N_ITEMS)
    )
    before = (cold_test.data.copy(), cold_test.indices.copy(), cold_test.indptr.copy())
    result = evaluate_new_users(fitted["popular-country"], profiles, cold_test, progress=False)
    assert result.per_user["recall@10"].tolist() == [1.0, 1.0]
    after = (cold_test.data, cold_test.indices, cold_test.indptr)
    for array, saved in zip(after, before, strict=True):
        np.testing.assert_array_equal(array, saved)
    assert cold_test.nnz == 3


# -- protocol ---------------------------------------------------------------------


def _events(rows: list[tuple[str, str | None, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["timestamp", "user_id", "item_id", "type", "country"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def test_cold_start_test_keeps_new_customers_who_buy_known_items():
    events = _events(
        [
            ("2024-01-01", "old", "i1", "purchase", "GB"),
            ("2024-01-02", None, "i2", "view", "GB"),  # guest: item known, user not
            ("2024-01-03", "late", "i3", "view", "DE"),
            ("2024-02-01", "old", "i2", "purchase", "GB"),  # known user: not cold
            ("2024-02-02", "new_de", "i2", "view", "DE"),
            ("2024-02-02", "new_de", "i1", "purchase", "DE"),
            ("2024-02-03", "new_de", "i2", "purchase", "DE"),
            ("2024-02-03", "new_fr", "i1", "purchase", "FR"),  # no customer row
            ("2024-02-04", "new_unknown_item", "i9", "purchase", "GB"),
            ("2024-02-05", "browser", "i1", "view", "GB"),  # never buys
            ("2024-03-20", "after_window", "i1", "purchase", "GB"),
        ]
    )
    customers = pd.DataFrame(
        {
            "user_id": ["new_de", "new_fr", "created_early"],
            "country": ["AT", None, "GB"],
            "language": [None, None, "en"],
        }
    )
    item_map = IdMap(["i1", "i2", "i3"])
    users, test = cold_start_test(events, "2024-02-01", 30, item_map, customers)
    assert users["user_id"].tolist() == ["new_de", "new_fr"]
    assert users["country"].tolist() == ["AT", "FR"]  # customer table first, else events
    assert users["language"].tolist() == ["de", "fr"]  # the market's language
    assert test.shape == (2, 3)
    assert test.toarray().tolist() == [[1, 1, 0], [1, 0, 0]]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    generate_shop(DataStore(root), users=400, items=60, days=60, seed=5, progress=False)
    return root


def test_the_synthetic_shop_has_new_customers_in_the_temporal_protocol(shop):
    store = DataStore(shop)
    data = load_protocol(store, "temporal")
    assert len(data.cold_users) == data.cold_test.shape[0] > 0
    assert data.cold_test.shape[1] == len(data.item_map)
    assert np.all(np.diff(data.cold_test.indptr) > 0), "every cold user has a test item"
    ids = data.cold_users["user_id"].astype(str)
    assert not (data.user_map.index(ids) >= 0).any(), "cold users have no train event"
    events = store.read("events", columns=["user_id", "timestamp"])
    first = events.dropna(subset=["user_id"]).groupby("user_id")["timestamp"].min()
    assert (first.reindex(ids) >= data.split.cutoff).all()
    assert data.cold_users["country"].notna().all() and data.cold_users["language"].notna().all()


def test_training_evaluates_the_cold_slice_for_models_that_rank_new_users(shop):
    from training.train import _evaluate_new_users

    data = load_protocol(DataStore(shop), "temporal")
    train_matrix = data.train_matrix()
    context = data.fit_context()
    popular = create_model("popular", by="country").fit(train_matrix, context=context)
    result = _evaluate_new_users(popular, data, train_matrix, progress=False)
    assert result.n_users == len(data.cold_users)
    assert 0 <= result.summary()["ndcg@10"] <= 1
    knn = create_model("itemknn").fit(train_matrix, context=context)
    assert _evaluate_new_users(knn, data, train_matrix, progress=False) is None


# -- LightFM options for users without history -------------------------------------


def test_lightfm_normalises_the_side_it_is_told_to():
    matrix, context = two_countries()
    params = {**LIGHTFM, "epochs": 1}
    users_only = create_model("lightfm", **params, normalize_features="users")
    users_only.fit(matrix, context=context)
    # users: identity + country + language, scaled to sum 1; items: identity + category, as is
    np.testing.assert_allclose(users_only.user_features_.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(users_only.item_features_.sum(axis=1), 2.0)
    rows = users_only.user_features_from_names([["country=DE", "language=de"]])
    cold = users_only._with_identity(rows, users_only.n_users_, "user", cold=True)
    assert cold[0].sum() == pytest.approx(1.0) and cold[0, :N_USERS].nnz == 0


def test_lightfm_profile_rows_train_users_again_by_features_only():
    matrix, context = two_countries()
    weighted = sp.csr_matrix(matrix.multiply(np.where(np.arange(N_ITEMS) == 0, 3.0, 1.0)))
    model = create_model("lightfm", **LIGHTFM, profile_rows=1.0, sample_weights=True)
    model.fit(weighted, context=context)
    side = sp.csr_matrix(context.user_features)
    interactions, weights, rows = model._training_rows(weighted, side)
    assert interactions.shape == (2 * N_USERS, N_ITEMS) and rows.shape[0] == 2 * N_USERS
    dense = interactions.toarray()
    np.testing.assert_array_equal(dense[N_USERS:], dense[:N_USERS])
    assert rows[N_USERS:, :N_USERS].nnz == 0, "profile rows carry no identity"
    assert rows[N_USERS:, N_USERS:].nnz == 2 * N_USERS  # country and language
    np.testing.assert_array_equal(weights.row, interactions.row)
    np.testing.assert_array_equal(weights.col, interactions.col)
    expected = np.asarray(weighted[weights.row % N_USERS, weights.col]).ravel()
    np.testing.assert_allclose(weights.data, expected / expected.mean(), rtol=1e-6)
    ids, _ = model.recommend_new_users([DE, FR], N=GROUP)
    assert set(ids[0]) == set(range(GROUP)) and set(ids[1]) == set(range(GROUP, N_ITEMS))


@pytest.mark.parametrize(
    "params",
    [
        {"profile_rows": 1.5},
        {"normalize_features": "both"},
        {"sample_weights": True, "loss": "warp-kos"},
    ],
)
def test_lightfm_rejects_bad_cold_start_options(params):
    with pytest.raises(ValueError):
        create_model("lightfm", **params)
