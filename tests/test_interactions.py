import numpy as np
import pandas as pd
import pytest

from recsys.idmap import IdMap
from recsys.interactions import InteractionConfig, build_interactions


def make_events(rows):
    """rows: (day of Jan 2024, user_id, item_id, type, quantity, value)."""
    frame = pd.DataFrame(rows, columns=["day", "user_id", "item_id", "type", "quantity", "value"])
    frame["timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        frame.pop("day"), unit="D"
    )
    frame["timestamp"] = frame["timestamp"].dt.as_unit("ms")
    return frame


EVENTS = make_events(
    [
        (0, "u1", "a", "view", 1, None),
        (0, "u1", "a", "add_to_cart", 1, None),
        (1, "u1", "a", "purchase", 2, None),
        (2, "u1", "b", "view", 1, None),
        (2, None, "c", "purchase", 1, None),  # guest
        (3, "u2", "b", "purchase", 1, None),
        (4, "u2", "b", "refund", 1, None),  # nets the purchase out
        (4, "u2", "c", "rating", 1, 4.0),
    ]
)


def dense(result):
    """The matrix as {(user, item): value}."""
    coo = result.matrix.tocoo()
    users = result.user_map.ids(coo.row)
    items = result.item_map.ids(coo.col)
    return {(u, i): float(v) for u, i, v in zip(users, items, coo.data, strict=True)}


def test_default_weights_sum_and_refund_nets_out():
    result = build_interactions(EVENTS)
    assert result.matrix.dtype == np.float32
    assert result.matrix.shape == (2, 3)
    # u1/a: view 1 + cart 3 + purchase 10; u1/b: view 1; u2/b: 10 - 10 = 0 (dropped);
    # u2/c: rating 1 * value 4. Item c stays a column (from u2's rating), guest skipped.
    assert dense(result) == {("u1", "a"): 14.0, ("u1", "b"): 1.0, ("u2", "c"): 4.0}
    assert list(result.user_map.ids()) == ["u1", "u2"]
    assert list(result.item_map.ids()) == ["a", "b", "c"]
    assert result.n_events == 8
    assert result.n_guest_events == 1
    assert result.n_dropped_cells == 1


def test_guests_only_item_gets_no_column():
    events = make_events([(0, "u1", "a", "view", 1, None), (0, None, "g", "view", 1, None)])
    result = build_interactions(events)
    assert "g" not in result.item_map
    assert result.n_guest_events == 1


def test_time_decay_by_hand():
    config = InteractionConfig(
        weights={"view": 1.0, "purchase": 10.0}, half_life_days=2.0, reference_time="2024-01-05"
    )
    result = build_interactions(EVENTS, config)
    values = dense(result)
    # u1/a: view at age 4 days (1 * 0.5**2) + purchase at age 3 (10 * 0.5**1.5)
    assert values[("u1", "a")] == pytest.approx(0.25 + 10 * 0.5**1.5, rel=1e-6)
    # u1/b: view at age 2 -> one half-life
    assert values[("u1", "b")] == pytest.approx(0.5)
    # u2/b: purchase at age 1 (refund has weight 0 here): 10 * 0.5**0.5
    assert values[("u2", "b")] == pytest.approx(10 * 0.5**0.5, rel=1e-6)
    # add_to_cart, refund and rating weigh 0 in this config
    assert ("u2", "c") not in values
    assert result.n_zero_weight_events == 3
    assert result.reference_time == pd.Timestamp("2024-01-05", tz="UTC")


def test_decay_reference_defaults_to_latest_event():
    events = make_events([(0, "u1", "a", "view", 1, None), (10, "u2", "a", "view", 1, None)])
    result = build_interactions(events, InteractionConfig(half_life_days=10))
    assert dense(result) == pytest.approx({("u1", "a"): 0.5, ("u2", "a"): 1.0})


def test_decay_rejects_events_after_reference_time():
    config = InteractionConfig(half_life_days=1, reference_time="2024-01-02")
    with pytest.raises(ValueError, match="after reference_time"):
        build_interactions(EVENTS, config)


def test_quantity_and_min_weight():
    config = InteractionConfig(use_quantity=True, min_weight=2.0)
    values = dense(build_interactions(EVENTS, config))
    # u1/a: 1 + 3 + 10 * 2 = 24; u1/b = 1 <= 2 is dropped
    assert values == {("u1", "a"): 24.0, ("u2", "c"): 4.0}


def test_rating_value_can_be_ignored():
    config = InteractionConfig(weights={"rating": 2.0}, use_rating_value=False)
    assert dense(build_interactions(EVENTS, config)) == {("u2", "c"): 2.0}


def test_existing_maps_keep_indices_and_are_not_modified():
    users = IdMap(["u2", "zz"])
    items = IdMap(["c"])
    result = build_interactions(EVENTS, user_map=users, item_map=items)
    assert list(result.user_map.ids()) == ["u2", "zz", "u1"]
    assert list(result.item_map.ids()) == ["c", "a", "b"]
    assert result.matrix.shape == (3, 3)
    assert result.matrix[0, 0] == 4.0  # u2 x c
    assert len(users) == 2 and len(items) == 1  # the caller's maps are untouched


def test_fixed_maps_skip_unknown_ids():
    users = IdMap(["u1"])
    items = IdMap(["a", "b"])
    result = build_interactions(EVENTS, user_map=users, item_map=items, extend_maps=False)
    assert result.matrix.shape == (1, 2)
    assert dense(result) == {("u1", "a"): 14.0, ("u1", "b"): 1.0}
    assert result.n_unknown_events == 3  # u2's events
    assert result.user_map == users


def test_matrix_is_canonical_csr():
    result = build_interactions(pd.concat([EVENTS, EVENTS], ignore_index=True))
    assert result.matrix.format == "csr"
    assert result.matrix.has_canonical_format
    assert dense(result)[("u1", "a")] == 28.0


def test_invalid_input_raises():
    with pytest.raises(ValueError, match="unknown event types"):
        InteractionConfig(weights={"click": 1.0})
    with pytest.raises(ValueError):
        InteractionConfig(half_life_days=0)
    bad = EVENTS.assign(type=["view"] * 7 + ["wishlist"])
    with pytest.raises(ValueError, match="wishlist"):
        build_interactions(bad)
    with pytest.raises(ValueError, match="columns"):
        build_interactions(EVENTS.drop(columns="item_id"))
