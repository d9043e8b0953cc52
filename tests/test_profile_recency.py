"""LightFM's profile rows weighted by recency (``profile_half_life_days``).

A tiny two-market shop with a known answer: DE's old favourites have more
buyers, but what DE buys this week is another group of items; a new German
customer should be shown the latter when the profile rows follow recency.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import FitContext, create_model, load_model

DAY = 86_400.0
NOW = 300 * DAY


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


def test_profile_recency_gives_a_new_customer_what_the_market_buys_now(tmp_path):
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
    # saved and loaded: the same parameters and the same lists for every route
    recent.save(tmp_path / "recent.npz")
    loaded = load_model(tmp_path / "recent.npz")
    assert loaded.get_params() == recent.get_params()
    assert loaded.get_params()["profile_half_life_days"] == 14.0
    users = np.arange(0, N_DE + N_FR, 7)
    for got, want in (
        (
            loaded.recommend(users, binary[users], N=10),
            recent.recommend(users, binary[users], N=10),
        ),
        (
            loaded.recommend_new_users([{"country": "DE"}, {}], N=10),
            recent.recommend_new_users([{"country": "DE"}, {}], N=10),
        ),
        (loaded.similar_items(np.arange(5), N=5), recent.similar_items(np.arange(5), N=5)),
    ):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


@pytest.mark.parametrize(
    "params",
    [
        {"profile_half_life_days": 0.0},
        {"profile_half_life_days": 7, "profile_rows": 1.0, "loss": "warp-kos"},
        {"profile_half_life_days": 7, "profile_rows": 0.0},
    ],
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
