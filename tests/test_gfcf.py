"""GF-CF on tiny data with a known answer: a checkerboard of two taste groups."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from taste_groups import GROUP, N_ITEMS, N_USERS, checkerboard

from recsys.models import create_model, load_model
from recsys.models.gfcf import GFCFRecommender
from training.params import defaults_for


@pytest.fixture(scope="module")
def board():
    return checkerboard()


@pytest.mark.parametrize("params", [{"factors": 2}, {"alpha": 0.0}, {"factors": 50}])
def test_top_recommendation_is_the_missing_item_of_the_own_group(board, params):
    matrix, missing = board
    model = create_model("gfcf", **params).fit(matrix)
    ids, scores = model.recommend(np.arange(N_USERS), matrix, N=GROUP)
    assert np.array_equal(ids[:, 0], missing)
    assert np.all(scores[:, 0] > scores[:, 1])
    assert np.all(ids[:, 1:] // GROUP != ids[:, :1] // GROUP)  # the rest: the other group


def test_filter_matches_the_formula(board):
    """P~ + alpha D^-1/2 V V' D^1/2 on a small random matrix, written out densely."""
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.3).astype(np.float64)
    dense[np.arange(30), np.arange(30) % 12] = 1.0  # every user and every item has one
    model = GFCFRecommender(alpha=0.7, factors=3).fit(sp.csr_matrix(dense))
    du, di = dense.sum(axis=1), dense.sum(axis=0)
    norm = dense / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    gram = norm.T @ norm
    vectors = np.linalg.svd(norm)[2][:3].T
    expected = gram + 0.7 * (vectors / np.sqrt(di)[:, None]) @ (vectors * np.sqrt(di)[:, None]).T
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-4, atol=1e-5)


def test_save_load_gives_identical_recommendations(board, tmp_path):
    matrix, _ = board
    model = create_model("gfcf", alpha=0.5, factors=3, user_exponent=0.25).fit(matrix)
    path = tmp_path / "gfcf.npz"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, GFCFRecommender)
    assert loaded.get_params() == model.get_params()
    users = np.arange(N_USERS)
    for before, after in zip(
        model.recommend(users, matrix, N=N_ITEMS, filter_already_liked_items=False),
        loaded.recommend(users, matrix, N=N_ITEMS, filter_already_liked_items=False),
        strict=True,
    ):
        assert np.array_equal(before, after)
    assert np.array_equal(model.similar_items(0, N=4)[0], loaded.similar_items(0, N=4)[0])


def test_similar_items_stay_in_their_group(board):
    matrix, _ = board
    model = create_model("gfcf", factors=2).fit(matrix)
    ids, _ = model.similar_items(np.arange(N_ITEMS), N=GROUP - 1)
    assert np.all(ids // GROUP == (np.arange(N_ITEMS) // GROUP)[:, None])


def test_parameters_are_validated():
    for bad in ({"alpha": -1.0}, {"factors": 0}, {"factors": 2.5}, {"item_exponent": 1.5}):
        with pytest.raises(ValueError):
            GFCFRecommender(**bad)
    matrix, _ = checkerboard()
    with pytest.raises(ValueError, match="max_items"):
        GFCFRecommender(max_items=5).fit(matrix)


def test_stratified_defaults_build_valid_models(board):
    matrix, missing = board
    create_model("gfcf", **defaults_for("gfcf", "stratified"))
    blend = create_model("blend", **defaults_for("blend", "stratified"))
    assert "gfcf" in blend.parts
    ids, _ = blend.fit(matrix).recommend(np.arange(N_USERS), matrix, N=1)
    assert np.array_equal(ids[:, 0], missing)
