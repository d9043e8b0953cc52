import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recsys.idmap import IdMap


def test_first_seen_order_and_lookup():
    m = IdMap(["b", "a", "b", "c"])
    assert len(m) == 3
    assert list(m.ids()) == ["b", "a", "c"]
    np.testing.assert_array_equal(m.index(["c", "b", "a"]), [2, 0, 1])
    assert m.index(["a"]).dtype == np.int32


def test_extend_is_append_only():
    m = IdMap(["u1", "u2", "u3"])
    before = m.index(["u1", "u2", "u3"])
    assert m.extend(pd.Series(["u9", "u2", "u8", "u9"])) is m
    np.testing.assert_array_equal(m.index(["u1", "u2", "u3"]), before)
    assert list(m.ids()) == ["u1", "u2", "u3", "u9", "u8"]


def test_unknown_and_null_get_missing():
    m = IdMap(["a", "b"])
    np.testing.assert_array_equal(m.index(["b", "zz", None, "a"]), [1, -1, -1, 0])
    np.testing.assert_array_equal(m.index(["zz", "a"], missing=-7), [-7, 0])
    assert len(m) == 2  # a lookup never adds
    assert "a" in m and "zz" not in m and ["a"] not in m


def test_index_with_add_extends_and_returns_indices():
    m = IdMap(["a"])
    np.testing.assert_array_equal(m.index(["c", "a", "b", "c"], add=True), [1, 0, 2, 1])
    assert list(m.ids()) == ["a", "c", "b"]


def test_copy_is_independent():
    m = IdMap(["a", "b"])
    c = m.copy()
    c.extend(["z"])
    assert len(m) == 2 and len(c) == 3
    assert "z" not in m


def test_invalid_ids_raise_and_leave_the_map_unchanged():
    m = IdMap(["a"])
    with pytest.raises(ValueError):
        m.extend(["b", None])
    with pytest.raises(TypeError):
        m.extend([1, 2])
    with pytest.raises(TypeError):
        m.extend("abc")  # a single string is not a collection of ids
    assert list(m.ids()) == ["a"]


def test_ids_of_indices_and_bounds():
    m = IdMap(["x", "y", "z"])
    assert list(m.ids(np.array([2, 0, 2]))) == ["z", "x", "z"]
    assert m.ids([2]).dtype == object
    with pytest.raises(IndexError):
        m.ids([-1])
    with pytest.raises(IndexError):
        m.ids([3])


def test_accepts_arrow_and_pandas_string_columns():
    m = IdMap(pa.array(["p", "q"]))
    np.testing.assert_array_equal(m.index(pd.Series(["q", "p", None], dtype="str")), [1, 0, -1])
    np.testing.assert_array_equal(m.index(pa.chunked_array([["q"], ["r"]])), [1, -1])


def test_save_load_round_trip(tmp_path):
    m = IdMap(["u-1", "u#2", "ü3"])
    m.save(tmp_path / "maps" / "users.parquet")
    loaded = IdMap.load(tmp_path / "maps" / "users.parquet")
    assert loaded == m
    assert list(loaded.ids()) == ["u-1", "u#2", "ü3"]
    assert IdMap.from_arrow(m.to_arrow()) == m
    assert loaded != IdMap(["u#2", "u-1", "ü3"])  # same ids, other indices


def test_from_arrow_rejects_invalid_tables():
    with pytest.raises(ValueError):
        IdMap.from_arrow(pa.table({"id": ["a", "a"]}))
    with pytest.raises(ValueError):
        IdMap.from_arrow(pa.table({"id": [1, 2]}))


def test_empty_map():
    m = IdMap()
    assert len(m) == 0
    np.testing.assert_array_equal(m.index(["a"]), [-1])
    assert m.index([]).shape == (0,)
    assert m == IdMap([])


def test_one_million_ids(tmp_path):
    n = 1_000_000
    ids = np.array([f"u{i}" for i in range(n)], dtype=object)[::-1]
    m = IdMap(ids)
    assert len(m) == n
    probe = np.random.default_rng(0).integers(0, n, 50_000)
    np.testing.assert_array_equal(m.index(ids[probe]), probe)
    m.extend(ids[:10].tolist() + ["new"])
    assert len(m) == n + 1 and m.index(["new"])[0] == n
    m.save(tmp_path / "big.parquet")
    assert IdMap.load(tmp_path / "big.parquet") == m
