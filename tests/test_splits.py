import numpy as np
import pandas as pd
import pytest

from recsys.data.events import event_ids
from recsys.splits import (
    LeakError,
    Split,
    check_no_leak,
    leave_last_n,
    stratified_split,
    temporal_split,
)


def make_events(rows, with_ids=True):
    """rows: (name, day of Jan 2024, user_id, item_id, type); ``name`` becomes the index."""
    frame = pd.DataFrame(rows, columns=["name", "day", "user_id", "item_id", "type"])
    frame = frame.set_index("name")
    frame["timestamp"] = (
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(frame.pop("day"), unit="D")
    ).dt.as_unit("ms")
    frame["quantity"] = 1
    frame["session_id"] = frame.index  # every row distinct
    if with_ids:
        frame.insert(0, "event_id", event_ids(frame))
    return frame


EVENTS = make_events(
    [
        ("u1_view_a", 0, "u1", "a", "view"),
        ("u1_buy_a", 1, "u1", "a", "purchase"),
        ("u2_buy_b", 2, "u2", "b", "purchase"),
        ("guest_buy_b", 3, None, "b", "purchase"),
        ("u1_buy_b", 10, "u1", "b", "purchase"),  # at the cutoff: test
        ("u1_view_b", 11, "u1", "b", "view"),  # after cutoff, not a test type
        ("u2_buy_new", 12, "u2", "new", "purchase"),  # unknown item
        ("u3_buy_a", 12, "u3", "a", "purchase"),  # unknown user
        ("guest_buy_a", 13, None, "a", "purchase"),  # guest
        ("u2_buy_a_late", 25, "u2", "a", "purchase"),  # after the window
    ]
)
CUTOFF = "2024-01-11"  # day 10


def names(frame):
    return sorted(frame.index)


# ---- temporal --------------------------------------------------------------
def test_temporal_split_rows_land_where_they_should():
    split = temporal_split(EVENTS, CUTOFF, test_days=14)
    assert names(split.train) == sorted(["u1_view_a", "u1_buy_a", "u2_buy_b", "guest_buy_b"])
    assert names(split.test) == ["u1_buy_b"]
    assert split.cutoff == pd.Timestamp(CUTOFF, tz="UTC")
    assert split.description["test_types"] == ["purchase"]
    check_no_leak(split)


def test_temporal_split_can_keep_unknown_users_and_items():
    split = temporal_split(
        EVENTS,
        CUTOFF,
        test_days=None,
        test_types=None,
        known_users_only=False,
        known_items_only=False,
    )
    assert names(split.test) == sorted(EVENTS.index[4:])


def test_temporal_split_known_items_only():
    split = temporal_split(EVENTS, CUTOFF, test_days=14, known_users_only=False)
    # u3 is kept now (item a is known); the guest purchase too; item "new" is not
    assert names(split.test) == sorted(["u1_buy_b", "u3_buy_a", "guest_buy_a"])


def test_temporal_leak_check_fails_on_hand_made_leaks():
    train = EVENTS.loc[["u1_view_a", "u1_buy_a"]]
    early_test = Split(train, EVENTS.loc[["u2_buy_b"]], cutoff=pd.Timestamp(CUTOFF, tz="UTC"))
    with pytest.raises(LeakError, match="before the cutoff"):
        check_no_leak(early_test)
    late_train = Split(
        EVENTS.loc[["u1_buy_a", "u1_view_b"]],
        EVENTS.loc[["u1_buy_b"]],
        cutoff=pd.Timestamp(CUTOFF, tz="UTC"),
    )
    with pytest.raises(LeakError, match="at or after the cutoff"):
        check_no_leak(late_train)


# ---- leave last n ----------------------------------------------------------
def test_leave_last_one_per_user():
    split = leave_last_n(EVENTS, n=1)
    # u1: 4 events -> last is u1_view_b; u2: 3 events -> u2_buy_a_late;
    # u3 has a single event and stays in train; guests stay in train
    assert names(split.test) == sorted(["u1_view_b", "u2_buy_a_late"])
    assert len(split.train) + len(split.test) == len(EVENTS)
    check_no_leak(split)


def test_leave_last_n_of_given_types():
    split = leave_last_n(EVENTS, n=2, test_types=["purchase"])
    # u1 purchases: buy_a, buy_b (2 <= n: stays); u2: buy_b, buy_new, buy_a_late
    assert names(split.test) == sorted(["u2_buy_new", "u2_buy_a_late"])


def test_leave_last_n_breaks_timestamp_ties_by_row_order():
    # even rows on day 5, odd rows on day 4: among the tied latest, later rows are later
    tied = make_events([(f"r{k:02}", 5 - k % 2, "u", f"i{k}", "view") for k in range(60)])
    assert names(leave_last_n(tied, n=2).test) == ["r56", "r58"]
    assert names(leave_last_n(tied.iloc[::-1], n=2).test) == ["r00", "r02"]


