"""Recent-demand item features (``trend=..``, ``trend:<market>=..``) and LightFM with them.

Hand-made events with known bands: what sold yesterday in a market is in
that market's top band, what sold 200 days ago is not, and nothing after the
reference time counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.features import trend_features
from recsys.models import FitContext, create_model, load_model

DAY = 86_400.0
NOW = 300 * DAY


def bands(matrix: sp.csr_matrix, names: list[str], item: int) -> set[str]:
    return {names[j] for j in sp.csr_matrix(matrix)[item].indices}


def test_trend_bands_follow_recent_demand_per_market():
    # 200 items; item 0 bought yesterday in DE (twice), item 1 yesterday in FR,
    # item 2 200 days ago in DE (five times), items 3-12 a week ago in DE,
    # item 13 by a customer of unknown market, items 14+ never.
    items = [0, 0, 1, 2, 2, 2, 2, 2, *range(3, 13), 13]
    ages = [1, 1, 1, 200, 200, 200, 200, 200, *[7] * 10, 1]
    markets = ["DE", "DE", "FR", "DE", "DE", "DE", "DE", "DE", *["DE"] * 10, None]
    matrix, names = trend_features(
        np.array(items), NOW - np.array(ages) * DAY, NOW, 200, event_markets=np.array(markets)
    )
    assert matrix.shape == (200, len(names))
    # DE by demand: 0, then 3-12 (ties by index), then 2 -> top 1 % (2 items):
    # 0 and 3; 1-5 % (the next 8): 4-11; 5-10 %: 12 and 2.
    assert bands(matrix, names, 0) == {"trend=q1", "trend:DE=top1"}
    assert bands(matrix, names, 1) == {"trend=q1", "trend:FR=top1"}
    assert bands(matrix, names, 3) == {"trend=q2", "trend:DE=top1"}
    assert bands(matrix, names, 5) == {"trend=q2", "trend:DE=top5"}
    assert "trend:DE=top10" in bands(matrix, names, 12)
    # five sales 200 days ago weigh less than one a week ago (half-life 14 days)
    assert bands(matrix, names, 2) == {"trend=q5", "trend:DE=top10"}
    assert bands(matrix, names, 13) == {"trend=q1"}, "unknown market: the global band only"
    assert bands(matrix, names, 14) == {"trend=none"}
    assert np.all(matrix.sum(axis=1) >= 1), "every item has one global band"
    per_market = [n for n in names if n.startswith("trend:DE=")]
    assert sorted(per_market) == ["trend:DE=top1", "trend:DE=top10", "trend:DE=top5"]
    assert matrix[:, names.index("trend:DE=top1")].sum() == 2  # ceil(1 % of 200) items


def test_an_old_sale_is_not_in_the_top_band_of_a_larger_market():
    # DE: 30 items sold in the last week, item 99 200 days ago (ten times).
    items = [*range(30), *[99] * 10]
    ages = [*np.linspace(1, 7, 30), *[200] * 10]
    matrix, names = trend_features(
        np.array(items), NOW - np.array(ages) * DAY, NOW, 100, event_markets=np.array(["DE"] * 40)
    )
    assert bands(matrix, names, 0) == {"trend=q1", "trend:DE=top1"}  # bought yesterday
    assert bands(matrix, names, 99) == {"trend=q5"}  # ten sales, but 200 days ago


def test_trend_features_ignore_events_after_the_reference_time():
    times = np.array([NOW - DAY, NOW + DAY, NOW + DAY, NOW + DAY])
    matrix, names = trend_features(
        np.array([0, 1, 1, 1]), times, NOW, 4, event_markets=np.array(["DE"] * 4)
    )
    assert bands(matrix, names, 0) == {"trend=q1", "trend:DE=top1"}
    assert bands(matrix, names, 1) == {"trend=none"}, "a future event is not demand"
    # the half-life orders the bands: a shorter one favours the recent item
    items, ages = np.array([0, 1, 1, 1]), np.array([1, 60, 60, 60])
    fast, fast_names = trend_features(items, NOW - ages * DAY, NOW, 2, half_life_days=7)
    slow, slow_names = trend_features(items, NOW - ages * DAY, NOW, 2, half_life_days=1000)
    assert bands(fast, fast_names, 0) == {"trend=q1"}
    assert bands(slow, slow_names, 1) == {"trend=q1"}


def test_trend_features_reject_bad_input():
    with pytest.raises(ValueError, match="half_life_days"):
        trend_features(np.array([0]), np.array([NOW]), NOW, 1, half_life_days=0)
    with pytest.raises(ValueError, match="event items"):
        trend_features(np.array([5]), np.array([NOW]), NOW, 2)
    with pytest.raises(ValueError, match="trend_half_life_days"):
        create_model("lightfm", trend_half_life_days=-1)
    model = create_model("lightfm", trend_features=True, epochs=1)
    with pytest.raises(ValueError, match="context events"):
        model.fit(sp.csr_matrix(np.eye(3, dtype=np.float32)))


# -- LightFM with recent-demand features -------------------------------------------

N_DE, N_FR, N_ITEMS = 40, 40, 100
#: DE's recent purchases favour items 0-4 (bought in the last three days);
#: items 5-9 were DE's favourites two months ago; FR buys items 10-14 now.
RECENT_DE, OLD_DE, RECENT_FR = range(0, 5), range(5, 10), range(10, 15)


def recent_shop() -> tuple[sp.csr_matrix, FitContext]:
    rng = np.random.default_rng(0)
    users, items, ages = [], [], []
    for item in RECENT_DE:
        for user in rng.choice(N_DE, 12, replace=False):
            users.append(user), items.append(item), ages.append(rng.uniform(0, 3))
    for item in OLD_DE:
        for user in rng.choice(N_DE, 20, replace=False):
            users.append(user), items.append(item), ages.append(60.0)
    for item in RECENT_FR:
        for user in N_DE + rng.choice(N_FR, 12, replace=False):
            users.append(user), items.append(item), ages.append(rng.uniform(0, 3))
    for user in range(N_DE + N_FR):  # background: a few catalog items at any time
        for item in rng.choice(np.arange(15, N_ITEMS), 4, replace=False):
            users.append(user), items.append(item), ages.append(rng.uniform(0, 100))
    users, items = np.array(users), np.array(items)
    times = NOW - np.array(ages) * DAY
    country = np.array(["DE"] * N_DE + ["FR"] * N_FR, dtype=object)
    weights = 0.5 ** (np.array(ages) / 30.0)  # the library's recency-decayed matrix
    matrix = sp.csr_matrix(
        (weights.astype(np.float32), (users, items)), shape=(N_DE + N_FR, N_ITEMS)
    )
    context = FitContext(
        user_features=sp.csr_matrix(
            np.column_stack([country == "DE", country == "FR"]).astype(np.float32)
        ),
        user_feature_names=["country=DE", "country=FR"],
        user_country=country,
        event_users=users,
        event_items=items,
        event_times=times,
        reference_time=NOW,
    )
    return matrix, context


TUNED = {
    "no_components": 8,
    "epochs": 10,
    "normalize_features": "users",
    "profile_rows": 1.0,
    "sample_weights": True,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def trend_model():
    matrix, context = recent_shop()
    return create_model("lightfm", **TUNED, trend_features=True, random_state=3).fit(
        matrix, context=context
    )


def test_lightfm_ranks_a_markets_recent_items_first_for_a_new_customer(trend_model):
    model = trend_model
    assert model.get_params()["trend_features"] is True
    names = list(model.trend_feature_names_)
    assert "trend:DE=top1" in names and "trend:FR=top1" in names
    ids, _ = model.recommend_new_users([{"country": "DE"}, {"country": "FR"}], N=5)
    assert set(ids[0]) == set(RECENT_DE), "DE's recent items, not its old favourites"
    assert set(ids[1]) == set(RECENT_FR)
    # the features sit after the identity and context columns of the item rows
    offset = model.item_features_.shape[1] - len(names)
    top = offset + names.index("trend:DE=top1")
    column = model.item_features_[:, top].toarray().ravel()
    assert column.sum() == 1 and np.flatnonzero(column)[0] in RECENT_DE  # ceil(1 % of 100)


def test_lightfm_trend_features_survive_save_load_and_new_items(trend_model, tmp_path):
    matrix, _ = recent_shop()
    path = tmp_path / "trend.npz"
    trend_model.save(path)
    loaded = load_model(path)
    assert loaded.get_params() == trend_model.get_params()
    np.testing.assert_array_equal(loaded.trend_feature_names_, trend_model.trend_feature_names_)
    users = np.arange(0, N_DE + N_FR, 7)
    for a, b in zip(
        loaded.recommend(users, matrix[users], N=10),
        trend_model.recommend(users, matrix[users], N=10),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    profiles = [{"country": "DE"}, {"country": "FR"}, {}]
    np.testing.assert_array_equal(
        loaded.recommend_new_users(profiles, N=10)[0],
        trend_model.recommend_new_users(profiles, N=10)[0],
    )
    np.testing.assert_array_equal(
        loaded.similar_items(np.arange(5), N=5)[0], trend_model.similar_items(np.arange(5), N=5)[0]
    )
    # an item added after fitting: context columns only (here none), no trend feature
    loaded.add_cold_items(sp.csr_matrix((1, 0), dtype=np.float32))
    assert loaded.n_items_ == N_ITEMS + 1
    assert loaded.item_features_[N_ITEMS].nnz == 0
    ids, _ = loaded.recommend_new_users([{"country": "DE"}], N=N_ITEMS + 1)
    assert N_ITEMS in ids[0]


# -- profile rows weighted by recency (profile_half_life_days) ----------------------


def test_profile_rows_weigh_each_purchase_by_its_recency():
    matrix, context = recent_shop()
    binary = matrix.copy()
    binary.data[:] = 1.0
    model = create_model(
        "lightfm", **{**TUNED, "sample_weights": False, "epochs": 1}, profile_half_life_days=14.0
    )
    model.fit(binary, context=context)
    side = sp.csr_matrix(context.user_features)
    interactions, weights, rows = model._training_rows(binary, side, context)
    n_users = N_DE + N_FR
    assert interactions.shape == (2 * n_users, N_ITEMS)
    np.testing.assert_array_equal(weights.row, interactions.row)
    np.testing.assert_array_equal(weights.col, interactions.col)
    identity = weights.row < n_users
    np.testing.assert_allclose(weights.data[identity], 1.0)  # no sample_weights: as before
    # profile rows: each (user, item) weighs 0.5 ** (age / 14), scaled to mean 1
    ages = (NOW - np.asarray(context.event_times)) / DAY
    decay = sp.csr_matrix(
        (0.5 ** (ages / 14.0), (context.event_users, context.event_items)), shape=binary.shape
    )
    expected = np.asarray(decay[weights.row[~identity] - n_users, weights.col[~identity]]).ravel()
    np.testing.assert_allclose(weights.data[~identity], expected / expected.mean(), rtol=1e-5)


def test_profile_recency_gives_a_new_customer_what_the_market_buys_now():
    # Unweighted, DE's old favourites (20 buyers each, two months ago) beat its
    # recent items (12 buyers each, this week); profile rows weighted by
    # recency put the recent ones first, and known users keep their rows.
    matrix, context = recent_shop()
    binary = matrix.copy()
    binary.data[:] = 1.0
    params = {**TUNED, "sample_weights": False, "random_state": 3}
    plain = create_model("lightfm", **params).fit(binary, context=context)
    recent = create_model("lightfm", **params, profile_half_life_days=14.0)
    recent.fit(binary, context=context)
    ids, _ = plain.recommend_new_users([{"country": "DE"}], N=5)
    assert not set(ids[0]) & set(RECENT_DE)
    ids, _ = recent.recommend_new_users([{"country": "DE"}, {"country": "FR"}], N=5)
    assert set(ids[0]) == set(RECENT_DE) and set(ids[1]) == set(RECENT_FR)


@pytest.mark.parametrize(
    "params", [{"profile_half_life_days": 0.0}, {"profile_half_life_days": 7, "loss": "warp-kos"}]
)
def test_profile_half_life_is_checked(params):
    with pytest.raises(ValueError):
        create_model("lightfm", **params)


def test_profile_half_life_needs_events():
    model = create_model("lightfm", profile_rows=1.0, profile_half_life_days=7.0, epochs=1)
    context = FitContext(
        user_features=sp.csr_matrix(np.ones((3, 1), dtype=np.float32)),
        user_feature_names=["country=DE"],
    )
    with pytest.raises(ValueError, match="context events"):
        model.fit(sp.csr_matrix(np.eye(3, dtype=np.float32)), context=context)
