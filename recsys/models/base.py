"""The one ``Recommender`` interface every model and baseline implements.

Modelled on implicit's ``RecommenderBase`` and scikit-learn estimator habits:
hyper-parameters in ``__init__``, learned state (attributes ending in ``_``)
set by ``fit``, which returns ``self``. Models see internal indices only:
``user_items`` is a users x items CSR matrix, and in ``score``/``recommend``
its rows are the rows of the requested users (``user_items[userids]``).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models.sparse_utils import align_items, as_user_items
from recsys.models.topn import top_n

#: Version of the file layout written by ``Recommender.save``.
FORMAT_VERSION = 1
#: Dense scores are computed in blocks of at most this many floats (32 MB;
#: the int64 ranking keys take twice that).
SCORE_BLOCK_FLOATS = 1 << 23
_META_KEY = "__meta__"


class NotFittedError(RuntimeError):
    """The model is used before ``fit`` (or ``load``)."""


@dataclass
class FitContext:
    """Optional side information for ``fit``; every index is internal.

    - ``item_features`` / ``user_features``: sparse matrices whose rows are item /
      user indices and whose columns are named by ``*_feature_names`` (e.g.
      ``"category=shoes"``, ``"country=DE"``).
    - ``user_country``: ISO country code per user index (``""`` or None if unknown).
    - ``event_users``, ``event_items``, ``event_times``: one entry per interaction
      (times as unix seconds or datetimes), for recency-weighted models;
      ``reference_time`` is "now" for the decay (default: the latest event);
      ``event_types`` (optional) names each event's type (``"purchase"``, ...).
    """

    item_features: sp.spmatrix | None = None
    item_feature_names: Sequence[str] | None = None
    user_features: sp.spmatrix | None = None
    user_feature_names: Sequence[str] | None = None
    user_country: np.ndarray | None = None
    event_users: np.ndarray | None = None
    event_items: np.ndarray | None = None
    event_times: np.ndarray | None = None
    reference_time: Any = None
    event_types: np.ndarray | None = None

    def __post_init__(self) -> None:
        for kind in ("item", "user"):
            features = getattr(self, f"{kind}_features")
            names = getattr(self, f"{kind}_feature_names")
            if features is None:
                continue
            if not sp.issparse(features):
                raise TypeError(f"{kind}_features must be a scipy sparse matrix")
            if names is not None and len(names) != features.shape[1]:
                raise ValueError(
                    f"{kind}_feature_names has {len(names)} names for "
                    f"{features.shape[1]} feature columns"
                )
        events = (self.event_users, self.event_items, self.event_times)
        given = [e is not None for e in events]
        if any(given) and not all(given):
            raise ValueError("event_users, event_items and event_times go together")
        if all(given) and not len(self.event_users) == len(self.event_items) == len(
            self.event_times
        ):
            raise ValueError("event_users, event_items and event_times differ in length")
        if self.event_types is not None and (
            not all(given) or len(self.event_types) != len(self.event_users)
        ):
            raise ValueError("event_types needs event_users/items/times of the same length")

    @property
    def has_events(self) -> bool:
        """True when per-interaction events (with times) are given."""
        return self.event_times is not None

    def events_reference_time(self):
        """The decay reference time: ``reference_time`` or else the latest event time."""
        if self.reference_time is not None:
            return self.reference_time
        if not self.has_events or len(self.event_times) == 0:
            raise ValueError("no reference_time and no events to take it from")
        from recsys.models.time_decay import to_unix_seconds

        return to_unix_seconds(self.event_times).max()


class Recommender(ABC):
    """Common interface: fit, score, recommend, similar_items, save/load."""

    #: Registry name, e.g. "als".
    name: ClassVar[str] = ""
    #: True for models whose point is to recommend items the user already has
    #: (buy again): ``recommend`` then ignores ``filter_already_liked_items``.
    recommends_already_liked: ClassVar[bool] = False
    #: True for models that rank for users without history from a profile
    #: (country, language): see ``recommend_new_users``.
    supports_new_users: ClassVar[bool] = False

    def __init__(self) -> None:
        self.n_users_: int | None = None
        self.n_items_: int | None = None

    # -- parameters ---------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` hyper-parameters (feeds ``mlflow.log_params``)."""
        signature = inspect.signature(type(self).__init__)
        return {
            name: copy.deepcopy(getattr(self, name))
            for name, parameter in signature.parameters.items()
            if name != "self"
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- learning and scoring -----------------------------------------------

    @abstractmethod
    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Learn from a users x items matrix of interaction weights; returns ``self``."""

    @abstractmethod
    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores, ``len(userids) x n_items``; higher is better.

        ``user_items`` holds the rows of ``userids`` with ``n_items`` columns.
        """

    def _start_fit(self, user_items: sp.spmatrix) -> sp.csr_matrix:
        """Validate the training matrix and record its shape."""
        matrix = as_user_items(user_items)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValueError(f"user_items is empty: shape {matrix.shape}")
        self.n_users_, self.n_items_ = matrix.shape
        return matrix

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` or ``load`` has set the learned state."""
        return self.n_items_ is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted")

    def _block_rows(self) -> int:
        return max(1, SCORE_BLOCK_FLOATS // max(self.n_items_, 1))

    def _item_mask(self, filter_items, items) -> np.ndarray | None:
        """Boolean mask of items never to return (ids >= n_items are ignored)."""
        if filter_items is None and items is None:
            return None
        mask = np.zeros(self.n_items_, dtype=bool)
        if items is not None:
            wanted = _item_ids(items, "items")
            mask[:] = True
            mask[wanted[wanted < self.n_items_]] = False
        if filter_items is not None:
            banned = _item_ids(filter_items, "filter_items")
            mask[banned[banned < self.n_items_]] = True
        return mask

    def recommend(
        self,
        userids,
        user_items: sp.spmatrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items=None,
        items=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` item ids and scores for one user or a batch (as implicit 0.7).

        ``user_items`` has one row per requested user. A scalar user id gives 1-D
        arrays, an array of ids 2-D ``len x N`` arrays; rows with fewer than ``N``
        eligible items are padded with -1 / -inf. ``filter_items`` removes items,
        ``items`` restricts the ranking to a candidate set (both may be given).
        """
        self._check_fitted()
        single = np.isscalar(userids)
        uids = _user_ids(userids)
        rows = as_user_items(user_items)
        if rows.shape[0] != len(uids):
            raise ValueError(
                f"user_items has {rows.shape[0]} rows for {len(uids)} users; "
                "pass user_items[userids]"
            )
        rows = align_items(rows, self.n_items_)
        exclude = self._item_mask(filter_items, items)
        drop_liked = filter_already_liked_items and not self.recommends_already_liked
        ids = np.empty((len(uids), N), dtype=np.int32)
        scores = np.empty((len(uids), N), dtype=np.float32)
        step = self._block_rows()
        for start in range(0, len(uids), step):
            block = slice(start, start + step)
            dense = np.array(self.score(uids[block], rows[block]), dtype=np.float32)
            ids[block], scores[block] = top_n(
                dense, N, exclude=exclude, exclude_per_row=rows[block] if drop_liked else None
            )
        if single:
            return ids[0], scores[0]
        return ids, scores

    # -- new users (no history) ----------------------------------------------

    def _score_new_users(self, profiles: pd.DataFrame) -> np.ndarray:
        """Dense float32 scores (len(profiles) x n_items) for users known by profile only."""
        raise NotImplementedError(f"{type(self).__name__} cannot rank for users without history")

    def recommend_new_users(
        self, profiles, N: int = 10, filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` ids and scores (2-D, one row per profile) for users without history.

        ``profiles`` is a DataFrame (or a list of dicts) with ``country`` and
        ``language`` columns; missing values mean unknown. Filters and padding
        as in ``recommend``. Models without ``supports_new_users`` raise
        ``NotImplementedError``.
        """
        self._check_fitted()
        if not self.supports_new_users:
            raise NotImplementedError(
                f"{type(self).__name__} cannot rank for users without history"
            )
        table = new_user_profiles(profiles)
        exclude = self._item_mask(filter_items, items)
        ids = np.empty((len(table), N), dtype=np.int32)
        scores = np.empty((len(table), N), dtype=np.float32)
        step = self._block_rows()
        for start in range(0, len(table), step):
            block = slice(start, start + step)
            dense = np.array(self._score_new_users(table.iloc[block]), dtype=np.float32)
            ids[block], scores[block] = top_n(dense, N, exclude=exclude)
        return ids, scores

    # -- similar items --------------------------------------------------------

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        """Dense float32 similarity of ``itemids`` to every item (len x n_items)."""
        raise NotImplementedError(f"{type(self).__name__} has no item similarity")

    def similar_items(
        self, itemids, N: int = 10, filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` items most similar to each item, the item itself excluded.

        Same shapes, padding and filters as ``recommend``.
        """
        self._check_fitted()
        single = np.isscalar(itemids)
        iids = _item_ids(itemids, "itemids")
        if len(iids) and iids.max() >= self.n_items_:
            raise IndexError(f"item id {iids.max()} is not in the model ({self.n_items_} items)")
        exclude = self._item_mask(filter_items, items)
        ids = np.empty((len(iids), N), dtype=np.int32)
        scores = np.empty((len(iids), N), dtype=np.float32)
        step = self._block_rows()
        for start in range(0, len(iids), step):
            block = iids[start : start + step]
            dense = np.array(self._similar_scores(block), dtype=np.float32)
            dense[np.arange(len(block)), block] = -np.inf
            ids[start : start + step], scores[start : start + step] = top_n(
                dense, N, exclude=exclude
            )
        if single:
            return ids[0], scores[0]
        return ids, scores

    # -- persistence ----------------------------------------------------------

    @abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Learned state as arrays, sparse matrices or numbers (no pickles)."""

    @abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_get_state`` returned."""

    def _full_state(self) -> dict[str, Any]:
        state = {"n_users_": self.n_users_, "n_items_": self.n_items_}
        state.update(self._get_state())
        return state

    def _restore_full_state(self, state: dict[str, Any]) -> None:
        self.n_users_ = int(state.pop("n_users_"))
        self.n_items_ = int(state.pop("n_items_"))
        self._set_state(state)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (params as JSON + learned arrays) to one ``.npz`` file at ``path``."""
        self._check_fitted()
        meta = {"format": FORMAT_VERSION, "name": self.name, "params": self.get_params()}
        arrays = flatten_state(self._full_state())
        arrays[_META_KEY] = np.array(json.dumps(meta, default=_json_default))
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        """Read a model written by ``save``; ``Recommender.load`` works for any model."""
        from recsys.models.registry import MODELS

        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop(_META_KEY)))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported model file format {meta.get('format')!r}")
        model_cls = MODELS.get(meta["name"])
        if model_cls is None:
            raise ValueError(f"unknown model {meta['name']!r} in {path}")
        if not issubclass(model_cls, cls):
            raise TypeError(f"{path} holds a {model_cls.__name__}, not a {cls.__name__}")
        model = model_cls(**meta["params"])
        model._restore_full_state(unflatten_state(arrays))
        return model


def flatten_state(state: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Arrays for ``np.savez``: sparse matrices become data/indices/indptr/shape,
    nested dicts get dotted keys, None is dropped."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if "." in key or "|" in key:
            raise ValueError(f"state key {key!r} may not contain '.' or '|'")
        full = prefix + key
        if value is None:
            continue
        if isinstance(value, dict):
            out.update(flatten_state(value, full + "."))
        elif sp.issparse(value):
            csr = sp.csr_matrix(value)
            out[full + "|data"] = csr.data
            out[full + "|indices"] = csr.indices
            out[full + "|indptr"] = csr.indptr
            out[full + "|shape"] = np.array(csr.shape, dtype=np.int64)
        else:
            out[full] = np.asarray(value)
    return out


def unflatten_state(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of ``flatten_state`` (missing keys come back as absent, i.e. None)."""
    state: dict[str, Any] = {}
    sparse_parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if "|" in key:
            base, part = key.split("|")
            sparse_parts.setdefault(base, {})[part] = value
            continue
        _nested_set(state, key, value.item() if value.ndim == 0 else value)
    for base, parts in sparse_parts.items():
        matrix = sp.csr_matrix(
            (parts["data"], parts["indices"], parts["indptr"]), shape=tuple(parts["shape"])
        )
        _nested_set(state, base, matrix)
    return state


def _nested_set(state: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for parent in parents:
        state = state.setdefault(parent, {})
    state[leaf] = value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"parameter value {value!r} is not JSON serialisable")


def new_user_profiles(profiles) -> pd.DataFrame:
    """``profiles`` as a DataFrame with ``country`` and ``language`` (None when unknown)."""
    if isinstance(profiles, pd.DataFrame):
        table = profiles
    elif isinstance(profiles, dict):
        raise TypeError("profiles must be a DataFrame or a list of dicts, not one dict")
    else:
        table = pd.DataFrame(list(profiles))
    out = pd.DataFrame(index=pd.RangeIndex(len(table)))
    for column in ("country", "language"):
        if column not in table.columns:
            out[column] = pd.Series([None] * len(table), dtype=object)
            continue
        values = pd.Series(table[column].to_numpy(object), dtype=object)
        known = values.notna() & (values.astype(str) != "")
        out[column] = values.where(known, None)
    return out


def _user_ids(userids) -> np.ndarray:
    uids = np.atleast_1d(np.asarray(userids))
    if uids.ndim != 1 or (uids.size and uids.dtype.kind not in "iu"):
        raise TypeError("userids must be an integer or a 1-D array of integers")
    uids = uids.astype(np.int64)
    if uids.size and uids.min() < 0:
        raise IndexError("user ids must be >= 0")
    return uids


def _item_ids(itemids, what: str) -> np.ndarray:
    iids = np.atleast_1d(np.asarray(itemids))
    if iids.ndim != 1 or (iids.size and iids.dtype.kind not in "iu"):
        raise TypeError(f"{what} must be an integer or a 1-D array of integers")
    iids = iids.astype(np.int64)
    if iids.size and iids.min() < 0:
        raise IndexError(f"{what} must be >= 0")
    return iids