def test_leave_last_n_order_check_fails_on_hand_made_leak():
    # u1's test event is older than one of their train events
    bad = Split(
        EVENTS.loc[["u1_view_a", "u1_buy_b"]],
        EVENTS.loc[["u1_buy_a"]],
        description={"method": "leave_last_n", "n": 1, "test_types": None},
    )
    with pytest.raises(LeakError, match="older"):
        check_no_leak(bad)


# ---- stratified --------------------------------------------------------------
def many_events(n_items=30, max_rows=9, seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n_items):
        for k in range(1 + item % max_rows):
            rows.append(
                (
                    f"i{item}_{k}",
                    int(rng.integers(0, 30)),
                    f"u{rng.integers(0, 20)}",
                    f"i{item}",
                    "view",
                )
            )
    return make_events(rows)


def test_stratified_split_per_item_counts():
    events = many_events()
    split = stratified_split(events, test_fraction=0.25, seed=42)
    sizes = events.groupby("item_id").size()
    in_train = split.train.groupby("item_id").size().reindex(sizes.index, fill_value=0)
    # floor(0.75 * n) of every item's rows in train: n=1 -> 0, n=2 -> 1, n=4 -> 3, n=9 -> 6
    np.testing.assert_array_equal(in_train.to_numpy(), np.floor(0.75 * sizes.to_numpy()))
    assert len(split.train) + len(split.test) == len(events)
    assert split.description == {
        "method": "stratified",
        "test_fraction": 0.25,
        "by": "item_id",
        "seed": 42,
    }


def test_stratified_split_is_deterministic_for_a_seed():
    events = many_events()
    a = stratified_split(events, seed=7)
    b = stratified_split(events.copy(), seed=7)
    c = stratified_split(events, seed=8)
    assert names(a.test) == names(b.test)
    assert a.fingerprint() == b.fingerprint()
    assert names(a.test) != names(c.test)
    assert a.fingerprint() != c.fingerprint()


def test_stratified_split_matches_the_recommenders_rule():
    # The rule stated in the docstring, applied by hand to one 4-row item.
    events = make_events([(f"r{k}", k, f"u{k}", "x", "view") for k in range(4)])
    draws = np.random.RandomState(5).rand(4)
    expected_test = f"r{int(np.argmax(draws))}"  # rank 4 of 4 > 0.75
    assert names(stratified_split(events, seed=5).test) == [expected_test]


def test_stratified_split_by_user():
    events = many_events()
    split = stratified_split(events, test_fraction=0.5, by="user_id", seed=1)
    sizes = events.groupby("user_id").size()
    in_train = split.train.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    np.testing.assert_array_equal(in_train.to_numpy(), np.floor(0.5 * sizes.to_numpy()))


# ---- leak check and fingerprint ----------------------------------------------
def test_leak_check_by_event_id():
    leaky = Split(EVENTS.iloc[:3], EVENTS.iloc[2:5])
    with pytest.raises(LeakError, match="1 test events"):
        check_no_leak(leaky)
    check_no_leak(Split(EVENTS.iloc[:3], EVENTS.iloc[3:5]))


def test_leak_check_by_full_row_without_event_ids():
    events = make_events([("x", 0, "u", "a", "view"), ("y", 1, "u", "b", "view")], False)
    check_no_leak(Split(events.iloc[:1], events.iloc[1:]))
    with pytest.raises(LeakError):
        check_no_leak(Split(events, events.iloc[1:]))
    assert issubclass(LeakError, ValueError)


def test_fingerprint_depends_on_events_and_parameters_not_row_order():
    split = leave_last_n(EVENTS, n=1)
    shuffled = Split(split.train.iloc[::-1], split.test, dict(split.description))
    assert split.fingerprint() == shuffled.fingerprint()
    other_params = Split(split.train, split.test, {**split.description, "n": 2})
    assert split.fingerprint() != other_params.fingerprint()
    moved = Split(split.train.iloc[1:], pd.concat([split.test, split.train.iloc[:1]]))
    moved.description = dict(split.description)
    assert split.fingerprint() != moved.fingerprint()
    assert len(split.fingerprint()) == 16


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        leave_last_n(EVENTS, n=0)
    with pytest.raises(ValueError):
        stratified_split(EVENTS, test_fraction=1.0)
    with pytest.raises(ValueError):
        temporal_split(EVENTS, CUTOFF, test_types=["click"])
    naive = EVENTS.assign(timestamp=EVENTS["timestamp"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="tz-aware"):
        temporal_split(naive, CUTOFF)
