"""New customers scored by profile embeddings fitted to recent demand (``new_users="demand"``).

Known answers on the tiny two-market shop of ``test_profile_recency`` (DE's
old favourites have more buyers, but DE buys other items this week): the
fitted profiles match each market's recent demand better than LightFM's own,
a new French customer is shown exactly what FR buys now and a new German one
mostly this week's items, where the plain profile shows DE's old favourites.
How far the fit can follow demand is bounded by LightFM's item vectors (here
8 dimensions learned without recency), which is why DE's list is not exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models import FitContext, create_model, load_model
from recsys.models.base import new_user_profiles as new_profiles
from recsys.models.profile_demand import distinct_profiles, fit_profile_demand
from tests.test_profile_recency import (
    N_DE,
    N_FR,
    N_ITEMS,
    OLD_DE,
    RECENT_DE,
    RECENT_FR,
    TUNED,
    recent_shop,
)


def test_distinct_profiles_groups_equal_rows_and_skips_empty_ones():
    side = sp.csr_matrix(
        np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=np.float32)
    )
    profiles, profile_of = distinct_profiles(side)
    np.testing.assert_array_equal(profile_of, [0, 1, 0, -1, 1])
    np.testing.assert_array_equal(profiles.toarray(), [[1, 0, 1], [0, 1, 0]])


def test_fitted_softmax_matches_each_profiles_demand():
    # items with their own dimension (full rank): the fit can reproduce any
    # demand, so each profile's softmax comes out as its demand shares
    n_items = 6
    profiles = sp.csr_matrix(np.eye(2, dtype=np.float32))
    demand = sp.csr_matrix(np.array([[6, 3, 1, 0, 0, 0], [0, 0, 0, 1, 1, 8]], dtype=np.float64))
    embeddings = fit_profile_demand(
        profiles, demand, np.eye(n_items), np.zeros(n_items), l2=1e-8, max_iter=2000
    )
    scores = profiles.toarray() @ embeddings @ np.eye(n_items).T
    softmax = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    shares = demand.toarray() / demand.toarray().sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, shares, atol=0.01)


def test_gradient_of_the_objective_with_sparse_item_features(monkeypatch):
    # the fit converges to the optimum only if its gradient is right: compare the
    # fitted embeddings' gradient (zero at the optimum) and a finite-difference check
    from scipy.optimize import check_grad

    from recsys.models import profile_demand

    rng = np.random.default_rng(0)
    profiles = sp.csr_matrix((rng.random((4, 3)) < 0.6).astype(np.float32))
    demand = sp.csr_matrix(rng.poisson(1.0, (4, 7)).astype(np.float64))
    dense, bias = rng.normal(size=(7, 2)), rng.normal(size=7)
    features = sp.csr_matrix((rng.random((7, 3)) < 0.4).astype(np.float64))
    captured = {}

    def spy(fun, x0, jac, method, options):
        captured["fun"] = fun
        return real(fun, x0, jac=jac, method=method, options=options)

    real = profile_demand.minimize
    monkeypatch.setattr(profile_demand, "_BLOCK_CELLS", 7)  # one profile per block
    monkeypatch.setattr(profile_demand, "minimize", spy)
    fitted = fit_profile_demand(profiles, demand, dense, bias, features, l2=0.01)
    fun = captured["fun"]
    point = rng.normal(size=fitted.size)
    error = check_grad(lambda v: fun(v)[0], lambda v: fun(v)[1], point)
    assert error < 1e-5 * max(1.0, np.linalg.norm(fun(point)[1]))
    assert np.linalg.norm(fun(fitted.ravel().astype(np.float64))[1]) < 1e-3


def test_a_profile_without_demand_keeps_zero_embeddings():
    profiles = sp.csr_matrix(np.eye(2, dtype=np.float32))
    demand = sp.csr_matrix(np.array([[0, 0, 0], [1, 2, 0]], dtype=np.float64))
    embeddings = fit_profile_demand(profiles, demand, np.eye(3), np.zeros(3))
    np.testing.assert_array_equal(embeddings[0], 0)
    assert embeddings[1, 1] > embeddings[1, 0] > embeddings[1, 2]
    with pytest.raises(ValueError, match="demand is"):
        fit_profile_demand(profiles, demand[:, :2], np.eye(3), np.zeros(3))


def _cross_entropy(scores: np.ndarray, shares: np.ndarray) -> float:
    log_softmax = scores - np.logaddexp.reduce(scores)
    return float(-(shares * log_softmax).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_new_customer_gets_what_the_market_buys_now(seed):
    matrix, context = recent_shop()
    binary = matrix.copy()
    binary.data[:] = 1.0
    params = {**TUNED, "sample_weights": False, "random_state": seed}
    plain = create_model("lightfm", **params).fit(binary, context=context)
    demand = create_model("lightfm", **params, new_users="demand").fit(binary, context=context)
    markets = [{"country": "DE"}, {"country": "FR"}]
    # the fit starts from no profile at all, and LightFM's own profile scores lie in
    # its family: the fitted softmax is closer to each market's recent demand
    ages = (context.reference_time - np.asarray(context.event_times)) / 86_400.0
    recent = sp.csr_matrix(
        (0.5 ** (ages / 7.0), (context.event_users, context.event_items)), shape=binary.shape
    )
    for market, members in (("DE", slice(0, N_DE)), ("FR", slice(N_DE, N_DE + N_FR))):
        shares = np.asarray(recent[members].sum(axis=0)).ravel()
        shares /= shares.sum()
        profile = [{"country": market}]
        fitted = _cross_entropy(demand._score_new_users(new_profiles(profile))[0], shares)
        own = _cross_entropy(plain._score_new_users(new_profiles(profile))[0], shares)
        assert fitted < own
    ids, _ = demand.recommend_new_users(markets, N=5)
    assert set(ids[1]) == set(RECENT_FR)
    ids, _ = plain.recommend_new_users(markets, N=5)
    assert set(ids[0]) == set(OLD_DE)  # unweighted, DE's old favourites come first
    # known users are scored by LightFM itself: the option does not change them
    users = np.arange(N_DE + N_FR)
    np.testing.assert_array_equal(
        demand.recommend(users, binary, N=10)[0], plain.recommend(users, binary, N=10)[0]
    )


def _with_item_tags(context: FitContext) -> FitContext:
    """The shop's items tagged as a catalog would: DE's recent items one tag, its old
    favourites another, FR's recent items a third, the rest a fourth."""
    tags = np.array(["summer"] * 5 + ["winter"] * 5 + ["garden"] * 5 + ["other"] * (N_ITEMS - 15))
    names = ["tag=garden", "tag=other", "tag=summer", "tag=winter"]
    features = np.column_stack([tags == name.split("=")[1] for name in names])
    return dataclasses.replace(
        context,
        item_features=sp.csr_matrix(features.astype(np.float32)),
        item_feature_names=names,
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_with_item_features_the_new_customer_list_is_exact(seed):
    # the item side holds the tags, so DE's weight can move to this week's tag
    matrix, context = recent_shop()
    context = _with_item_tags(context)
    binary = matrix.copy()
    binary.data[:] = 1.0
    params = {**TUNED, "sample_weights": False, "random_state": seed}
    demand = create_model("lightfm", **params, new_users="demand").fit(binary, context=context)
    plain = create_model("lightfm", **params).fit(binary, context=context)
    markets = [{"country": "DE"}, {"country": "FR"}]
    ids, _ = demand.recommend_new_users(markets, N=5)
    assert set(ids[0]) == set(RECENT_DE) and set(ids[1]) == set(RECENT_FR)
    ids, _ = plain.recommend_new_users(markets, N=5)
    assert not set(ids[0]) & set(RECENT_DE)
    # item vectors, the bias, then the four tags
    assert demand._demand_items.shape == (N_ITEMS, TUNED["no_components"] + 1)
    assert demand._demand_features.shape == (N_ITEMS, 4)
    # the tags enter raw, for known and new items alike, whatever the normalisation
    normalised = create_model(
        "lightfm", **{**params, "normalize_features": True}, new_users="demand"
    ).fit(binary, context=context)
    normalised.add_cold_items(sp.csr_matrix(np.array([[0, 0, 1, 0]], dtype=np.float32)))
    raw = sp.vstack([context.item_features, sp.csr_matrix(np.array([[0, 0, 1, 0]]))])
    np.testing.assert_array_equal(normalised._demand_features.toarray(), raw.toarray())
    vectors_only = create_model(
        "lightfm", **params, new_users="demand", demand_item_features=False
    ).fit(binary, context=context)
    assert vectors_only._demand_items.shape == (N_ITEMS, TUNED["no_components"] + 1)
    assert vectors_only._demand_features is None


def test_demand_embeddings_survive_save_and_load(tmp_path):
    matrix, context = recent_shop()
    model = create_model("lightfm", **TUNED, new_users="demand", demand_half_life_days=3.0)
    model.fit(matrix, context=context)
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert loaded.get_params() == model.get_params()
    profiles = [{"country": "DE"}, {"country": "FR"}, {}]
    for got, want in zip(
        loaded.recommend_new_users(profiles, N=10),
        model.recommend_new_users(profiles, N=10),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_demand_needs_side_features_and_events():
    matrix = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="user_features"):
        create_model("lightfm", new_users="demand", epochs=1).fit(matrix)
    context = FitContext(
        user_features=sp.csr_matrix(np.ones((3, 1), dtype=np.float32)),
        user_feature_names=["country=DE"],
    )
    with pytest.raises(ValueError, match="context events"):
        create_model("lightfm", new_users="demand", epochs=1).fit(matrix, context=context)
    for bad in ({"new_users": "both"}, {"demand_half_life_days": 0}, {"demand_l2": -1}):
        with pytest.raises(ValueError):
            create_model("lightfm", **bad)
